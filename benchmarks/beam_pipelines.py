"""The Beam path on DirectRunner against the local path: seconds and byte-identical output.

  python -m benchmarks.beam_pipelines [--max_lines 64868] [--dupe_factor 10] [--files 4]

Writes ../shared/data/corpus_ko (as benchmarks.pretraining_data builds it) into --files files,
then runs, in this process and in turn, create_pretraining_data (KcBERT vocab, 8 shards) and
clean_text locally with one worker and on DirectRunner with 2 worker threads and 2 worker
processes (FnApiRunner, which DirectRunner uses for batch pipelines when it does not first
download Prism), and checks that each Beam output is the local one byte for byte. DirectRunner is
Beam's runner for tests: the figure is its overhead on one machine, not what Dataflow would do.
Merged into benchmarks/results.json under "beam_pipelines".
"""

import argparse
import dataclasses
import filecmp
import pathlib
import tempfile
import time
from typing import Any, Dict, Optional, Sequence

from benchmarks import common
from benchmarks.pretraining_data import CORPUS, VOCAB, write_korean_corpus
from bert_tf.corpus import beam_pipelines, clean_text, instances
from bert_tf.corpus import create_pretraining_data as cpd

MODES = ("multi_threading", "multi_processing")


def _split(text: pathlib.Path, directory: pathlib.Path, files: int) -> str:
  lines = text.read_text(encoding="utf-8").splitlines(keepends=True)
  size = -(-len(lines) // files)
  directory.mkdir()
  for i in range(files):
    (directory / f"ko{i}.txt").write_text("".join(lines[i * size:(i + 1) * size]),
                                          encoding="utf-8")
  return str(directory / "ko*.txt")


def _timed(run) -> float:
  start = time.perf_counter()
  run()
  return round(time.perf_counter() - start, 2)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--max_lines", type=int, default=None)
  parser.add_argument("--dupe_factor", type=int, default=10)
  parser.add_argument("--files", type=int, default=4)
  args = parser.parse_args(argv)
  entry: Dict[str, Any] = {"command": "python -m benchmarks.beam_pipelines", "args": vars(args)}
  with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    write_korean_corpus(str(root / "ko.txt"), max_lines=args.max_lines, corpus=CORPUS)
    pattern = _split(root / "ko.txt", root / "input", args.files)
    config = instances.DataConfig(input_file=pattern, output_file=str(root / "local" / "ko"),
                                  vocab_file=str(VOCAB), do_lower_case=False,
                                  dupe_factor=args.dupe_factor, num_output_shards=8)
    local: Dict[str, Any] = {}
    seconds = {"local, 1 worker": _timed(lambda: local.update(cpd.create_pretraining_data(config)))}
    identical = {}
    for mode in MODES:
      options = beam_pipelines.pipeline_options(
          "FnApiRunner", ["--direct_num_workers=2", f"--direct_running_mode={mode}"])
      beam_config = dataclasses.replace(config, output_file=str(root / mode / "ko"))
      seconds[f"FnApiRunner, 2 workers, {mode}"] = _timed(
          lambda: cpd.create_pretraining_data(beam_config, beam_options=options))
      identical[mode] = all(filecmp.cmp(root / "local" / name, root / mode / name, shallow=False)
                            for name in local["files"])
    entry["create_pretraining_data"] = {"seconds": seconds, "identical_shards": identical,
                                        "instances": local["counts"]["instances"]}
    seconds = {"local, 1 worker": _timed(
        lambda: clean_text.clean_files(pattern, str(root / "clean-local.txt")))}
    identical = {}
    for mode in MODES:
      options = beam_pipelines.pipeline_options(
          "FnApiRunner", ["--direct_num_workers=2", f"--direct_running_mode={mode}"])
      seconds[f"FnApiRunner, 2 workers, {mode}"] = _timed(lambda: clean_text.clean_files(
          pattern, str(root / f"clean-{mode}.txt"), beam_options=options))
      identical[mode] = filecmp.cmp(root / "clean-local.txt", root / f"clean-{mode}.txt",
                                    shallow=False)
    entry["clean_text"] = {"seconds": seconds, "identical_output": identical}
  entry["machine"] = common.machine_info()
  common.merge_results("beam_pipelines", entry)
  print(entry)
  return entry


if __name__ == "__main__":
  main()
