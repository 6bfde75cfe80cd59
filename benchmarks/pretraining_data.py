"""Pretraining data creation: bert_tf's create_pretraining_data against tf-models-official's.

  python -m benchmarks.pretraining_data [--copies 4] [--num_workers 1,2] [--repeats 3] [--profile]

Builds one Korean text (one sentence a line, blank line between documents) from
../shared/data/corpus_ko (Constitution, bills, KorSTS/KorNLI sentences, chatbot Q/A; 10 lines a
document), --copies times over (4: about 570k instances with google-research's --dupe_factor
10), and runs each tool on it as `python -m TOOL` with the KcBERT vocab and google-research's
defaults (max_seq_length 128, 20 predictions): tf-models-official's port of google-research's
script, and ours with each of --num_workers. Each run is timed end to end, from process start
(TensorFlow's import included for whoever imports it) to exit; rounds run every tool in turn
and the medians of --repeats rounds give instances a second, their ratio and our scaling with
workers. --profile adds where one worker's time goes (cProfile of main()). Merged into
benchmarks/results.json under "pretraining_data". `run_ours`/`run_tf_models` (main() only,
after imports) serve benchmarks.pretraining_scale.
"""

import argparse
import csv
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence

from benchmarks import common
from bert_tf.data import records
from bert_tf.io import files as io_files

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
  io_files.write_text_atomic(path, "\n".join(lines) + "\n")
  return len(lines)


TOOLS = {"bert_tf": "bert_tf.corpus.create_pretraining_data",
         "tf-models": "official.nlp.data.create_pretraining_data",
         "clean_text": "bert_tf.corpus.clean_text"}  # benchmarks.pretraining_scale's first stage


def child(tool: str, argv: List[str]) -> None:
  """Runs one tool's main() in this process and prints its seconds, CPU seconds and peak RSS as
  JSON.

  Imports and flag parsing are not timed, so TensorFlow's start-up does not count for either.
  CPU seconds (user + system, this process's during main() and its worker processes') do not
  depend on how many other processes share the cores. Peak RSS is the largest of this process
  and its worker processes (not their sum).
  """
  import importlib  # pylint: disable=import-outside-toplevel
  import resource  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  module = importlib.import_module(TOOLS[tool])
  if module.__name__.startswith("bert_tf"):  # tf-models' defines its flags when imported
    module.define_flags()
  flags.FLAGS([tool, *argv])
  def cpu(usage: Any) -> float:
    return usage.ru_utime + usage.ru_stime

  started, cpu_before = time.perf_counter(), cpu(resource.getrusage(resource.RUSAGE_SELF))
  module.main(None)
  seconds = time.perf_counter() - started
  usage = {who: resource.getrusage(who)
           for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)}
  cpu_seconds = cpu(usage[resource.RUSAGE_SELF]) - cpu_before + cpu(
      usage[resource.RUSAGE_CHILDREN])
  peak = max(_own_peak_rss_kib(usage[resource.RUSAGE_SELF]),
             usage[resource.RUSAGE_CHILDREN].ru_maxrss)
  print(json.dumps({"seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2),
                    "peak_rss_mib": round(peak / 1024)}))


def _own_peak_rss_kib(usage: Any) -> int:
  """This process's peak RSS (KiB): Linux's VmHWM where there is one, since ru_maxrss starts
  from the high-water mark of the process that started this one (a test runner with TensorFlow
  loaded would be measured instead of the tool)."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1])
  except OSError:
    pass
  return usage.ru_maxrss


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
  # Imported here: bert_tf's tools run without TensorFlow, so their child processes must not
  # load it (it would be most of their peak memory).
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return sum(1 for _ in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)))


def _common_flags(input_file: str, output_file: str, dupe_factor: int) -> List[str]:
  return [f"--input_file={input_file}", f"--output_file={output_file}", f"--vocab_file={VOCAB}",
          "--do_lower_case=False", "--max_seq_length=128", "--max_predictions_per_seq=20",
          "--masked_lm_prob=0.15", "--random_seed=12345", f"--dupe_factor={dupe_factor}"]


def run_ours(input_file: str, output_file: str, dupe_factor: int, num_workers: int,
             more_flags: Sequence[str] = ()) -> Dict[str, Any]:
  figures = measure("bert_tf", [*_common_flags(input_file, output_file, dupe_factor),
                                f"--num_workers={num_workers}", *more_flags])
  figures["instances"] = io_files.read_json(output_file + ".metadata.json")["counts"]["instances"]
  return figures


def run_tf_models(input_file: str, output_file: str, dupe_factor: int) -> Dict[str, Any]:
  figures = measure("tf-models", _common_flags(input_file, output_file, dupe_factor))
  figures["instances"] = count_records(output_file)
  return figures


def run_process(module: str, flags_: List[str]) -> Dict[str, Any]:
  """Wall seconds, CPU seconds and peak RSS (MiB) of `python -m MODULE FLAGS`, process start
  included.

  CPU seconds (user + system) are the process's and its workers' (wait4's rusage): on a shared
  machine they move less with other processes' load than wall seconds do. Peak RSS is that of
  the process or of its largest worker, not their sum.
  """
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
  started = time.perf_counter()
  with subprocess.Popen([sys.executable, "-m", module, *flags_], env=env, cwd=ROOT,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as process:
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
  seconds = time.perf_counter() - started
  if process.returncode:
    raise RuntimeError(f"{module} failed:\n{stderr.decode(errors='replace')[-3000:]}")
  return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
          "peak_rss_mib": round(usage.ru_maxrss / 1024)}


def _instances_in(output_file: str) -> int:
  """Instances written by either tool: from our metadata, else by reading the records."""
  metadata = output_file + ".metadata.json"
  if os.path.exists(metadata):
    return io_files.read_json(metadata)["counts"]["instances"]
  return sum(1 for _ in records.read_records(output_file))


def end_to_end(text: str, tmp: str, dupe_factor: int, num_workers: Sequence[int], repeats: int
               ) -> Dict[str, Dict[str, Any]]:
  """Each tool's median wall seconds over `repeats` rounds (each runs every tool once, in turn,
  so that load from other processes affects all alike), with instances and peak RSS."""
  runs = {"tf-models": (TOOLS["tf-models"], [])}
  for workers in num_workers:
    runs[f"bert_tf, {workers} worker(s)"] = (TOOLS["bert_tf"], [f"--num_workers={workers}"])
  rounds: Dict[str, List[Dict[str, Any]]] = {name: [] for name in runs}
  for repeat in range(repeats):
    for n, (name, (module, extra)) in enumerate(runs.items()):
      output = os.path.join(tmp, f"run{repeat}-{n}", "data.tfrecord")
      os.makedirs(os.path.dirname(output))  # tf-models' writer does not make it
      figures = run_process(module, [*_common_flags(text, output, dupe_factor), *extra])
      figures["instances"] = _instances_in(output)
      shutil.rmtree(os.path.dirname(output))
      rounds[name].append(figures)
      print(f"round {repeat + 1}/{repeats}: {name}: {figures}", flush=True)
  results = {}
  for name, figures in rounds.items():
    seconds = statistics.median(f["seconds"] for f in figures)
    cpu_seconds = statistics.median(f["cpu_seconds"] for f in figures)
    instances = figures[0]["instances"]
    results[name] = {"median_seconds": round(seconds, 2),
                     "seconds": [round(f["seconds"], 2) for f in figures],
                     "median_cpu_seconds": round(cpu_seconds, 2),
                     "cpu_seconds": [round(f["cpu_seconds"], 2) for f in figures],
                     "instances": instances, "instances_per_sec": round(instances / seconds),
                     "instances_per_cpu_sec": round(instances / cpu_seconds),
                     "peak_rss_mib": max(f["peak_rss_mib"] for f in figures)}
  return results


def profile_one_worker(text: str, output_file: str, dupe_factor: int, top: int = 12
                       ) -> List[Dict[str, Any]]:
  """Where one worker's time goes: cProfile of the tool's main() in this process, the functions
  with the most time of their own (share of the total)."""
  import cProfile  # pylint: disable=import-outside-toplevel
  import pstats  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  from bert_tf.corpus import create_pretraining_data  # pylint: disable=import-outside-toplevel
  create_pretraining_data.define_flags()
  flags.FLAGS(["create_pretraining_data", *_common_flags(text, output_file, dupe_factor),
               "--num_workers=1"])
  profiler = cProfile.Profile()
  profiler.runcall(create_pretraining_data.main, None)
  stats = pstats.Stats(profiler)
  total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
  rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:top]  # type: ignore
  return [{"function": f"{os.path.relpath(path, ROOT) if path.startswith(str(ROOT)) else path}"
                       f":{line}({name})", "calls": calls, "own_share": round(own / total, 3),
           "cumulative_share": round(cumulative / total, 3)}
          for (path, line, name), (_, calls, own, cumulative, _) in rows]


def main(argv: Optional[Sequence[str]] = None) -> Optional[Dict[str, Any]]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--dupe_factor", type=int, default=10)
  parser.add_argument("--copies", type=int, default=4, help="Copies of corpus_ko in the text "
                      "(4: about 570k instances).")
  parser.add_argument("--num_workers", default="1,2", help="Worker counts of our runs.")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--profile", action="store_true", help="Also profile one worker.")
  parser.add_argument("--child", choices=sorted(TOOLS), help=argparse.SUPPRESS)
  args, rest = parser.parse_known_args(argv)
  if args.child:
    return child(args.child, [a for a in rest if a != "--"])
  if not CORPUS.is_dir():
    sys.exit(f"{CORPUS} is not present.")
  workers = [int(n) for n in args.num_workers.split(",")]
  with tempfile.TemporaryDirectory() as tmp:
    text = os.path.join(tmp, "corpus.txt")
    lines = write_korean_corpus(text)
    with open(text, encoding="utf-8") as f:
      content = f.read()
    with open(text, "w", encoding="utf-8") as out:
      out.write("\n".join([content] * args.copies))
    runs = end_to_end(text, tmp, args.dupe_factor, workers, args.repeats)
    profile = (profile_one_worker(text, os.path.join(tmp, "profile", "data"), args.dupe_factor)
               if args.profile else None)
  theirs, ours = runs["tf-models"], runs[f"bert_tf, {workers[0]} worker(s)"]
  entry = {
      "what": "create_pretraining_data on corpus_ko with the KcBERT vocab: bert_tf vs "
              "tf-models-official (a port of google-research's), each `python -m TOOL` in a "
              "fresh process, timed end to end (process start and imports included)",
      "input_lines": lines * args.copies, "copies_of_corpus_ko": args.copies,
      "dupe_factor": args.dupe_factor, "max_seq_length": 128, "max_predictions_per_seq": 20,
      "repeats": args.repeats, **runs,
      f"throughput_ratio_{workers[0]}_worker(s)": round(
          ours["instances_per_sec"] / theirs["instances_per_sec"], 1),
      f"cpu_throughput_ratio_{workers[0]}_worker(s)": round(
          ours["instances_per_cpu_sec"] / theirs["instances_per_cpu_sec"], 1),
      **{f"scaling_{n}_vs_{workers[0]}_worker(s)": round(
          runs[f"bert_tf, {n} worker(s)"]["instances_per_sec"] / ours["instances_per_sec"], 2)
         for n in workers[1:]},
      "note": "seconds: medians of wall time from process start to exit, rounds interleaved; "
              "instances_per_sec from them; cpu: user + system seconds of the process and its "
              "workers (less sensitive to other load on a shared machine); peak RSS: the "
              "largest single process",
      "machine": common.machine_info()}
  if profile:
    entry["profile_1_worker"] = profile
  common.merge_results("pretraining_data", entry)
  print(json.dumps(entry, indent=2, ensure_ascii=False))
  return entry


if __name__ == "__main__":
  main()
