"""Tokenization throughput (tokens/s) on real text: bert_tf vs google-research and Hugging Face.

  python -m benchmarks.tokenization [--repeats 3] [--max_texts N]

Two corpora from ../shared/data: the English contexts of SQuAD 1.1 dev (bert-base-uncased vocab,
lowercased) and Korean sentences of corpus_ko (KcBERT vocab, cased). Every tokenizer turns each
text into a list of ids. On each corpus, in this run:
- bert_tf FullTokenizer, the exact path (tokenize_to_ids, in C: bert_tf/_wordpiece.c): a fresh
  tokenizer each repeat (its caches start empty), built before the timing as google-research's
  is, asserted token for token and id for id equal to tf-models-official's tokenization module;
- the same with compiled=False, the pure-Python fallback for machines that cannot build the C
  module (the same calls; asserted equal too);
- bert_tf InGraphTokenizer, TensorFlow Text ops on the whole batch, asserted id for id equal;
- tf-models-official's tokenization module (google-research's pure Python, ported), the same calls;
- Hugging Face tokenizers' BertWordPieceTokenizer (encode_batch and encode_batch_fast) and
  transformers' BertTokenizerFast with the same vocab, in a separate venv (HF_TOKENIZERS_VENV,
  made when missing) through hf_tokenize.py: Rust, one batch call over all cores. Their tokens
  are compared, not asserted (they differ from google-research's on some texts); the share of
  identical texts is reported.
Before the timing the collector's objects are frozen (gc.freeze): otherwise a full collection
that rescans TensorFlow's and tf-models' ~450k import-time objects (0.1-0.35 s here) lands in one
run or another at random. A command-line tool that tokenizes imports no TensorFlow, so this is
what it sees; the Python tokenizers are all timed so.
Throughput is the exact path's token count over the median seconds of each tokenizer; "profile_exact"
is where a fresh exact tokenizer's time goes (cProfile, untimed run). Merged into
benchmarks/results.json under "tokenization".
"""

import argparse
import gc
import json
import os
import subprocess
import tempfile
from typing import Any, Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402  (after the log-level variable)
from official.nlp.tools import tokenization as tf_models_tokenization  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks import pretraining_data  # noqa: E402
from bert_tf import tokenization  # noqa: E402
from bert_tf.io import files as io_files  # noqa: E402

SQUAD_DEV = common.DATA / "squad" / "dev-v1.1.json"
ENGLISH_VOCAB = common.DATA / "vocabs" / "bert-base-uncased-vocab.txt"
KOREAN_VOCAB = common.DATA / "vocabs" / "kcbert-base-vocab.txt"
EXACT = "bert_tf FullTokenizer (exact)"
EXACT_PYTHON = "bert_tf FullTokenizer (exact, Python fallback)"
IN_GRAPH = "bert_tf InGraphTokenizer (tf.text)"
GOOGLE = "tf-models tokenization (google-research)"


def english_texts() -> List[str]:
  """The paragraph contexts of SQuAD 1.1 dev, in file order."""
  return [paragraph["context"] for article in io_files.read_json(str(SQUAD_DEV))["data"]
          for paragraph in article["paragraphs"]]


def korean_texts() -> List[str]:
  """The non-empty sentences of corpus_ko, in the order pretraining_data.py reads them."""
  return [line for line in pretraining_data.corpus_sentences(
      common.DATA / "corpus_ko")
          if line.strip()]


def hugging_face(texts: List[str], vocab: str, lowercase: bool, repeats: int) -> Dict[str, Any]:
  """Median seconds and tokens of the Hugging Face tokenizers, from their own venv."""
  python = common.hf_python(common.HF_TOKENIZERS, common.HF_TOKENIZERS_VENV)
  with tempfile.TemporaryDirectory() as tmp:
    job, output = os.path.join(tmp, "job.json"), os.path.join(tmp, "output.json")
    with open(job, "w", encoding="utf-8") as f:
      json.dump(dict(texts=texts, vocab=vocab, lowercase=lowercase, repeats=repeats), f)
    subprocess.run([python, str(common.ROOT / "benchmarks" / "hf_tokenize.py"), job, output],
                   check=True, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    with open(output, encoding="utf-8") as f:
      return json.load(f)


def measure_corpus(texts: List[str], vocab: str, lowercase: bool, repeats: int
                   ) -> Dict[str, Any]:
  """Tokens/s of every tokenizer on `texts`; raises if ours differ from google-research's."""
  theirs = tf_models_tokenization.FullTokenizer(vocab, do_lower_case=lowercase)
  in_graph = tokenization.InGraphTokenizer(vocab, do_lower_case=lowercase)
  batch = tf.constant(texts)
  in_graph.tokenize(batch[:8])  # Builds the ops once, outside the timing.
  fresh = {name: [tokenization.FullTokenizer(vocab, do_lower_case=lowercase,
                                             compiled=name == EXACT) for _ in range(repeats)]
           for name in (EXACT, EXACT_PYTHON)}
  if not fresh[EXACT][0].compiled:
    raise SystemExit("bert_tf/_wordpiece.c is not built: make tokenizer")
  outputs: Dict[str, Any] = {}

  def exact(name: str) -> None:
    ours = fresh[name].pop()
    outputs[name] = list(map(ours.tokenize_to_ids, texts))

  runs = {
      EXACT: lambda: exact(EXACT),
      EXACT_PYTHON: lambda: exact(EXACT_PYTHON),
      IN_GRAPH: lambda: outputs.__setitem__(IN_GRAPH, in_graph.tokenize(batch)),
      GOOGLE: lambda: outputs.__setitem__(GOOGLE, [
          theirs.convert_tokens_to_ids(theirs.tokenize(text)) for text in texts]),
  }
  gc.collect()
  gc.freeze()
  try:
    seconds = common.median_seconds(runs, repeats)
  finally:
    gc.unfreeze()
  ours = tokenization.FullTokenizer(vocab, do_lower_case=lowercase)
  exact_tokens = [ours.tokenize(text) for text in texts]
  if exact_tokens != [theirs.tokenize(text) for text in texts] or (
      outputs[EXACT] != outputs[GOOGLE] or outputs[EXACT_PYTHON] != outputs[GOOGLE]):
    raise AssertionError("bert_tf FullTokenizer and tf-models tokenization disagree.")
  if outputs[IN_GRAPH].to_list() != outputs[EXACT]:
    raise AssertionError("bert_tf InGraphTokenizer and FullTokenizer disagree.")
  fresh_tokenizer = tokenization.FullTokenizer(vocab, do_lower_case=lowercase)
  profile = common.profile_shares(lambda: list(map(fresh_tokenizer.tokenize_to_ids, texts)))
  hf = hugging_face(texts, vocab, lowercase, repeats)
  seconds.update(hf["seconds"])
  tokens = sum(map(len, exact_tokens))
  same_as_hf = sum(a == b for a, b in zip(exact_tokens, hf["tokens"]))
  return dict(texts=len(texts), characters=sum(map(len, texts)), tokens=tokens,
              do_lower_case=lowercase, vocab=os.path.basename(vocab), median_seconds=seconds,
              tokens_per_sec={name: round(tokens / s) for name, s in seconds.items()},
              identical_to_google_research=[EXACT, EXACT_PYTHON, IN_GRAPH],
              texts_identical_hf_vs_google_research=f"{same_as_hf}/{len(texts)}",
              hf_threads=hf["threads"], hf_versions=hf["versions"], profile_exact=profile)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--max_texts", type=int, help="use only the first N texts of each corpus")
  args = parser.parse_args(argv)
  missing = common.data_missing([SQUAD_DEV, ENGLISH_VOCAB, KOREAN_VOCAB,
                                 common.DATA / "corpus_ko"])
  if missing:
    raise SystemExit(missing)
  corpora = {
      "english (SQuAD 1.1 dev contexts)": (english_texts(), ENGLISH_VOCAB, True),
      "korean (corpus_ko sentences)": (korean_texts(), KOREAN_VOCAB, False),
  }
  entry: Dict[str, Any] = dict(
      what="tokens/s of WordPiece tokenization (text to ids), bert_tf vs google-research and "
           "Hugging Face",
      repeats=args.repeats, machine=common.machine_info())
  for name, (texts, vocab, lowercase) in corpora.items():
    figures = measure_corpus(texts[:args.max_texts], str(vocab), lowercase, args.repeats)
    speed = figures["tokens_per_sec"]
    best_hf = max(rate for name, rate in speed.items() if name.startswith("HF "))
    figures["exact_vs_google_research"] = round(speed[EXACT] / speed[GOOGLE], 2)
    figures["exact_vs_best_hf"] = round(speed[EXACT] / best_hf, 2)
    figures["in_graph_vs_best_hf"] = round(speed[IN_GRAPH] / best_hf, 2)
    entry[name] = figures
    print(f"\n{name}: {figures['texts']} texts, {figures['tokens']} tokens")
    for tokenizer, rate in speed.items():
      print(f"  {tokenizer:<58}{rate:>12,} tokens/s")
    print(f"  exact path vs google-research {figures['exact_vs_google_research']}x, "
          f"vs best Hugging Face {figures['exact_vs_best_hf']}x; in-graph vs best Hugging Face "
          f"{figures['in_graph_vs_best_hf']}x; Hugging Face tokens identical on "
          f"{figures['texts_identical_hf_vs_google_research']} texts")
  common.merge_results("tokenization", entry)
  return entry


if __name__ == "__main__":
  main()
