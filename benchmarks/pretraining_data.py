"""Pretraining data creation: bert_tf's create_pretraining_data against tf-models-official's.

  python -m benchmarks.pretraining_data [--dupe_factor 2] [--num_workers 2] [--scale 10]

Builds one Korean text (one sentence a line, blank line between documents) from
../shared/data/corpus_ko (Constitution, bills, KorSTS/KorNLI sentences, chatbot Q/A; 10 lines a
document), runs both tools on it as subprocesses with the KcBERT vocab and google-research's
defaults (max_seq_length 128, 20 predictions), and reports each one's wall seconds, instances a
second and peak resident memory (ru_maxrss of the child). Then runs ours on the text repeated
--scale times to show that peak memory stays flat as the corpus grows. Merged into
benchmarks/results.json under "pretraining_data".
"""

import argparse
import csv
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Sequence

import tensorflow as tf

from benchmarks import common
from bert_tf import io_utils

ROOT = common.ROOT
DATA = common.DATA
CORPUS = DATA / "corpus_ko"
VOCAB = DATA / "vocabs" / "kcbert-base-vocab.txt"
LINES_PER_DOCUMENT = 10


def corpus_sentences(corpus: pathlib.Path) -> Iterator[str]:
  """Korean sentences from corpus_ko, in a fixed order."""
  for path in sorted((corpus / "konlpy_corpus").glob("*/*.txt")):
    yield from path.read_text(encoding="utf-8").splitlines()
  for path in sorted((corpus / "KorNLUDatasets").glob("*/*.tsv")):
    with path.open(encoding="utf-8") as f:
      for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
        yield row["sentence1"]
        yield row["sentence2"]
  with (corpus / "Chatbot_data" / "ChatbotData.csv").open(encoding="utf-8") as f:
    for row in csv.DictReader(f):
      yield row["Q"]
      yield row["A"]


def write_korean_corpus(path: str, max_lines: Optional[int] = None,
                        corpus: pathlib.Path = CORPUS) -> int:
  """Writes corpus_ko as pretraining text (10 lines a document); returns the lines written."""
  lines: List[str] = []
  for sentence in corpus_sentences(corpus):
    sentence = " ".join(sentence.split())
    if sentence:
      lines.append(sentence)
      if len(lines) % LINES_PER_DOCUMENT == 0:
        lines.append("")
    if max_lines and len(lines) >= max_lines:
      break
  io_utils.write_text_atomic(path, "\n".join(lines) + "\n")
  return len(lines)


TOOLS = {"bert_tf": "bert_tf.create_pretraining_data",
         "tf-models": "official.nlp.data.create_pretraining_data",
         "clean_text": "bert_tf.clean_text"}  # benchmarks.pretraining_scale's first stage


def child(tool: str, argv: List[str]) -> None:
  """Runs one tool's main() in this process and prints its seconds and peak RSS as JSON.

  Imports and flag parsing are not timed, so TensorFlow's start-up does not count for either.
  Peak RSS is the largest of this process and its worker processes (not their sum).
  """
  import importlib  # pylint: disable=import-outside-toplevel
  import resource  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  module = importlib.import_module(TOOLS[tool])
  if module.__name__.startswith("bert_tf"):  # tf-models' defines its flags when imported
    module.define_flags()
  flags.FLAGS([tool, *argv])
  started = time.perf_counter()
  module.main(None)
  seconds = time.perf_counter() - started
  peak = max(resource.getrusage(who).ru_maxrss
             for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
  print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mib": round(peak / 1024)}))


def measure(tool: str, flags_: List[str]) -> Dict[str, Any]:
  """Seconds and peak RSS (MiB) of one tool run in a fresh interpreter."""
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
  result = subprocess.run([sys.executable, "-m", "benchmarks.pretraining_data",
                           f"--child={tool}", "--", *flags_], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=False)
  if result.returncode:
    raise RuntimeError(f"{tool} failed:\n{result.stderr[-3000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def count_records(pattern: str) -> int:
  return sum(1 for _ in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)))


def _common_flags(input_file: str, output_file: str, dupe_factor: int) -> List[str]:
  return [f"--input_file={input_file}", f"--output_file={output_file}", f"--vocab_file={VOCAB}",
          "--do_lower_case=False", "--max_seq_length=128", "--max_predictions_per_seq=20",
          "--masked_lm_prob=0.15", "--random_seed=12345", f"--dupe_factor={dupe_factor}"]


def run_ours(input_file: str, output_file: str, dupe_factor: int, num_workers: int,
             more_flags: Sequence[str] = ()) -> Dict[str, Any]:
  figures = measure("bert_tf", [*_common_flags(input_file, output_file, dupe_factor),
                                f"--num_workers={num_workers}", *more_flags])
  figures["instances"] = io_utils.read_json(output_file + ".metadata.json")["counts"]["instances"]
  return figures


def run_tf_models(input_file: str, output_file: str, dupe_factor: int) -> Dict[str, Any]:
  figures = measure("tf-models", _common_flags(input_file, output_file, dupe_factor))
  figures["instances"] = count_records(output_file)
  return figures


def main(argv: Optional[Sequence[str]] = None) -> Optional[Dict[str, Any]]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--dupe_factor", type=int, default=10)
  parser.add_argument("--num_workers", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--scale", type=int, default=10, help="Repeats for the memory figure.")
  parser.add_argument("--child", choices=sorted(TOOLS), help=argparse.SUPPRESS)
  args, rest = parser.parse_known_args(argv)
  if args.child:
    return child(args.child, [a for a in rest if a != "--"])
  if not CORPUS.is_dir():
    sys.exit(f"{CORPUS} is not present.")
  with tempfile.TemporaryDirectory() as tmp:
    text = os.path.join(tmp, "corpus.txt")
    lines = write_korean_corpus(text)
    big = os.path.join(tmp, f"corpus_x{args.scale}.txt")
    with open(big, "w", encoding="utf-8") as out, open(text, encoding="utf-8") as f:
      content = f.read()
      for _ in range(args.scale):
        out.write(content + "\n")
    theirs = run_tf_models(text, os.path.join(tmp, "tf_models.tfrecord"), args.dupe_factor)
    ours = run_ours(text, os.path.join(tmp, "ours", "data.tfrecord"), args.dupe_factor,
                    args.num_workers)
    ours_1 = run_ours(text, os.path.join(tmp, "ours1", "data.tfrecord"), args.dupe_factor, 1)
    ours_big = run_ours(big, os.path.join(tmp, "big", "data.tfrecord"), args.dupe_factor,
                        args.num_workers)
  for figures in (theirs, ours, ours_1, ours_big):
    figures["instances_per_sec"] = round(figures["instances"] / figures["seconds"])
  entry = {
      "what": "create_pretraining_data on corpus_ko with the KcBERT vocab: bert_tf vs "
              "tf-models-official (a port of google-research's), each a subprocess",
      "input_lines": lines, "dupe_factor": args.dupe_factor, "max_seq_length": 128,
      "max_predictions_per_seq": 20,
      "tf-models": theirs, f"bert_tf, {args.num_workers} workers": ours,
      "bert_tf, 1 worker": ours_1,
      f"bert_tf, {args.num_workers} workers, input x{args.scale}": ours_big,
      "throughput_ratio": round(ours["instances_per_sec"] / theirs["instances_per_sec"], 1),
      "throughput_ratio_1_worker": round(ours_1["instances_per_sec"] / theirs["instances_per_sec"],
                                         1),
      "peak_rss_ratio_x{}_vs_x1".format(args.scale): round(
          ours_big["peak_rss_mib"] / ours["peak_rss_mib"], 2),
      "note": "seconds: main() only, after imports, in a fresh process per run; peak RSS: "
              "the largest single process (TensorFlow's own footprint included)",
      "machine": common.machine_info()}
  common.merge_results("pretraining_data", entry)
  print(json.dumps(entry, indent=2, ensure_ascii=False))
  return entry


if __name__ == "__main__":
  main()
