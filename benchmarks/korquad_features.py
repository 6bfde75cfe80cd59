"""SQuAD-format feature conversion on Korean QA data: bert_tf.squad against tf-models' squad_lib.

  python -m benchmarks.korquad_features [--questions 10000] [--repeats 3] [--num_workers W]

There is no KorQuAD in ../shared/data, so `korquad_like` builds data of its shape from the Korean
sentences of corpus_ko, deterministically: paragraphs of consecutive sentences (at least
PARAGRAPH_CHARS characters, as KorQuAD 1.0's Wikipedia paragraphs), QUESTIONS_PER_PARAGRAPH
questions each (about KorQuAD's and SQuAD's rate). Each question is one of the paragraph's
sentences with a word replaced by "무엇" (a cloze question, "what"), and its answer is that word,
minus trailing punctuation, at its character offset in the paragraph. The conversion is for
training (answer positions included, so the spans are checked too), with the KcBERT vocab, cased,
at max_seq_length 384, doc_stride 128, max_query_length 64 (squad_features.compare). Merged into
benchmarks/results.json under "korquad_features".
"""

import json
import os
import random
import string
import tempfile
from typing import Any, Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import common  # noqa: E402  (after the log-level variable)
from benchmarks import squad_features  # noqa: E402
from benchmarks import tokenization as tokenization_benchmark  # noqa: E402

VOCAB = common.DATA / "vocabs" / "kcbert-base-vocab.txt"
PARAGRAPH_CHARS = 500
QUESTIONS_PER_PARAGRAPH = 5
SEED = 16
# What the answer word loses at its end (its sentence's punctuation), as KorQuAD answers do.
_TRAILING = string.punctuation + "“”‘’…·」』》〉)"


def korquad_like(sentences: Sequence[str], num_questions: int, seed: int = SEED
                 ) -> Dict[str, Any]:
  """A SQuAD-format dataset of `num_questions` questions built from `sentences` (see above)."""
  rng = random.Random(seed)
  sentences = [" ".join(sentence.split()) for sentence in sentences]
  paragraphs: List[Dict[str, Any]] = []
  questions = 0
  position = 0
  while questions < num_questions and position < len(sentences):
    members: List[str] = []
    while position < len(sentences) and sum(map(len, members)) < PARAGRAPH_CHARS:
      if sentences[position]:
        members.append(sentences[position])
      position += 1
    context = " ".join(members)
    starts = [0]
    for sentence in members[:-1]:
      starts.append(starts[-1] + len(sentence) + 1)
    qas = []
    for _ in range(min(QUESTIONS_PER_PARAGRAPH, num_questions - questions)):
      index = rng.randrange(len(members))
      words = members[index].split(" ")
      candidates = [i for i, word in enumerate(words) if len(word.rstrip(_TRAILING)) >= 2]
      if not candidates:
        continue
      chosen = rng.choice(candidates)
      answer = words[chosen].rstrip(_TRAILING)
      offset = starts[index] + sum(len(word) + 1 for word in words[:chosen])
      assert context[offset:offset + len(answer)] == answer
      question = " ".join(words[:chosen] + ["무엇"] + words[chosen + 1:]).rstrip(_TRAILING) + "?"
      qas.append({"id": f"korquad-like-{len(paragraphs)}-{len(qas)}", "question": question,
                  "answers": [{"text": answer, "answer_start": offset}]})
    if qas:
      paragraphs.append({"context": context, "qas": qas})
      questions += len(qas)
  return {"version": "KorQuAD_v1.0_like_corpus_ko",
          "data": [{"title": "corpus_ko", "paragraphs": paragraphs}]}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = squad_features.arguments(__doc__.split("\n\n")[0])
  parser.add_argument("--questions", type=int, default=10000)
  args = parser.parse_args(argv)
  missing = common.data_missing([VOCAB, common.DATA / "corpus_ko"])
  if missing:
    raise SystemExit(missing)
  dataset = korquad_like(tokenization_benchmark.korean_texts(), args.questions)
  with tempfile.TemporaryDirectory() as tmp:
    data = os.path.join(tmp, "korquad_like.json")
    with open(data, "w", encoding="utf-8") as f:
      json.dump(dataset, f, ensure_ascii=False)
    figures = squad_features.compare(data, str(VOCAB), False, True, args.limit, args.repeats,
                                     args.num_workers)
  paragraphs = dataset["data"][0]["paragraphs"]
  entry = {"what": "SQuAD-format feature conversion for training on Korean QA data (KorQuAD-like, "
                   "from corpus_ko), bert_tf.squad vs tf-models squad_lib",
           "paragraphs": len(paragraphs),
           "mean_context_chars": round(sum(len(p["context"]) for p in paragraphs) /
                                       len(paragraphs)),
           **figures}
  common.merge_results("korquad_features", entry)
  print(f"speed-up {entry['speedup']:.1f}x ({entry['fastest']}); merged into {common.RESULTS}")
  return entry


if __name__ == "__main__":
  main()
