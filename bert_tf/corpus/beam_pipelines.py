"""Apache Beam pipelines for create_pretraining_data and clean_text: the same output, any runner.

Usage: python -m bert_tf.corpus.create_pretraining_data --input_file=gs://b/corpus/*.txt \
  --output_file=gs://b/data/pretrain.tfrecord --vocab_file=vocab.txt --num_output_shards=64 \
  --runner=DataflowRunner -- --project=P --region=R --temp_location=gs://b/tmp \
  --setup_file=./setup.py --max_num_workers=32
(and the same `--runner=... -- ...` for python -m bert_tf.corpus.clean_text).

Beam's pipeline options go after `--`; before it are the tool's own flags (bert_tf.corpus.beam_flags
reads them; Beam is imported only with --runner). So `--num_workers` before `--` is the tool's
local process count (refused with --runner: the runner decides) and after it Beam's (Dataflow's
initial worker count). Unknown Beam options are an error before any work (Beam itself would only
log them and drop them), and so are, on Dataflow, local paths and no way to ship bert_tf to the
workers (--setup_file=./setup.py).

create_pretraining_data runs its own algorithm (see its module docstring), step for step, so
the shards and the metadata are byte for byte the local run's for the same flags:
  1. Count pass: each input file is read by one worker, in parallel over files, and its shape
     (documents, cut documents, ...) returned to the driver, which sizes the windows as the
     local run does.
  2. Windows: each file is read again; its j-th document is document offset(file) + j of the
     corpus (offset = the documents of the files before it), so window i gets exactly the
     documents the local stream gives it. Documents are grouped by window (Beam's shuffle carries
     the text once); each window is made by the local run's own shards.window_blocks (the
     same seeds), which emits (shard, block): records bound for one shard with their sort keys.
  3. Shards: a GroupByKey on the shard brings each shard's blocks together, in whatever order
     the runner delivers them; shards.write_shard sorts the records by key and writes the shard
     once, atomically, with its progress record. No part file: the runner's shuffle (Dataflow
     Shuffle, Flink's or Spark's) moves the records, so the requests to the bucket are the input
     reads and one write a shard, whatever the number of windows and shards.
The driver then writes the metadata (commit point), as the local run does; a rerun writes only
the shards OUTPUT_FILE.progress/ does not record as done (making the windows again, since their
records are not kept). A shard is sorted in one worker's memory: keep shards well under a
worker's memory (e.g. 1 GB; --num_output_shards sets their number).

What is honest at corpus scale (KcBERT's 12.5 GB): the costly work (tokenizing, masking,
encoding) is spread over windows, and the sorting and writing over shards, whatever the input's
layout. Reading is spread over files only: one worker reads each file, twice (the local run
reads the corpus twice too). A corpus in many files (e.g. 100 MB each) reads in parallel; a
single 12.5 GB file is read at one worker's pace (minutes per pass), since a document may start
anywhere in it and splitting a file by byte ranges would need its document boundaries first.

clean_text's Beam path: each file is cleaned by one worker (clean_file) into a scratch
directory beside the output; each cleaned line's 8-byte hash (the local run's) is keyed to its
place (file, line); the earliest place of each hash (a combine, so duplicates are dropped before
the shuffle) marks the lines kept; each file is written again without its repeated lines; and
one worker concatenates them in input order with the local run's blank-line rule
(cleaning.write_merged). The output and the counts are the local run's.

Small results (per-file counts) come back to the driver through a JSON file written by the
pipeline's last step, which works on every runner; a ValueError a worker raises on bad input
(e.g. a file that is not UTF-8) is raised again on the driver with its message. Tested on
DirectRunner (two worker threads or processes) only.
"""

import itertools
import re
from typing import Any, Callable, Dict, Iterable, Iterator, List, Sequence, Set, Tuple

import apache_beam as beam
import numpy as np
from absl import logging
from apache_beam.options import pipeline_options as beam_options

from bert_tf.corpus import cleaning, instances, reading, shards
from bert_tf.io import files as io_files

# The pipelines run the local tools' own steps, private ones included, so that both paths share
# one implementation.
# pylint: disable=protected-access

RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PrismRunner",
           "FnApiRunner")


def pipeline_options(runner: str, args: Sequence[str], local_workers_given: bool = False
                     ) -> beam_options.PipelineOptions:
  """Beam's options from --runner and the arguments after `--`, checked before any work.

  Raises:
    ValueError: for an unknown runner or Beam option, --num_workers (the local flag) given with
      --runner, or DataflowRunner without a way to ship bert_tf to the workers.
  """
  if local_workers_given:
    raise ValueError("--num_workers is the number of local processes; with --runner the runner "
                     "sets the workers. Pass Beam's worker options after `--`, e.g. `-- "
                     "--num_workers=8 --max_num_workers=32` (Dataflow) or `-- "
                     "--direct_num_workers=4 --direct_running_mode=multi_processing` "
                     "(DirectRunner).")
  known = {name.lower() for name in beam_options.StandardOptions.KNOWN_RUNNER_NAMES}
  if "." not in runner and not {runner.lower(), runner.lower() + "runner"} & known:
    raise ValueError(f"--runner={runner} is not a Beam runner: use one of {', '.join(RUNNERS)} "
                     "(or a runner class's full dotted name).")
  stray = [arg for arg in args if not arg.startswith("--")]
  if stray:
    raise ValueError(f"Unexpected arguments after `--`: {stray}. Beam options there take the "
                     "form --name=value.")
  options = beam_options.PipelineOptions(list(args), runner=runner)
  unknown = sorted(set(options.get_all_options(retain_unknown_options=True))
                   - set(options.get_all_options()))
  if unknown:
    raise ValueError(f"Unknown Beam pipeline option(s) after `--`: "
                     f"{', '.join('--' + name for name in unknown)}. The tool's own flags go "
                     "before `--`; Beam's are listed at https://beam.apache.org/releases/pydoc/"
                     f"{beam.__version__}/apache_beam.options.pipeline_options.html")
  setup = options.view_as(beam_options.SetupOptions)
  worker = options.view_as(beam_options.WorkerOptions)
  if "dataflow" in runner.lower() and not (setup.setup_file or setup.extra_packages
                                           or worker.sdk_container_image):
    raise ValueError("DataflowRunner's workers need the bert_tf package: add `--setup_file="
                     "./setup.py` after `--` (run from the repository), or --extra_packages / "
                     "--sdk_container_image.")
  return options


# How a runner reports an exception raised on a worker: its traceback as text, the tool's error
# message on the last line (plus, on some runners, the step's name).
_WORKER_VALUE_ERROR = re.compile(r"^(?:\w+\.)*ValueError: (.*?)(?: \[while running '[^']*'\])?$",
                                 re.MULTILINE)


def check_worker_paths(options: beam_options.PipelineOptions, paths: Dict[str, str]) -> None:
  """Fails when a runner whose workers are other machines (Dataflow) is given local paths
  (flag -> comma-separated paths), which those workers cannot read or write."""
  runner = str(options.view_as(beam_options.StandardOptions).runner or "")
  local = [f"{flag}={path}" for flag, paths_of_flag in paths.items()
           for path in paths_of_flag.split(",") if "://" not in path]
  if "dataflow" in runner.lower() and local:
    raise ValueError(f"{runner}'s workers cannot reach local paths: {', '.join(local)}. Put them "
                     "on Cloud Storage (gs://BUCKET/...).")


def _run(build: Callable[[beam.Pipeline], Any], options: beam_options.PipelineOptions) -> None:
  """Runs the pipeline `build` makes and waits for it. A ValueError raised on a worker (a bad
  input file, named with its fix) is raised here as that ValueError, not as the runner's
  wrapper of the worker's traceback."""
  runner = options.view_as(beam_options.StandardOptions).runner
  logging.info("Running a Beam pipeline on %s.", runner)
  try:
    with beam.Pipeline(options=options) as p:
      build(p)
  except Exception as e:  # pylint: disable=broad-except  (runners wrap it in their own types)
    match = _WORKER_VALUE_ERROR.search(str(e))
    if match:
      raise ValueError(match.group(1)) from e
    raise


def _run_and_collect(build: Callable[[beam.Pipeline], Any], options: beam_options.PipelineOptions,
                     near: str) -> Any:
  """Runs the pipeline `build` makes; its output, a PCollection of one JSON-able value, is
  written to a temporary file beside `near` and returned to the driver."""
  path = io_files.temporary_path(near)
  try:
    _run(lambda p: build(p) | "ToDriver" >> beam.Map(_write_json, path), options)
    return io_files.read_json(path)
  finally:
    if io_files.gfile.exists(path):
      io_files.gfile.remove(path)


def _write_json(value: Any, path: str) -> None:
  io_files.write_json_atomic(path, value)


class PretrainingRun:
  """create_pretraining_data's count pass and its windows and shards, as Beam pipelines."""

  def __init__(self, config: instances.DataConfig, files: Sequence[str],
               options: beam_options.PipelineOptions):
    check_worker_paths(options, {"--input_file": ",".join(files), "--output_file":
                                 config.output_file, "--vocab_file": config.vocab_file})
    self.config = config
    self.files, self.options = list(files), options
    self.file_documents: List[int] = []

  def count_documents(self) -> Dict[str, int]:
    """The corpus's shape (reading.corpus_shape; one pass, parallel over files); keeps each file's
    number of documents."""
    clean = self.config.clean

    def build(p: beam.Pipeline) -> Any:
      return (p | "Files" >> beam.Create(list(enumerate(self.files)))
              | "SpreadFiles" >> beam.Reshuffle()
              | "Count" >> beam.Map(_corpus_shape, clean)
              | "All" >> beam.combiners.ToList())

    shapes = dict(_run_and_collect(build, self.options,
                                   self.config.output_file + ".document-counts.json"))
    self.file_documents = [shapes[i]["documents"] for i in range(len(self.files))]
    return shards.sum_counts(shapes.values())

  def make_shards(self, window_size: int, num_shards: int, todo_shards: List[int]
                  ) -> Dict[str, int]:
    """Writes the shards `todo_shards` (none when no window has an instance); returns the
    windows' counts (shards.sum_counts)."""
    config = self.config
    offsets = [0, *itertools.accumulate(self.file_documents)]

    def build(p: beam.Pipeline) -> Any:
      windows = (p | "Files" >> beam.Create(list(enumerate(self.files)))
                 | "SpreadFiles" >> beam.Reshuffle()
                 | "Documents" >> beam.FlatMap(_window_documents, offsets, window_size,
                                               config.clean)
                 | "ByWindow" >> beam.GroupByKey()
                 | "Windows" >> beam.ParDo(_MakeWindow(config, num_shards, set(todo_shards)))
                 .with_outputs(_COUNTS, main="blocks"))
      counts = windows[_COUNTS] | "AllCounts" >> beam.combiners.ToList()
      # An empty block per shard, so that a shard with no record is written too.
      every_shard = p | "TodoShards" >> beam.Create([(shard, b"") for shard in todo_shards])
      _ = ((windows.blocks, every_shard) | "AllBlocks" >> beam.Flatten()
           | "ByShard" >> beam.GroupByKey()
           | "Shards" >> beam.Map(_write_shard, config, num_shards,
                                  beam.pvalue.AsSingleton(counts)))
      return counts | "Totals" >> beam.Map(shards.sum_counts)

    return _run_and_collect(build, self.options,
                            config.output_file + ".window-counts.json")


_COUNTS = "counts"


def _corpus_shape(file: Tuple[int, str], clean: str) -> Tuple[int, Dict[str, int]]:
  index, path = file
  return index, reading.corpus_shape([path], clean)


def _window_documents(file: Tuple[int, str], offsets: List[int], window_size: int, clean: str
                      ) -> Iterator[Tuple[int, Tuple[int, List[str]]]]:
  """(window, (document number in the corpus, lines)) for each document of `file` (its index
  in the input, its path)."""
  index, path = file
  count = offsets[index + 1] - offsets[index]
  for j, lines in enumerate(reading.read_documents([path], clean)):
    if j >= count:
      raise ValueError(f"{path} changed during the run: it has more than the {count} documents "
                       "counted at the start. Rerun on input that is not being written.")
    number = offsets[index] + j
    yield number // window_size, (number, lines)


class _MakeWindow(beam.DoFn):
  """One window's (shard, block)s for the shards to write (shards.window_blocks), and its counts
  as the output tagged _COUNTS."""

  def __init__(self, config: instances.DataConfig, num_shards: int, todo_shards: Set[int]):
    super().__init__()
    self.config, self.num_shards, self.todo_shards = config, num_shards, todo_shards

  def setup(self) -> None:
    shards.init_worker(self.config, self.num_shards)

  def process(self, element: Tuple[int, Iterable[Tuple[int, List[str]]]]
              ) -> Iterator[Any]:
    index, documents = element
    counts: Dict[str, int] = {}
    for shard, block in shards.window_blocks(index, [lines for _, lines in sorted(documents)],
                                             counts):
      if shard in self.todo_shards:
        yield shard, block
    yield beam.pvalue.TaggedOutput(_COUNTS, counts)


def _write_shard(element: Tuple[int, Iterable[bytes]], config: instances.DataConfig,
                 num_shards: int, counts: List[Dict[str, int]]) -> None:
  """Writes one shard from its blocks, unless no window made an instance (the driver then
  reports the error)."""
  shard, blocks = element
  if any(window.get("instances") for window in counts):
    shards.write_shard(config, shard, num_shards, (block for block in blocks if block))


def clean_files(file_pattern: str, files: Sequence[str], output_file: str,
                options: beam_options.PipelineOptions) -> Dict[str, int]:
  """clean_text.clean_files (kcbert recipe) as a Beam pipeline: the same output and counts."""
  check_worker_paths(options, {"--input_file": ",".join(files), "--output_file": output_file})
  scratch = io_files.temporary_path(output_file + ".beam")  # a directory, removed at the end
  try:
    def build(p: beam.Pipeline) -> Any:
      cleaned = (p | "Files" >> beam.Create(list(enumerate(files)))
                 | "SpreadFiles" >> beam.Reshuffle()
                 | "Clean" >> beam.Map(_clean_file, scratch))
      first = (cleaned | "Hashes" >> beam.FlatMap(_line_places, scratch)
               | "Earliest" >> beam.CombinePerKey(min)
               | "Places" >> beam.Values())
      return ({"counts": cleaned, "first": first} | "PerFile" >> beam.CoGroupByKey()
              | "DropRepeats" >> beam.Map(_drop_repeats, scratch)
              | "All" >> beam.combiners.ToList()
              | "Merge" >> beam.Map(_merge, len(files), scratch, output_file))

    counts = _run_and_collect(build, options, output_file + ".counts.json")
  finally:
    if io_files.gfile.exists(scratch):
      io_files.gfile.rmtree(scratch)
  cleaning.check_some_text(file_pattern, counts)
  return counts


def _scratch_file(scratch: str, kind: str, index: int) -> str:
  return f"{scratch}/{kind}-{index:05d}.txt"


def _clean_file(file: Tuple[int, str], scratch: str) -> Tuple[int, Dict[str, int]]:
  index, path = file
  return index, cleaning.clean_file(path, _scratch_file(scratch, "cleaned", index))


def _line_places(cleaned: Tuple[int, Dict[str, int]], scratch: str
                 ) -> Iterator[Tuple[bytes, Tuple[int, int]]]:
  """(hash, (file, line)) for each non-blank cleaned line of a file; (file, line) orders as the
  input does."""
  index, _ = cleaned
  lines = (line for line in cleaning.read_lines(_scratch_file(scratch, "cleaned", index))
           if line)
  for j, line in enumerate(lines):
    yield cleaning.line_digest(line), (index, j)


def _drop_repeats(file: Tuple[int, Dict[str, Iterable[Any]]], scratch: str
                  ) -> Tuple[int, Dict[str, int]]:
  """Writes a file's cleaned lines less those seen earlier in the input (blank lines all kept:
  the blank-line rule needs the whole input, see _merge); returns its index and counts."""
  index, grouped = file
  counts = dict(next(iter(grouped["counts"])))
  lines = counts["lines_in"] - counts.get("blank_lines", 0) - counts.get("dropped_short", 0)
  first = np.zeros(lines, bool)
  first[np.fromiter(grouped["first"], np.int64)] = True
  dropped = line_number = 0
  unique = _scratch_file(scratch, "unique", index)
  with io_files.atomic_output(unique) as tmp, io_files.gfile.GFile(tmp, "w") as out:
    for line in cleaning.read_lines(_scratch_file(scratch, "cleaned", index)):
      if line:
        line_number += 1
        if not first[line_number - 1]:
          dropped += 1
          continue
      out.write(line + "\n")
  counts["dropped_duplicate"] = dropped
  return index, counts


def _merge(results: List[Tuple[int, Dict[str, int]]], num_files: int, scratch: str,
           output_file: str) -> Dict[str, int]:
  """The output, from every file's lines without repeats in input order (nothing when no line
  is left: the driver reports that); returns the counts of all files."""
  counts: Dict[str, int] = {rule: 0 for rule in cleaning.RULES}
  for _, file_counts in results:
    for rule, value in file_counts.items():
      counts[rule] += value
  if counts["lines_in"] != counts["blank_lines"] + counts["dropped_short"]:
    cleaning.write_merged([_scratch_file(scratch, "unique", i) for i in range(num_files)],
                          output_file, counts)
  return counts
