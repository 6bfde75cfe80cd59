"""Writes the bundled classification demo sets (our own sentences), their vocab and a tiny config.

- nsmc/: Korean movie-review sentiment in NSMC's format (`id<TAB>document<TAB>label`, header,
  0 = negative, 1 = positive): ratings_train.txt and ratings_test.txt.
- cola/: English acceptability in CoLA's raw format (source, label, original mark, sentence; no
  header): in_domain_train.tsv, in_domain_dev.tsv and out_of_domain_dev.tsv.
- vocab.txt (cased WordPiece, learned from all of the above) and bert_config.json (2 layers,
  hidden 64) sized to it.

Sentences are assembled from the phrase lists below with a fixed seed, so the output is the same
on every run. Run from the project root:
  .venv/bin/python sample_data/classifier/make_sample_classifier.py
"""

import json
import os
import random
import sys
from typing import List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from bert_tf.corpus import build_vocab  # noqa: E402  (after the path set-up

SEED = 20240601
HERE = os.path.dirname(os.path.abspath(__file__))

# --- Korean movie reviews ----------------------------------------------------------------------
ASPECTS = ["배우들 연기가", "스토리가", "음악이", "영상미가", "결말이", "대사가", "주인공이",
           "연출이", "액션 장면이", "분위기가", "전개가", "캐릭터들이"]
PRAISE = ["정말 좋았어요", "최고였다", "감동적이었습니다", "훌륭하네요", "마음에 쏙 들었다",
          "완벽했어요", "인상 깊었다", "아름다웠다", "재밌었어요", "신선했다"]
BLAME = ["너무 지루했다", "별로였어요", "실망스럽네요", "최악이었다", "엉망이었습니다",
         "어색했어요", "유치했다", "답답했다", "뻔했어요", "허술했다"]
GOOD_ENDINGS = ["", " 또 보고 싶다", " 강력 추천합니다", " 시간 가는 줄 몰랐네요", " 10점 만점에 10점",
                " 가족과 함께 보세요", " 올해 최고의 영화", " 여운이 오래 남는다"]
BAD_ENDINGS = ["", " 돈이 아깝다", " 보다가 잠들었어요", " 시간 낭비였다", " 비추천합니다",
               " 다시는 안 본다", " 1점도 아깝다", " 중간에 나왔어요"]


def review(rng: random.Random, positive: bool) -> str:
  """One or two clauses of the same polarity, then an ending of that polarity."""
  words, endings = (PRAISE, GOOD_ENDINGS) if positive else (BLAME, BAD_ENDINGS)
  aspects = rng.sample(ASPECTS, rng.choice([1, 2]))
  clauses = [f"{aspect} {rng.choice(words)}" for aspect in aspects]
  return ", ".join(clauses) + rng.choice(endings)


def nsmc_lines(rng: random.Random, count: int, first_id: int) -> List[str]:
  lines = ["id\tdocument\tlabel"]
  for index in range(count):
    positive = index % 2 == 0
    lines.append(f"{first_id + index}\t{review(rng, positive)}\t{int(positive)}")
  return lines


# --- English acceptability ---------------------------------------------------------------------
# (singular, plural) nouns and (third-person singular, plural, past) verbs.
NOUNS = [("dog", "dogs"), ("teacher", "teachers"), ("child", "children"), ("farmer", "farmers"),
         ("pilot", "pilots"), ("baker", "bakers"), ("student", "students"), ("cat", "cats")]
OBJECTS = ["the ball", "a letter", "the bread", "an apple", "the map", "a song", "the door",
           "a small boat", "the old bicycle", "a red kite"]
VERBS = [("finds", "find", "found"), ("carries", "carry", "carried"), ("opens", "open", "opened"),
         ("paints", "paint", "painted"), ("sees", "see", "saw"), ("likes", "like", "liked"),
         ("wants", "want", "wanted"), ("takes", "take", "took")]
ADVERBS = ["", " every morning", " in the garden", " near the river", " after lunch",
           " on Sunday"]


def sentence(rng: random.Random, acceptable: bool) -> str:
  """A subject-verb-object sentence; unacceptable ones break agreement, order or tense."""
  singular, plural = rng.choice(NOUNS)
  verb_s, verb_pl, verb_past = rng.choice(VERBS)
  obj, adverb = rng.choice(OBJECTS), rng.choice(ADVERBS)
  is_plural = rng.random() < 0.5
  subject = "The " + (plural if is_plural else singular)
  tense = rng.choice(["present", "past", "did"])
  if acceptable:
    verb = {"present": verb_pl if is_plural else verb_s, "past": verb_past,
            "did": f"did not {verb_pl}"}[tense]
    return f"{subject} {verb} {obj}{adverb}."
  error = rng.choice(["agreement", "order", "tense"])
  if error == "agreement":
    return f"{subject} {verb_s if is_plural else verb_pl} {obj}{adverb}."
  if error == "order":
    return f"{subject} {obj} {verb_past}{adverb}."
  return f"{subject} did not {verb_past} {obj}{adverb}."


def cola_lines(rng: random.Random, count: int, source: str) -> List[str]:
  lines = []
  for index in range(count):
    acceptable = index % 3 != 0  # two thirds acceptable, as in CoLA
    mark = "" if acceptable else "*"
    lines.append(f"{source}\t{int(acceptable)}\t{mark}\t{sentence(rng, acceptable)}")
  return lines


def write(path: str, lines: List[str]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(line + "\n" for line in lines))


def main() -> None:
  rng = random.Random(SEED)
  files: List[Tuple[str, List[str]]] = [
      ("nsmc/ratings_train.txt", nsmc_lines(rng, 240, 1000001)),
      ("nsmc/ratings_test.txt", nsmc_lines(rng, 80, 2000001)),
      ("cola/in_domain_train.tsv", cola_lines(rng, 240, "bt01")),
      ("cola/in_domain_dev.tsv", cola_lines(rng, 90, "bt01")),
      ("cola/out_of_domain_dev.tsv", cola_lines(rng, 60, "bt02")),
  ]
  texts = []
  for name, lines in files:
    write(os.path.join(HERE, name), lines)
    if name.startswith("nsmc"):
      texts.extend(line.split("\t")[1] for line in lines[1:])  # after the header
    else:
      texts.extend(line.split("\t")[3] for line in lines)
  vocab = build_vocab.learn_vocab(texts, vocab_size=1000, do_lower_case=False)
  build_vocab.write_vocab(vocab, os.path.join(HERE, "vocab.txt"))
  config = dict(attention_probs_dropout_prob=0.1, hidden_act="gelu", hidden_dropout_prob=0.1,
                hidden_size=64, initializer_range=0.02, intermediate_size=256,
                max_position_embeddings=128, num_attention_heads=4, num_hidden_layers=2,
                type_vocab_size=2, vocab_size=len(vocab))
  with open(os.path.join(HERE, "bert_config.json"), "w", encoding="utf-8") as f:
    json.dump(config, f, indent=2, sort_keys=True)
    f.write("\n")


if __name__ == "__main__":
  main()
