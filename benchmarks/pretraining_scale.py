"""Pretraining data at scale: clean_text then create_pretraining_data on 10x and 100x corpus_ko.

  python -m benchmarks.pretraining_scale [--scales 10,100] [--dupe_factor 1] [--num_workers 2]

For each scale S, writes a Korean text of S x 58,382 lines (corpus_ko holds 58,382 sentences) to a
temporary directory, one file per 1x: each line joins two different sentences of corpus_ko (of
its distinct ones) drawn at random with a fixed seed, 10 lines a document. A plain repeat would
not measure anything at scale: clean_text drops exact duplicate lines, so S copies clean down to
one; recombined, the lines are new (the few that repeat by chance are dropped and counted). Then
runs bert_tf.corpus.clean_text (kcbert recipe: rules and de-duplication) on the files and
bert_tf.corpus.create_pretraining_data on its output (KcBERT vocab, max_seq_length 128, 20
predictions,
--documents_per_shard 2000, --dupe_factor), each in a fresh process, timing main() and taking
the peak resident memory as benchmarks.pretraining_data does. Reports lines/s and peak RSS of
the clean, instances/s and peak RSS of the data creation at each scale, per wall second and per
CPU second (the cores are shared: CPU seconds do not depend on the other processes' load), and
their ratios between the largest and the smallest scale: flat (within 10%, per CPU second and
peak RSS) means nothing grows with the corpus. Adds
the resume figure of benchmarks.resume_position (its latest entry: run it first). Merged into
benchmarks/results.json under "pretraining_scale".
"""

import argparse
import json
import os
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from benchmarks import common, pretraining_data

CORPUS = pretraining_data.CORPUS
LINES_PER_DOCUMENT = pretraining_data.LINES_PER_DOCUMENT
DOCUMENTS_PER_SHARD = 2000
SEED = 12345


def corpus_ko_sentences() -> List[str]:
  """corpus_ko's non-blank sentences, whitespace-normalised, in order (repeats included)."""
  sentences = (" ".join(s.split()) for s in pretraining_data.corpus_sentences(CORPUS))
  return [s for s in sentences if s]


def write_recombined(directory: str, sentences: List[str], lines: int, lines_per_file: int,
                     seed: int = SEED) -> List[str]:
  """Writes `lines` lines, each two different `sentences` joined, drawn at random; returns files.

  A blank line after every LINES_PER_DOCUMENT lines (documents); file i draws from seed + i.
  """
  paths = []
  for index, start in enumerate(range(0, lines, lines_per_file)):
    count = min(lines_per_file, lines - start)
    rng = np.random.default_rng(seed + index)
    first = rng.integers(len(sentences), size=count)
    second = (first + rng.integers(1, len(sentences), size=count)) % len(sentences)
    path = os.path.join(directory, f"raw-{index:05d}.txt")
    with open(path, "w", encoding="utf-8") as f:
      for line, (a, b) in enumerate(zip(first, second), 1):
        f.write(f"{sentences[a]} {sentences[b]}\n")
        if line % LINES_PER_DOCUMENT == 0:
          f.write("\n")
    paths.append(path)
  return paths


def count_lines(path: str) -> Dict[str, int]:
  """Non-blank lines and documents (runs of them between blank lines) of a text file."""
  lines = documents = 0
  previous_blank = True
  with open(path, encoding="utf-8") as f:
    for line in f:
      blank = not line.strip()
      lines += not blank
      documents += previous_blank and not blank
      previous_blank = blank
  return dict(lines=lines, documents=documents)


def _per(count: int, seconds: float) -> int:
  """`count` a second (seconds are rounded to 0.01: a tiny --quick run may show 0)."""
  return round(count / max(seconds, 0.01))


def run_scale(directory: str, sentences: List[str], lines: int, lines_per_file: int,
              dupe_factor: int, num_workers: int) -> Dict[str, Any]:
  """Writes a corpus of `lines` lines, cleans it and makes its records; returns the figures."""
  raw_dir = os.path.join(directory, "raw")
  os.makedirs(raw_dir)
  started = time.perf_counter()
  files = write_recombined(raw_dir, sentences, lines, lines_per_file)
  written_seconds = time.perf_counter() - started
  input_mib = sum(os.path.getsize(path) for path in files) / 2**20
  clean = os.path.join(directory, "clean.txt")
  cleaning = pretraining_data.measure("clean_text", [
      f"--input_file={os.path.join(raw_dir, 'raw-*.txt')}", f"--output_file={clean}",
      "--clean=kcbert", f"--num_workers={num_workers}"])
  kept = count_lines(clean)
  cleaning.update(lines_in=lines, lines_kept=kept["lines"], documents=kept["documents"],
                  lines_per_sec=_per(lines, cleaning["seconds"]),
                  lines_per_cpu_sec=_per(lines, cleaning["cpu_seconds"]))
  for path in files:  # only the cleaned text is needed now (disk, page cache)
    os.remove(path)
  creating = pretraining_data.run_ours(
      clean, os.path.join(directory, "records", "data.tfrecord"), dupe_factor, num_workers,
      [f"--documents_per_shard={DOCUMENTS_PER_SHARD}"])
  creating["instances_per_sec"] = _per(creating["instances"], creating["seconds"])
  creating["instances_per_cpu_sec"] = _per(creating["instances"], creating["cpu_seconds"])
  creating["shards"] = -(-kept["documents"] // DOCUMENTS_PER_SHARD)
  return dict(lines=lines, input_files=len(files), input_mib=round(input_mib),
              seconds_to_write_input=round(written_seconds, 1), clean_text=cleaning,
              create_pretraining_data=creating)


def resume_figure() -> Optional[Dict[str, Any]]:
  """benchmarks.resume_position's latest entry, as recorded (None if it never ran)."""
  entry = common.read_results().get("resume_position")
  if not entry:
    return None
  return dict(source="benchmarks.resume_position (its own entry in results.json)",
              shards=entry["shards"], records=entry["records"], batch_size=entry["batch_size"],
              figures=entry["figures"], measured=entry["machine"]["date"])


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--scales", default="10,100", help="comma-separated multiples of corpus_ko")
  parser.add_argument("--dupe_factor", type=int, default=1)
  parser.add_argument("--num_workers", type=int, default=os.cpu_count() or 1)
  args = parser.parse_args(argv)
  scales = [float(s) for s in args.scales.split(",")]
  if not CORPUS.is_dir():
    raise SystemExit(f"{CORPUS} is not present.")
  every = corpus_ko_sentences()
  sentences = list(dict.fromkeys(every))  # each once: fewer lines that repeat by chance
  load_before = round(os.getloadavg()[0], 2)
  runs = {}
  for scale in scales:
    with tempfile.TemporaryDirectory() as tmp:
      name = f"x{scale:g}"
      print(f"{name}: writing, cleaning, making records", flush=True)
      runs[name] = run_scale(tmp, sentences, round(scale * len(every)), len(every),
                             args.dupe_factor, args.num_workers)
      print(json.dumps(runs[name], ensure_ascii=False), flush=True)
  small, large = runs[f"x{min(scales):g}"], runs[f"x{max(scales):g}"]
  ratios = {}
  for stage, speed in (("clean_text", "lines_per"), ("create_pretraining_data", "instances_per")):
    ratios[stage] = dict(
        speed=round(large[stage][f"{speed}_sec"] / small[stage][f"{speed}_sec"], 2),
        speed_per_cpu_second=round(large[stage][f"{speed}_cpu_sec"] /
                                   small[stage][f"{speed}_cpu_sec"], 2),
        peak_rss=round(large[stage]["peak_rss_mib"] / small[stage]["peak_rss_mib"], 2),
        peak_rss_growth_mib=large[stage]["peak_rss_mib"] - small[stage]["peak_rss_mib"])
  entry = dict(
      what="clean_text then create_pretraining_data on corpus_ko recombined to each scale "
           "(each line two real sentences drawn at random, seeded), each stage a fresh process",
      corpus_ko_sentences=len(every), distinct_sentences=len(sentences), dupe_factor=args.dupe_factor,
      num_workers=args.num_workers, max_seq_length=128, max_predictions_per_seq=20,
      documents_per_shard=DOCUMENTS_PER_SHARD, scales=runs,
      ratio_largest_vs_smallest=ratios,
      flat_within_10_percent=all(abs(r[k] - 1) <= 0.1 for r in ratios.values()
                                 for k in ("speed_per_cpu_second", "peak_rss")),
      resume=resume_figure(),
      note="seconds: main() only, after imports; peak RSS: the largest single process "
           "(the data tools load no TensorFlow)",
      load_average_1min_before=load_before, machine=common.machine_info())
  common.merge_results("pretraining_scale", entry)
  print(json.dumps({k: entry[k] for k in ("ratio_largest_vs_smallest",
                                          "flat_within_10_percent")}, indent=2))
  return entry


if __name__ == "__main__":
  main()
