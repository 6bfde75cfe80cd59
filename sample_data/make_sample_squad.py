"""Writes the bundled demo QA set (our own text, Korean and English) in SQuAD 1.1 format.

Run: python sample_data/make_sample_squad.py  (answer offsets are computed, never typed).
"""

import json
import os

PARAGRAPHS = [
    ("The harbour town of Larkspur was founded in 1721 by fishermen from the northern islands. "
     "Its lighthouse, painted red and white, stands on a granite cliff and was first lit in 1803. "
     "Today the town is known for its autumn festival, when boats are decorated with lanterns.",
     [("When was Larkspur founded?", "1721"),
      ("Who founded the town of Larkspur?", "fishermen from the northern islands"),
      ("What colours is the lighthouse painted?", "red and white"),
      ("On what kind of cliff does the lighthouse stand?", "granite"),
      ("When was the lighthouse first lit?", "1803"),
      ("What are boats decorated with during the festival?", "lanterns")]),
    ("Mira Castell studied chemistry in Lyon before moving to Oslo, where she built a small "
     "laboratory in an old bakery. Her work on cold-water enzymes earned her the Halvorsen Prize "
     "in 1998. She later taught at the university for twenty years.",
     [("Where did Mira Castell study chemistry?", "Lyon"),
      ("Where did she build her laboratory?", "in an old bakery"),
      ("What prize did Mira Castell win?", "the Halvorsen Prize"),
      ("What did her prize-winning work study?", "cold-water enzymes"),
      ("How long did she teach at the university?", "twenty years")]),
    ("A sourdough starter is a mixture of flour and water that collects wild yeast and bacteria. "
     "It must be fed every day with fresh flour. Bakers keep it in a cool place, and a healthy "
     "starter doubles in size within eight hours.",
     [("What is a sourdough starter made of?", "flour and water"),
      ("How often must a starter be fed?", "every day"),
      ("Where do bakers keep the starter?", "in a cool place"),
      ("How quickly does a healthy starter double in size?", "within eight hours")]),
    ("서울의 한 작은 골목에는 1965년에 문을 연 국수집이 있다. 이 가게는 할머니와 손녀가 함께 운영하며, "
     "대표 메뉴는 멸치 육수로 만든 잔치국수이다. 주말이면 손님들이 가게 앞에 긴 줄을 선다.",
     [("국수집은 언제 문을 열었나?", "1965년"),
      ("국수집은 누가 운영하나?", "할머니와 손녀"),
      ("대표 메뉴는 무엇인가?", "잔치국수"),
      ("잔치국수의 육수는 무엇으로 만드나?", "멸치 육수"),
      ("손님들은 언제 긴 줄을 서나?", "주말")]),
    ("제주도의 한라산은 높이 1,947미터로 남한에서 가장 높은 산이다. 정상에는 백록담이라는 화구호가 있으며, "
     "겨울에는 눈이 많이 내려 등산객들이 아이젠을 준비해야 한다.",
     [("한라산의 높이는 얼마인가?", "1,947미터"),
      ("한라산 정상에 있는 화구호의 이름은?", "백록담"),
      ("겨울에 등산객들은 무엇을 준비해야 하나?", "아이젠"),
      ("한라산은 어디에 있나?", "제주도")]),
    ("김민준 씨는 부산에서 태어나 대학에서 해양학을 전공했다. 졸업 후 그는 10년 동안 연구선을 타고 "
     "태평양의 산호초를 조사했으며, 2015년에 첫 번째 책 『바다의 숲』을 펴냈다.",
     [("김민준 씨는 어디에서 태어났나?", "부산"),
      ("김민준 씨의 전공은 무엇인가?", "해양학"),
      ("그는 무엇을 조사했나?", "태평양의 산호초"),
      ("첫 번째 책은 언제 나왔나?", "2015년"),
      ("첫 번째 책의 제목은?", "바다의 숲")]),
]


def build(version: str) -> dict:
  data = []
  for index, (context, questions) in enumerate(PARAGRAPHS):
    qas = []
    for number, (question, answer) in enumerate(questions):
      start = context.index(answer)
      qas.append(dict(id=f"sample-{index}-{number}", question=question,
                      answers=[dict(text=answer, answer_start=start)]))
    data.append(dict(title=f"sample-{index}", paragraphs=[dict(context=context, qas=qas)]))
  return dict(version=version, data=data)


def main() -> None:
  here = os.path.dirname(os.path.abspath(__file__))
  with open(os.path.join(here, "squad_sample.json"), "w", encoding="utf-8") as f:
    json.dump(build("1.1"), f, ensure_ascii=False, indent=1)
    f.write("\n")


if __name__ == "__main__":
  main()
