"""End-to-end fine-tuning with packed rows against google-research's padded batches (issue 22).

  python -m benchmarks.packed_training [--examples 4000] [--squad_questions 1500] [--repeats 1]
                                       [--tasks nsmc,cola,squad]

Each figure is a whole process, start to exit, as a user runs it: run_classifier.py (or
run_squad.py) --do_train for one epoch from random BERT-mini weights (configs/bert_mini.json, the
vocab's size), seq 128, batch 32 (SQuAD: seq 384, stride 128, batch 32), once with
--pack_sequences=true and once with =false, each in a fresh output directory (both convert their
features). NSMC-like: the first --examples reviews of ../shared/data/nsmc_like with KcBERT's vocab;
CoLA: the first --examples sentences of in_domain_train.tsv with bert-base-uncased's; SQuAD: the
first questions of dev-v1.1 (whole paragraphs, about --squad_questions) as training data. When
benchmarks/hf_dynamic_padding.py is there (transformers + torch, each batch padded to its longest
example, torch's threads = this machine's cores, as TensorFlow's), it runs on the same examples
too. Examples/s = training examples (SQuAD: features) / process seconds; for SQuAD the training
loop's own seconds (training_state.json) are given too. Rounds take turns, the figure is the
median; the load (uptime) before and after is recorded. Merges into benchmarks/results.json under
"packed_training".
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

from benchmarks import common
from bert_tf.io import files as io_files

VOCABS = common.DATA / "vocabs"
TASKS = dict(
    nsmc=dict(source=common.DATA / "nsmc_like" / "ratings_train.txt", header=True,
              file="ratings_train.txt", vocab=VOCABS / "kcbert-base-vocab.txt", cased=True),
    cola=dict(source=common.DATA / "cola" / "in_domain_train.tsv", header=False,
              file="in_domain_train.tsv", vocab=VOCABS / "bert-base-uncased-vocab.txt",
              cased=False))
SQUAD_DEV = common.DATA / "squad" / "dev-v1.1.json"
HF_SCRIPT = common.ROOT / "benchmarks" / "hf_dynamic_padding.py"
BATCH = 32


def uptime() -> str:
  return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def mini_config(vocab: pathlib.Path, directory: pathlib.Path) -> pathlib.Path:
  """configs/bert_mini.json with the vocab's size."""
  config = io_files.read_json(str(common.ROOT / "configs" / "bert_mini.json"))
  with open(vocab, encoding="utf-8") as f:
    config["vocab_size"] = sum(1 for _ in f)
  path = directory / f"bert_mini_{vocab.stem}.json"
  path.write_text(json.dumps(config), encoding="utf-8")
  return path


def classifier_data(name: str, examples: int, directory: pathlib.Path) -> pathlib.Path:
  """A data_dir with the first `examples` training rows of the task's file."""
  task = TASKS[name]
  data_dir = directory / name
  data_dir.mkdir()
  with open(task["source"], encoding="utf-8") as f:
    lines = f.read().splitlines()
  kept = lines[:examples + 1] if task["header"] else lines[:examples]
  (data_dir / task["file"]).write_text("\n".join(kept) + "\n", encoding="utf-8")
  return data_dir


def squad_data(questions: int, directory: pathlib.Path) -> pathlib.Path:
  """The first paragraphs of dev-v1.1 holding at least `questions` questions, each with its first
  answer (training takes one)."""
  dataset = io_files.read_json(str(SQUAD_DEV))
  article = dict(dataset["data"][0], paragraphs=[])
  count = 0
  for paragraph in (p for a in dataset["data"] for p in a["paragraphs"]):
    if count >= questions:
      break
    for qa in paragraph["qas"]:
      qa["answers"] = qa["answers"][:1]
    article["paragraphs"].append(paragraph)
    count += len(paragraph["qas"])
  path = directory / "squad_train.json"
  path.write_text(json.dumps(dict(dataset, data=[article])), encoding="utf-8")
  return path


def timed(command: List[str]) -> float:
  """Seconds `command` takes from start to exit (it must succeed)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  started = time.perf_counter()
  result = subprocess.run(command, cwd=common.ROOT, env=env, capture_output=True, text=True,
                          check=False)
  seconds = time.perf_counter() - started
  if result.returncode:
    raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
  return seconds


def training_seconds(output_dir: pathlib.Path) -> float:
  """The training loop's seconds, from the run's training_state.json."""
  state = io_files.read_json(str(output_dir / "training_state.json"))
  return sum(row["training_time"] for row in state["history"] if row.get("training_time"))


def packed_share(output_dir: pathlib.Path, seq_length: int) -> Dict[str, Any]:
  """Useful-token share of the training rows before and after packing (packed run's metadata)."""
  meta = io_files.read_json(str(output_dir / "train_packed.tf_record.json"))
  return dict(examples_per_row=round(meta["num_examples"] / meta["num_rows"], 2),
              useful_token_share_padded=round(
                  meta["num_tokens"] / (meta["num_examples"] * seq_length), 3),
              useful_token_share_packed=round(meta["num_tokens"] / (meta["num_rows"] * seq_length),
                                              3))


def run_task(name: str, args: argparse.Namespace, directory: pathlib.Path) -> Dict[str, Any]:
  """Median seconds per side over the rounds, examples/s and the ratios for one task."""
  squad = name == "squad"
  vocab = VOCABS / "bert-base-uncased-vocab.txt" if squad else TASKS[name]["vocab"]
  config = mini_config(vocab, directory)
  seq_length = 384 if squad else 128
  common_flags = [f"--vocab_file={vocab}", f"--bert_config_file={config}", "--do_train",
                  f"--max_seq_length={seq_length}", f"--train_batch_size={BATCH}",
                  "--num_train_epochs=1", "--learning_rate=5e-5",
                  "--save_checkpoints_steps=100000", "--iterations_per_loop=1000"]
  if squad:
    train_file = squad_data(args.squad_questions, directory)
    script = [str(common.ROOT / "run_squad.py"), f"--train_file={train_file}",
              "--doc_stride=128", *common_flags]
  else:
    data_dir = classifier_data(name, args.examples, directory)
    script = [str(common.ROOT / "run_classifier.py"), f"--task_name={name}",
              f"--data_dir={data_dir}", "--eval_every_epoch=false", *common_flags]
  sides = {"packed": ["--pack_sequences=true"], "padded (google-research)":
           ["--pack_sequences=false"]}
  seconds: Dict[str, List[float]] = {side: [] for side in sides}
  loop_seconds: Dict[str, List[float]] = {side: [] for side in sides}
  hf_results: List[Dict[str, Any]] = []
  with_hf = not squad and HF_SCRIPT.exists()
  for round_index in range(args.repeats):
    for side, flags in sides.items():
      output_dir = directory / f"{name}-{side.split()[0]}-{round_index}"
      seconds[side].append(timed([sys.executable, *script, *flags, f"--output_dir={output_dir}"]))
      loop_seconds[side].append(training_seconds(output_dir))
    if with_hf:
      command = [sys.executable, str(HF_SCRIPT), f"--task={name}", f"--data_dir={data_dir}",
                 f"--vocab_file={vocab}", f"--num_train_examples={args.examples}",
                 f"--max_seq_length={seq_length}", f"--train_batch_size={BATCH}",
                 f"--threads={len(os.sched_getaffinity(0))}",
                 *(["--cased"] if TASKS[name]["cased"] else [])]
      started = time.perf_counter()
      result = subprocess.run(command, cwd=common.ROOT, capture_output=True, text=True,
                              check=True)
      hf_results.append(dict(json.loads(result.stdout.strip().splitlines()[-1]),
                             process_seconds=time.perf_counter() - started))
  share = packed_share(directory / f"{name}-packed-0", seq_length)
  steps = {side: io_files.read_json(str(directory / f"{name}-{side.split()[0]}-0" /
                                         "training_state.json"))["history"][-1]["step"]
           for side in sides}
  trained = (io_files.read_json(str(directory / f"{name}-packed-0" / "train_meta.json"))[
      "num_features"] if squad else args.examples)
  median = {side: statistics.median(values) for side, values in seconds.items()}
  loop = {side: statistics.median(values) for side, values in loop_seconds.items()}
  entry = dict(training_examples=trained, steps=steps, seq_length=seq_length,
               **share, process_seconds={s: [round(v, 1) for v in vs] for s, vs in seconds.items()},
               examples_per_sec={side: round(trained / value, 1) for side, value in median.items()},
               training_loop_seconds={side: round(value, 1) for side, value in loop.items()},
               packed_over_padded=round(median["padded (google-research)"] / median["packed"], 2),
               packed_over_padded_training_loop=round(
                   loop["padded (google-research)"] / loop["packed"], 2))
  if hf_results:
    hf_seconds = statistics.median(r["process_seconds"] for r in hf_results)
    entry["examples_per_sec"]["transformers + torch, per-batch padding"] = round(
        trained / hf_seconds, 1)
    entry["process_seconds"]["transformers + torch, per-batch padding"] = [
        round(r["process_seconds"], 1) for r in hf_results]
    entry["hf_useful_token_share"] = hf_results[0]["useful_token_share"]
    entry["hf_threads"] = hf_results[0]["threads"]
    entry["packed_over_hf"] = round(hf_seconds / median["packed"], 2)
  return entry


def main(argv=None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--examples", type=int, default=4000)
  parser.add_argument("--squad_questions", type=int, default=1500)
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--tasks", default="nsmc,cola,squad")
  args = parser.parse_args(argv)
  names = args.tasks.split(",")
  missing = common.data_missing([str(TASKS[n]["source"]) for n in names if n in TASKS] +
                                ([str(SQUAD_DEV)] if "squad" in names else []))
  if missing:
    print(f"Skipped: {missing}")
    return {}
  entry: Dict[str, Any] = dict(machine=common.machine_info(), uptime_before=uptime(),
                               command="python -m benchmarks.packed_training " +
                               " ".join(argv if argv is not None else sys.argv[1:]))
  with tempfile.TemporaryDirectory() as directory:
    for name in names:
      entry[name] = run_task(name, args, pathlib.Path(directory))
      entry["uptime_after"] = uptime()
      common.merge_results("packed_training", entry)  # after each task: a long run keeps some
      print(name, json.dumps(entry[name]), flush=True)
  return entry


if __name__ == "__main__":
  main()
