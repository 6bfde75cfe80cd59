"""The whole benchmark suite in one run: `python -m benchmarks [--quick] [--only NAMES]`.

Runs each figure as its own process (`python -m benchmarks.NAME`, so TensorFlow's thread pools,
precision policy and memory start fresh for each), prints one table (figure, ours, reference,
ratio, target, met?) and records it, with the machine and the command, in
benchmarks/results.json under "summary" ("summary_partial" with --only); each figure's details
are under its own name. A figure
whose data (../shared/data) or hardware (a GPU) is missing is skipped with the reason in the
table. --quick runs every figure on a small share of its data, for a smoke test: its ratios are
not the benchmark's, and it writes to benchmarks/results_quick.json instead (QUICK_RESULTS).
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import common  # noqa: E402  (after the log-level variable)

SQUAD_DEV = common.DATA / "squad" / "dev-v1.1.json"
VOCABS = common.DATA / "vocabs"
CORPUS = common.DATA / "corpus_ko"
Row = Dict[str, str]
# Where --quick runs write, so that their figures never replace the real ones: inside the
# repository (git ignores it), like everything the suite keeps.
QUICK_RESULTS = str(common.ROOT / "benchmarks" / "results_quick.json")


def _x(value: float) -> str:
  return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def squad_features_rows(entry: Dict[str, Any], figure: str = "1 SQuAD features, dev-v1.1",
                        target: float = 10.0) -> List[Row]:
  seconds = entry["median_seconds"]
  return [dict(figure=figure, ours=f"{seconds[entry['fastest']]:.2f} s",
               reference=f"{seconds['tf-models squad_lib']:.2f} s (tf-models squad_lib)",
               ratio=entry["speedup"], target=target)]


def korquad_features_rows(entry: Dict[str, Any]) -> List[Row]:
  return squad_features_rows(
      entry, f"1 SQuAD-format features, Korean (KorQuAD-like, {entry['examples']} questions)",
      target=15.0)


def tokenization_rows(entry: Dict[str, Any]) -> List[Row]:
  rows = []
  for corpus in (key for key in entry if key.startswith(("english", "korean"))):
    figures, language = entry[corpus], corpus.split()[0]
    speed = figures["tokens_per_sec"]
    hf = max((name for name in speed if name.startswith("HF ")), key=speed.get)
    exact = speed["bert_tf FullTokenizer (exact)"]
    in_graph = speed["bert_tf InGraphTokenizer (tf.text)"]
    rows += [
        dict(figure=f"2 tokens/s {language}, exact vs google-research", ours=f"{exact:,}",
             reference=f"{speed['tf-models tokenization (google-research)']:,} (tf-models)",
             ratio=figures["exact_vs_google_research"],
             target=8.0 if language == "korean" else 10.0),
        dict(figure=f"2 tokens/s {language}, exact vs Hugging Face", ours=f"{exact:,}",
             reference=f"{speed[hf]:,} ({hf.removeprefix('HF ')})",
             ratio=figures["exact_vs_best_hf"], target=2.0 if language == "korean" else 1.0),
        dict(figure=f"2 tokens/s {language}, in-graph vs Hugging Face", ours=f"{in_graph:,}",
             reference=f"{speed[hf]:,} ({hf.removeprefix('HF ')})",
             ratio=figures["in_graph_vs_best_hf"],
             target=1.0)]
  return rows


def pretraining_data_rows(entry: Dict[str, Any]) -> List[Row]:
  theirs = entry["tf-models"]
  ours_runs = sorted((key for key in entry if key.startswith("bert_tf, ")),
                     key=lambda key: int(key.split()[1]))
  ours = entry[ours_runs[0]]  # the fewest workers (1): the target's figure
  rows = [dict(figure=f"3 pretraining data end to end, corpus_ko x{entry['copies_of_corpus_ko']}"
                      f" ({ours_runs[0].split(', ')[1]})",
               ours=f"{ours['instances_per_sec']:,} inst/s, {ours['median_seconds']} s",
               reference=f"{theirs['instances_per_sec']:,} inst/s, {theirs['median_seconds']} s "
                         "(tf-models)",
               ratio=ours["instances_per_sec"] / theirs["instances_per_sec"], target=10.0)]
  for key in ours_runs[1:]:
    rows.append(dict(figure=f"3 pretraining data scaling, {key.split(', ')[1]} vs "
                            f"{ours_runs[0].split(', ')[1]}",
                     ours=f"{entry[key]['instances_per_sec']:,} inst/s",
                     reference=f"{ours['instances_per_sec']:,} inst/s",
                     ratio=f"{entry[key]['instances_per_sec'] / ours['instances_per_sec']:.2f}x "
                           f"on {entry['machine']['cores']} cores", target=None))
  return rows


def train_step_rows(entry: Dict[str, Any]) -> List[Row]:
  """One row per task and torch variant; the ratio is the worst round's (the target holds in
  every round or not at all)."""
  rows = []
  for task, figures in entry["tasks"].items():
    ours = figures["bert_tf"]
    for side, ratio_key, note in (("torch", "ratio", ""),
                                  ("torch_masked_positions", "ratio_vs_torch_masked_positions",
                                   ", torch's MLM head on masked positions only")):
      if side not in figures:
        continue
      torch = figures[side]
      rows.append(dict(
          figure=f"4 train step, BERT-mini {task} (seq {figures['seq_length']}, batch "
                 f"{figures['batch_size']}{note}), worst round",
          ours=f"{ours['examples_per_sec']['median']:.1f} ex/s, MFU {ours['mfu']:.0%}",
          reference=f"{torch['examples_per_sec']['median']:.1f} ex/s, MFU {torch['mfu']:.0%} "
                    "(torch)",
          ratio=figures[ratio_key]["min"], target=1.1))
  return rows


def input_pipeline_rows(entry: Dict[str, Any]) -> List[Row]:
  slowest = min(entry["pipelines"].values(), key=lambda f: f["records_per_sec"])
  return [dict(figure="5 input pipeline vs train step (seq 128, batch 32)",
               ours=f"{slowest['records_per_sec']:,} records/s",
               reference=f"{entry['train_step']['examples_per_sec']} ex/s (BERT-mini step)",
               ratio=entry["ratio"], target=5.0)]


def inference_rows(entry: Dict[str, Any]) -> List[Row]:
  ms = entry["milliseconds"]
  python_path = ms["Python path (run_squad's)"]
  return [dict(figure=f"6 serving latency, batch 1, seq 384 ({entry['config']})",
               ours=f"p50 {ms['SavedModel signature']['p50']} ms (SavedModel)",
               reference=f"p50 {ms['tf.function, no SavedModel']['p50']} ms (tf.function)",
               ratio=entry["ratio_p50"], target=None),
          dict(figure=f"6 raw text to answer, batch 1 ({entry['config']})",
               ours=f"p50 {ms['SavedModel from raw text']['p50']} ms (SavedModel)",
               reference=f"p50 {python_path['p50']} ms (Python path)",
               ratio=entry["raw_text_ratio_p50"], target=None)]


def gpu_squad_rows(entry: Dict[str, Any]) -> List[Row]:
  mfu = f", MFU {entry['mfu']:.0%}" if entry["mfu"] is not None else ""
  return [dict(figure=f"GPU BERT-Base SQuAD step ({entry['gpus']} x {entry['gpu']})",
               ours=f"{entry['examples_per_sec']} ex/s{mfu}", reference="GPU peak",
               ratio=entry["mfu"], target=None)]


def gradient_accumulation_rows(entry: Dict[str, Any]) -> List[Row]:
  rows = []
  for task, figures in entry["tasks"].items():
    full, micro = figures["runs"].values()
    k = figures["accumulation"]
    rows.append(dict(
        figure=f"7 step memory, BERT-mini {task} (seq {figures['seq_length']}), batch "
               f"{figures['batch_size']} as {k} x {figures['batch_size'] // k} micro-batches",
        ours=f"{micro['step_peak_mib']} MiB, {micro['seconds_per_step'] * 1000:.0f} ms/step",
        reference=f"{full['step_peak_mib']} MiB, {full['seconds_per_step'] * 1000:.0f} ms/step "
                  "(one batch)",
        ratio=f"memory {figures['memory_ratio']}x, time {figures['time_ratio']}x", target=None))
  return rows


def resume_position_rows(entry: Dict[str, Any]) -> List[Row]:
  return [dict(figure=f"8 resume, first batch, {name} ({entry['shards']} shards)",
               ours=f"{figures['after_seconds']} s",
               reference=f"{figures['before_seconds']} s (reading every consumed record)",
               ratio=figures["speedup"], target=None)
          for name, figures in entry["figures"].items()]


def pretraining_scale_rows(entry: Dict[str, Any]) -> List[Row]:
  scales = list(entry["scales"])
  small, large = entry["scales"][scales[0]], entry["scales"][scales[-1]]
  rows = []
  for stage, speed, unit in (("clean_text", "lines_per_sec", "lines/s"),
                             ("create_pretraining_data", "instances_per_sec", "inst/s")):
    ratios = entry["ratio_largest_vs_smallest"][stage]
    rows.append(dict(
        figure=f"9 {stage} at scale, corpus_ko recombined {scales[-1]} vs {scales[0]}",
        ours=f"{large[stage][speed]:,} {unit}, {large[stage]['peak_rss_mib']} MiB",
        reference=f"{small[stage][speed]:,} {unit}, {small[stage]['peak_rss_mib']} MiB "
                  f"({scales[0]})",
        ratio=f"speed {ratios['speed']}x ({ratios['speed_per_cpu_second']}x per CPU s), "
              f"memory {ratios['peak_rss']}x", target=None))
  return rows


def useful_tokens_rows(entry: Dict[str, Any]) -> List[Row]:
  """Fine-tuning sets: the packed training rows' share (target 0.9), buckets and padding beside;
  pretraining instances: google-research's padded share."""
  rows = []
  for name in ("nsmc", "cola", "squad", "korquad"):
    if name in entry:
      figures = entry[name]
      rows.append(dict(figure=f"10 useful-token share, {name} (seq {figures['seq_length']})",
                       ours=f"packed {figures['packed']}, buckets {figures['buckets']}",
                       reference=f"padded {figures['padded']}", ratio=figures["packed"],
                       target=0.9))
  for mode, figures in entry.get("pretraining", {}).items():
    rows.append(dict(figure=f"10 useful-token share, pretraining instances ({mode})",
                     ours=f"padded {figures['padded']}", reference="google-research's instances",
                     ratio=figures["padded"], target=0.9))
  return rows


def bucketed_prediction_rows(entry: Dict[str, Any]) -> List[Row]:
  seconds = entry["median_seconds"]
  return [dict(figure=f"11 SQuAD dev prediction, length buckets vs padded ({entry['windows']} "
                      f"windows, {entry['config']})",
               ours=f"{seconds['bucketed']} s", reference=f"{seconds['padded']} s (padded)",
               ratio=entry["speedup"], target=1.8)]


def packed_training_rows(entry: Dict[str, Any]) -> List[Row]:
  rows = []
  for name, target in (("nsmc", 4.0), ("cola", 4.0), ("squad", 1.8)):
    if name not in entry:
      continue
    task = entry[name]
    speed = task["examples_per_sec"]
    label = {"nsmc": "NSMC-like", "cola": "CoLA", "squad": "SQuAD"}[name]
    rows.append(dict(figure=f"7 packed fine-tuning end to end, {label}, seq {task['seq_length']}",
                     ours=f"{speed['packed']} ex/s (packed)",
                     reference=f"{speed['padded (google-research)']} ex/s (padded)",
                     ratio=task["packed_over_padded"], target=target))
    if "packed_over_hf" in task:
      rows.append(dict(figure=f"7 packed fine-tuning end to end, {label}, vs torch",
                       ours=f"{speed['packed']} ex/s (packed)",
                       reference=f"{speed['transformers + torch, per-batch padding']} ex/s "
                       "(torch, per-batch padding)", ratio=task["packed_over_hf"], target=2.0))
  return rows


def _has_gpu() -> bool:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return bool(tf.config.list_physical_devices("GPU"))


# name -> (its arguments, its --quick arguments, the data it needs, its table rows from its
# results entry). Figure 4 runs 3 rounds instead of its default 5, to keep the suite near 15 min.
FIGURES: Dict[str, Any] = dict(
    squad_features=([], ["--limit", "500", "--repeats", "1"],
                    [SQUAD_DEV, VOCABS / "bert-base-uncased-vocab.txt"], squad_features_rows),
    korquad_features=([], ["--questions", "500", "--repeats", "1"],
                      [CORPUS, VOCABS / "kcbert-base-vocab.txt"], korquad_features_rows),
    tokenization=([], ["--max_texts", "300", "--repeats", "1"],
                  [SQUAD_DEV, CORPUS, VOCABS / "bert-base-uncased-vocab.txt",
                   VOCABS / "kcbert-base-vocab.txt"], tokenization_rows),
    pretraining_data=([], ["--dupe_factor", "1", "--copies", "1", "--repeats", "1"],
                      [CORPUS, VOCABS / "kcbert-base-vocab.txt"], pretraining_data_rows),
    train_step=(["--repeats", "3"], ["--repeats", "1", "--steps", "1", "--tasks", "classifier"], [],
                train_step_rows),
    input_pipeline=([], ["--records", "2048", "--repeats", "1", "--train_steps", "2"], [],
                    input_pipeline_rows),
    inference=([], ["--config", str(common.ROOT / "configs" / "bert_mini.json"), "--calls", "5"],
               [SQUAD_DEV, VOCABS / "bert-base-uncased-vocab.txt"], inference_rows),
    gpu_squad=([], ["--steps", "5"], [], gpu_squad_rows),
    gradient_accumulation=([], ["--steps", "1", "--repeats", "1"], [],
                           gradient_accumulation_rows),
    resume_position=([], ["--shards", "8", "--records_per_shard", "300", "--repeats", "1"], [],
                     resume_position_rows),
    packed_training=(["--examples", "3000", "--squad_questions", "1000"],
                     ["--examples", "300", "--squad_questions", "100", "--tasks", "nsmc,squad"],
                     [SQUAD_DEV, VOCABS / "kcbert-base-vocab.txt",
                      common.DATA / "nsmc_like", common.DATA / "cola"], packed_training_rows),
    # After resume_position: its entry holds that figure too.
    pretraining_scale=([], ["--scales", "0.05,0.1"], [CORPUS, VOCABS / "kcbert-base-vocab.txt"],
                       pretraining_scale_rows),
    useful_tokens=([], ["--sets", "cola,squad"],
                   [SQUAD_DEV, CORPUS, common.DATA / "nsmc_like", common.DATA / "cola"],
                   useful_tokens_rows),
    bucketed_prediction=([], ["--articles", "1"],
                         [SQUAD_DEV, VOCABS / "bert-base-uncased-vocab.txt"],
                         bucketed_prediction_rows),
)


def skip_reason(name: str, needed: Sequence[Any]) -> Optional[str]:
  """Why figure `name` cannot run here, or None."""
  if importlib.util.find_spec(f"benchmarks.{name}") is None:
    return f"benchmarks/{name}.py is not there"
  if name == "gpu_squad" and not _has_gpu():
    return "no GPU on this machine"
  return common.data_missing([str(path) for path in needed])


def run_figure(name: str, arguments: List[str], results: str) -> Optional[str]:
  """Runs benchmarks.NAME in a fresh process, writing to `results`; an error line if it fails."""
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", common.RESULTS_VARIABLE: results}
  result = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *arguments],
                          cwd=common.ROOT, env=env, check=False)
  return f"exited with status {result.returncode}" if result.returncode else None


def format_table(rows: List[Row]) -> str:
  """The rows as a Markdown table (what docs/benchmarks.md carries)."""
  lines = ["| figure | ours | reference | ratio | target | met? |", "|---|---|---|---|---|---|"]
  for row in rows:
    lines.append(f"| {row['figure']} | {row['ours']} | {row['reference']} | {row['ratio']} | "
                 f"{row['target']} | {row['met']} |")
  return "\n".join(lines)


def table_row(row: Dict[str, Any]) -> Row:
  """Formats the ratio and target of one figure and says whether the target is met."""
  ratio, target = row["ratio"], row["target"]
  met = "n/a" if target is None else ("yes" if ratio >= target else "no")
  return dict(figure=row["figure"], ours=row["ours"], reference=row["reference"],
              ratio=_x(ratio) if isinstance(ratio, (int, float)) and target else
              (f"{ratio}" if ratio is not None else "—"),
              target=f">= {target:g}x" if target else "—", met=met)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="small data: a smoke run")
  parser.add_argument("--only", help=f"comma-separated, from {', '.join(FIGURES)}")
  args = parser.parse_args(argv)
  names = [n.strip() for n in args.only.split(",")] if args.only else list(FIGURES)
  unknown = sorted(set(names) - set(FIGURES))
  if unknown:
    parser.error(f"--only: unknown figure(s) {', '.join(unknown)}; expected some of "
                 f"{', '.join(FIGURES)}.")
  results = QUICK_RESULTS if args.quick else str(common.RESULTS)
  rows: List[Row] = []
  seconds: Dict[str, float] = {}
  for name in names:
    arguments, quick_arguments, needed, make_rows = FIGURES[name]
    reason = skip_reason(name, needed)
    if reason is None:
      print(f"\n=== {name} ===", flush=True)
      before = common.read_results(results).get(name)
      started = time.time()
      reason = run_figure(name, quick_arguments if args.quick else arguments, results)
      seconds[name] = round(time.time() - started)
      entry = common.read_results(results).get(name)
      if reason is None and (entry is None or entry == before):
        reason = "wrote no new results"
      if reason is None:
        rows += [table_row(row) for row in make_rows(entry)]
        continue
      reason = f"failed: {reason}"
    rows.append(dict(figure=name, ours=f"skipped: {reason}", reference="", ratio="—",
                     target="—", met="n/a"))
  table = format_table(rows)
  command = " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])])
  summary = dict(command=command, quick=args.quick, machine=common.machine_info(),
                 seconds_per_figure=seconds, rows=rows, table=table)
  common.merge_results("summary_partial" if args.only else "summary", summary, results)
  print(f"\n{command} on {summary['machine']['cpu']}, {summary['machine']['cores']} cores, "
        f"{summary['machine']['date']}:\n{table}\nResults written to {results}"
        + (" (a smoke run: not benchmarks/results.json)." if args.quick else "."))
  return summary


if __name__ == "__main__":
  main()
