"""Writes the bundled pretraining demo text (our own sentences) and a tiny BERT config.

- raw_comments.txt: Korean news-comment-like text, one sentence a line, a blank line between
  documents (one document = the comments under one article), with the noise KcBERT's cleaning
  removes: laughter and punctuation runs (ㅋㅋㅋㅋ, !!!!), URLs, Hanja and other scripts, very
  short lines and repeated comments.
- bert_config.json: a tiny BERT (2 layers, hidden 64); run_pretraining.py --demo sets its
  vocab_size to the vocab it learns.

Sentences are assembled from the phrase lists below with a fixed seed, so the output is the same
on every run. Run from the project root:
  .venv/bin/python sample_data/pretraining/make_sample_pretraining.py
"""

import json
import os
import random
from typing import List

SEED = 20261129
HERE = os.path.dirname(os.path.abspath(__file__))
NUM_DOCUMENTS = 60

# topic -> (subjects, predicates): a subject joins any predicate of its topic.
TOPICS = {
    "축구": (["오늘 경기에서 우리 팀이", "그 공격수가", "후반전에 감독이", "수비진이", "골키퍼가"],
             ["정말 잘 싸웠습니다", "결정적인 골을 넣었네요", "교체 카드를 늦게 썼어요",
              "끝까지 집중력을 보여줬다", "몇 번이나 실점을 막아냈어요"]),
    "날씨": (["이번 주말에는", "내일 아침에는", "남부 지방에는", "요즘 같은 날씨에는", "올여름은"],
             ["비가 많이 온다고 하네요", "기온이 크게 떨어진대요", "우산을 꼭 챙기세요",
              "작년보다 훨씬 덥다고 합니다", "산책하기 딱 좋겠어요"]),
    "영화": (["이 영화의 주인공이", "감독의 연출이", "마지막 장면이", "배우들의 연기가", "영화 음악이"],
             ["너무 감동적이었어요", "생각보다 지루했습니다", "오래 기억에 남을 것 같아요",
              "정말 자연스러웠다", "극장에서 다시 보고 싶네요"]),
    "음식": (["동네에 새로 생긴 식당이", "할머니가 끓여 주신 된장찌개가", "점심에 먹은 김밥이",
              "시장에서 산 떡볶이가", "집에서 만든 김치가"],
             ["정말 맛있었어요", "가격에 비해 양이 많네요", "조금 짰지만 괜찮았습니다",
              "다음에 또 먹고 싶다", "가족 모두 좋아했어요"]),
    "여행": (["제주도 바닷가가", "강릉 커피 거리가", "부산 야경이", "경주 역사 유적지가",
              "전주 한옥 마을이"],
             ["사진보다 훨씬 아름다웠어요", "주말이라 사람이 많았습니다", "아이들과 가기 좋아요",
              "다시 가 보고 싶은 곳이다", "생각보다 교통이 편했어요"]),
    "경제": (["이번 달 물가가", "은행 금리가", "수출 실적이", "부동산 시장이", "청년 일자리가"],
             ["계속 오르고 있네요", "서민들에게 부담이 됩니다", "작년보다 나아졌다고 합니다",
              "빨리 안정되었으면 좋겠어요", "정부 대책이 필요해 보입니다"]),
    "기술": (["새로 나온 스마트폰이", "인공지능 번역기가", "전기 자동차가", "이번 업데이트가",
              "온라인 수업 프로그램이"],
             ["배터리가 오래가서 좋아요", "예전보다 훨씬 정확해졌네요", "충전소가 더 많아져야 해요",
              "버그가 많아서 불편합니다", "쓰기 편하게 바뀌었다"]),
}
OPENERS = ["", "", "", "솔직히 ", "제 생각에는 ", "기사 읽어 보니 ", "진짜 ", "역시 "]
REACTIONS = ["ㅋㅋㅋㅋㅋ", "ㅎㅎㅎ", "!!!!", "~~~", "ㅠㅠㅠㅠ", "...."]
NOISE = ["漢字", "αβγ", "ü", "★", "←"]
SHORT = ["ㅇㅇ", "인정", "ㅋㅋ", "공감", "좋아요"]
URLS = ["https://news.example.com/article/1234", "http://www.example.org/view?id=77"]


def comment(topic: str, rng: random.Random) -> str:
  """One comment: an opener, a subject and a predicate of the topic, sometimes some noise."""
  subjects, predicates = TOPICS[topic]
  text = rng.choice(OPENERS) + rng.choice(subjects) + " " + rng.choice(predicates)
  draw = rng.random()
  if draw < 0.25:
    text += rng.choice(REACTIONS)
  elif draw < 0.32:
    text += " " + rng.choice(NOISE)
  elif draw < 0.37:
    text += " 출처 " + rng.choice(URLS)
  return text


def documents(rng: random.Random) -> List[List[str]]:
  """NUM_DOCUMENTS articles' comment threads, each on one topic, with short and repeated lines."""
  docs = []
  for _ in range(NUM_DOCUMENTS):
    topic = rng.choice(sorted(TOPICS))
    lines = [comment(topic, rng) for _ in range(rng.randint(5, 9))]
    if rng.random() < 0.4:
      lines.insert(rng.randrange(len(lines)), rng.choice(SHORT))
    if rng.random() < 0.2:
      lines.append(lines[0])
    docs.append(lines)
  return docs


def main() -> None:
  rng = random.Random(SEED)
  text = "\n\n".join("\n".join(lines) for lines in documents(rng)) + "\n"
  with open(os.path.join(HERE, "raw_comments.txt"), "w", encoding="utf-8") as f:
    f.write(text)
  config = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
            "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 256,
            "max_position_embeddings": 128, "num_attention_heads": 4, "num_hidden_layers": 2,
            "type_vocab_size": 2, "vocab_size": 1200}
  with open(os.path.join(HERE, "bert_config.json"), "w", encoding="utf-8") as f:
    f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
  main()
