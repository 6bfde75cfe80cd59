"""run_pretraining.py end to end on a tiny model, and google-research's loss and metrics."""

import csv
import json
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import tokenization
from bert_tf.corpus import instances
from bert_tf.corpus import create_pretraining_data as cpd
from bert_tf.tasks import pretraining as pretraining_task
from bert_tf.training import best_checkpoint
from tests import processes

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
SEQ, PREDICTIONS = 32, 5


def test_loss_is_google_weighted_mlm_plus_nsp():
  rng = np.random.default_rng(0)
  features = {"masked_lm_ids": tf.constant(rng.integers(0, 7, (3, 4)), tf.int32),
              "masked_lm_weights": tf.constant([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]],
                                                tf.float32),
              "next_sentence_labels": tf.constant([[0], [1], [1]], tf.int32)}
  outputs = {"mlm_logits": tf.constant(rng.normal(size=(3, 4, 7)), tf.float32),
             "nsp_logits": tf.constant(rng.normal(size=(3, 2)), tf.float32)}
  log_probs = tf.nn.log_softmax(outputs["mlm_logits"]).numpy()
  ids, weights = features["masked_lm_ids"].numpy(), features["masked_lm_weights"].numpy()
  token_loss = -np.take_along_axis(log_probs, ids[..., None], -1)[..., 0]
  mlm = (token_loss * weights).sum() / (weights.sum() + 1e-5)
  nsp_log_probs = tf.nn.log_softmax(outputs["nsp_logits"]).numpy()
  nsp = -nsp_log_probs[np.arange(3), [0, 1, 1]].mean()
  per_example = pretraining_task.pretraining_loss(features, outputs).numpy()
  np.testing.assert_allclose(per_example.mean(), mlm + nsp, rtol=1e-5)


def write_data(tmp_path) -> str:
  """Pretraining records from learnable text: words of the sample vocab in fixed runs."""
  vocab = [t for t in tokenization.load_vocab(str(SAMPLE / "vocab.txt"))
           if t.isalpha()][:40]
  rng = random.Random(0)
  docs = []
  for _ in range(30):
    lines = []
    for _ in range(6):
      start = rng.randrange(len(vocab) - 8)
      lines.append(" ".join(vocab[start:start + 8]))
    docs.append("\n".join(lines))
  (tmp_path / "text.txt").write_text("\n\n".join(docs) + "\n")
  config = instances.DataConfig(input_file=str(tmp_path / "text.txt"),
                                output_file=str(tmp_path / "data" / "train"),
                                vocab_file=str(SAMPLE / "vocab.txt"), do_lower_case=False,
                                max_seq_length=SEQ, max_predictions_per_seq=PREDICTIONS,
                                dupe_factor=4)
  return cpd.create_pretraining_data(config)["file_pattern"]


def _run(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, str(ROOT / "run_pretraining.py"), *args], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300)


def _start(log, *args):
  """Starts run_pretraining.py in the background, its log in file `log`."""
  with open(log, "w", encoding="utf-8") as stderr:
    return subprocess.Popen([sys.executable, str(ROOT / "run_pretraining.py"), *args], cwd=ROOT,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                            stdout=subprocess.DEVNULL, stderr=stderr)


def test_pretrains_evaluates_keeps_best_and_exports(tmp_path):
  pattern = write_data(tmp_path)
  out = tmp_path / "out"
  common = [f"--input_file={pattern}", f"--output_dir={out}",
            f"--bert_config_file={SAMPLE / 'bert_config.json'}", f"--max_seq_length={SEQ}",
            f"--max_predictions_per_seq={PREDICTIONS}"]
  result = _run(*common, "--do_train=True", "--do_eval=True", "--keep_best_by_loss=True",
                f"--vocab_file={SAMPLE / 'vocab.txt'}", "--train_batch_size=16",
                "--eval_batch_size=16", "--learning_rate=2e-3", "--num_train_steps=60",
                "--num_warmup_steps=5", "--save_checkpoints_steps=30", "--iterations_per_loop=10",
                "--max_eval_steps=5")
  assert result.returncode == 0, result.stderr[-3000:]
  lines = (out / "eval_results.txt").read_text().splitlines()
  metrics = {k: float(v) for k, v in (line.split(" = ") for line in lines)}
  assert set(metrics) == {*pretraining_task.METRICS, "loss", "global_step"}
  # Untrained, the masked-LM loss is about ln(378) = 5.9; the text uses 40 words (ln 40 = 3.7).
  assert metrics["masked_lm_loss"] < 4.2 and metrics["next_sentence_loss"] < 0.75
  # The final evaluation is of the best model, the one exported.
  best = json.loads((out / "best" / "best.json").read_text())
  assert best["step"] in (30, 60) and metrics["global_step"] == best["step"]
  assert best["value"] == pytest.approx(metrics["loss"], rel=1e-5)
  assert best["checkpoint"] == f"best/ckpt-{best['step']}"  # relative: a copy means the same
  assert (out / "export" / "tf1" / "bert_model.ckpt.index").exists()
  assert (out / "export" / "tf2" / "checkpoint").exists()
  assert (out / "export" / "hf" / "model.safetensors").exists()
  # The output_dir guard knows the vocab by its bytes and the lowercasing, like the other tasks.
  recorded = json.loads((out / "run_flags.json").read_text())
  assert recorded["vocab_file"].startswith("sha256:") and recorded["do_lower_case"] is False
  # Run again: resumes at step 60, trains nothing, evaluates the same model.
  again = _run(*common, "--do_eval=True", "--eval_batch_size=16", "--max_eval_steps=5")
  assert again.returncode == 0, again.stderr[-3000:]


def _two_worker_args(pattern: str, out: pathlib.Path, *more: str):
  """run_pretraining.py's arguments for the two-worker tests: tiny, a checkpoint every 10 steps."""
  return [str(ROOT / "run_pretraining.py"), f"--input_file={pattern}", f"--output_dir={out}",
          f"--bert_config_file={SAMPLE / 'bert_config.json'}", f"--max_seq_length={SEQ}",
          f"--max_predictions_per_seq={PREDICTIONS}", "--do_train=True",
          "--train_batch_size=16", "--learning_rate=2e-3", "--num_warmup_steps=3",
          "--save_checkpoints_steps=10", "--distribution_strategy=multi_worker_mirrored", *more]


def test_two_workers_keep_one_best_checkpoint_through_the_chiefs_save(tmp_path):
  """run_pretraining.py under MultiWorkerMirroredStrategy, --keep_best_by_loss --do_eval.

  Both workers take part in every save of a best model (its collectives need them all); only
  the chief's lands in best/: one complete checkpoint, the one best.json names, with the weights
  of the training checkpoint of that step, and no worker's scratch copy left behind.
  """
  out = tmp_path / "out"
  results = processes.run_workers(
      _two_worker_args(write_data(tmp_path), out, "--do_eval=True", "--keep_best_by_loss=True",
                       "--eval_batch_size=16", "--num_train_steps=30", "--max_eval_steps=3",
                       "--iterations_per_loop=10"), cwd=ROOT)
  for returncode, _, stderr in results:
    assert returncode == 0, stderr[-3000:]
  outputs = [(stdout, stderr) for _, stdout, stderr in results]
  (chief_out, chief_log), (other_out, other_log) = outputs
  # Scored at steps 10, 20 and 30 (one row each in the chief's history); the lowest loss kept.
  with open(out / "training_stats.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert [int(row["step"]) for row in rows] == [10, 20, 30]
  losses = {int(row["step"]): float(row["val_loss"]) for row in rows}
  best = best_checkpoint.read_best(str(out))
  assert best["metric"] == "loss" and best["step"] == min(losses, key=losses.get)
  assert best["value"] == pytest.approx(losses[best["step"]], rel=1e-4)
  assert best["checkpoint"] == str(out / "best" / f"ckpt-{best['step']}")
  assert sorted(p.name for p in (out / "best").iterdir()) == [  # no --vocab_file, no vocab.txt
      "bert_config.json", "best.json", f"ckpt-{best['step']}.data-00000-of-00001",
      f"ckpt-{best['step']}.index"]
  # The kept model is the one trained to that step (the training checkpoint of the same step).
  processes.assert_same_weights(str(out / f"ckpt-{best['step']}"), best["checkpoint"])
  # The final evaluation, of the best model, written once, by the chief.
  lines = (out / "eval_results.txt").read_text().splitlines()
  metrics = {k: float(v) for k, v in (line.split(" = ") for line in lines)}
  assert metrics["global_step"] == best["step"]
  assert metrics["loss"] == pytest.approx(best["value"], rel=1e-4)
  assert "Evaluated in" in chief_log and "Evaluated in" not in other_log
  assert "Eval results:" in chief_out and not other_out
  assert "Saved checkpoint" in chief_log and "Saved checkpoint" not in other_log
  assert not list(out.glob("**/.worker_tmp_*")) and not list(out.glob("**/.*.tmp-*"))


def _steps_logged(log: str) -> list:
  return [int(step) for step in re.findall(r"trainer.py:\d+\] step (\d+)/", log)]


def test_workers_whose_loops_would_end_at_different_times_run_the_same_loops(tmp_path):
  """A loop ends after about max_seconds_per_loop, by each worker's clock; workers whose clocks
  disagree (one busier: CI once hung here for 600 s) must still end every loop at the same
  step, or each waits for the other's collectives forever. Here one worker's loops would end
  after every step and the other's never by time."""
  out = tmp_path / "out"
  results = processes.run_workers(
      _two_worker_args(write_data(tmp_path), out, "--num_train_steps=30",
                       "--iterations_per_loop=10"), cwd=ROOT, timeout=300,
      worker_args=[["--max_seconds_per_loop=1e-6"], ["--max_seconds_per_loop=1e6"]])
  for returncode, _, stderr in results:
    assert returncode == 0, stderr[-3000:]
  chief_steps, other_steps = (_steps_logged(stderr) for _, _, stderr in results)
  assert chief_steps == other_steps and chief_steps[-1] == 30
  # The busy clock decided: loops of one or two steps (the vote is taken as a step starts),
  # where the other worker alone would have run 1, then 9, 10 and 10.
  assert len(chief_steps) > 10, chief_steps
  assert (out / "ckpt-30.index").exists()


def test_sigterm_to_one_worker_stops_every_worker_at_the_same_saved_step(tmp_path):
  """Preemption reaches one VM of a multi-worker job first: every worker must stop at the
  same step (a worker that stopped alone would leave the others waiting in a collective),
  save that step once, through the chief, and exit with status 1."""
  out = tmp_path / "out"
  sent = []

  def sigterm_to_the_second_worker(workers):
    deadline = time.time() + 300
    while not (out / "ckpt-10.index").exists():
      assert time.time() < deadline and all(w.poll() is None for w in workers)
      time.sleep(0.05)
    workers[1].send_signal(signal.SIGTERM)
    sent.append(time.time())

  results = processes.run_workers(
      _two_worker_args(write_data(tmp_path), out, "--num_train_steps=100000",
                       "--iterations_per_loop=1000", "--max_seconds_per_loop=1e6"),
      cwd=ROOT, timeout=300, interrupt=sigterm_to_the_second_worker)
  print(f"SIGTERM to one of two workers, to both exited: {time.time() - sent[0]:.1f} s")
  stops = []
  for returncode, _, stderr in results:
    stopped = re.search(r"Stopped by (.+) at step (\d+) after saving (\S+);", stderr)
    assert returncode == 1 and stopped, stderr[-3000:]
    stops.append(stopped.groups())
  (chief_cause, chief_step, chief_path), (other_cause, other_step, _) = stops
  assert chief_step == other_step and int(chief_step) < 100000
  assert other_cause == "SIGTERM" and chief_cause == "a signal to another worker"
  assert chief_path == str(out / f"ckpt-{chief_step}")
  assert tf.train.latest_checkpoint(str(out)) == chief_path
  assert not list(out.glob("**/.worker_tmp_*"))


def test_killed_and_preempted_run_resumes_to_the_same_weights(tmp_path):
  """Interrupted three times, a run keeping the best by loss ends like an uninterrupted one."""
  pattern = write_data(tmp_path)
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  # Dropout is on in the sample config, so its random state must resume too.
  args = [f"--input_file={pattern}", f"--bert_config_file={SAMPLE / 'bert_config.json'}",
          f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDICTIONS}",
          "--do_train=True", "--keep_best_by_loss=True", "--train_batch_size=16",
          "--learning_rate=2e-3", "--num_train_steps=60", "--num_warmup_steps=5",
          "--save_checkpoints_steps=5", "--iterations_per_loop=5", "--do_eval=True",
          "--eval_batch_size=16", "--max_eval_steps=2"]
  uninterrupted = _start(tmp_path / "straight.log", *args, f"--output_dir={straight}")
  try:
    processes.kill_preempt_kill(lambda log: _start(log, *args, f"--output_dir={resumed}"),
                                resumed, (10, 25, 40), 60, tmp_path)
    result = _run(*args, f"--output_dir={resumed}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resumed from" in result.stderr
    assert uninterrupted.wait(timeout=900) == 0, (tmp_path / "straight.log").read_text()[-3000:]
  finally:
    processes.stop(uninterrupted)
  processes.assert_same_final_checkpoint(straight, resumed)
  # best/ holds one complete checkpoint, the one best.json names, and the same model as the
  # uninterrupted run's: every chunk was scored, even one killed between its save and its score.
  processes.assert_same_best(straight, resumed)
  step = best_checkpoint.read_best(str(resumed))["step"]
  model_files = [name for name in ("bert_config.json", "vocab.txt") if (resumed / name).exists()]
  assert sorted(p.name for p in (resumed / "best").iterdir()) == sorted([
      "best.json", f"ckpt-{step}.data-00000-of-00001", f"ckpt-{step}.index", *model_files])


def test_data_made_with_other_lengths_is_refused_early(tmp_path):
  pattern = write_data(tmp_path)
  with pytest.raises(ValueError, match=r"max_seq_length=32.*--max_seq_length=128"):
    pretraining_task.check_data_shapes(pattern, 128, PREDICTIONS)
  pretraining_task.check_data_shapes(pattern, SEQ, PREDICTIONS)


@pytest.mark.parametrize("content, message", [
    (b"", "holds no record"),
    ("some raw text\n".encode(), "is not a TFRecord file"),
])
def test_data_that_is_not_records_is_refused_early(tmp_path, content, message):
  path = tmp_path / "train.tfrecord"
  path.write_bytes(content)
  with pytest.raises(ValueError, match=f"{path} {message}"):
    pretraining_task.check_data_shapes(str(path), SEQ, PREDICTIONS)


def test_data_made_with_other_lengths_stops_the_script_with_one_line(tmp_path):
  pattern = write_data(tmp_path)
  out = tmp_path / "out"
  result = _run(f"--input_file={pattern}", f"--output_dir={out}", "--do_train=True",
                f"--bert_config_file={SAMPLE / 'bert_config.json'}", "--max_seq_length=64",
                f"--max_predictions_per_seq={PREDICTIONS}")
  assert result.returncode != 0 and "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "was made with max_seq_length=32" in errors[0], result.stderr
  assert "--max_seq_length=64" in errors[0] and str(tmp_path / "data") in errors[0]
  assert not out.exists() or not list(out.iterdir())


def test_a_damaged_shard_stops_the_script_with_one_line_naming_it(tmp_path):
  """A shard cut short after create_pretraining_data wrote it is named before training starts,
  not found by a DataLossError mid-training."""
  pattern = write_data(tmp_path)
  shard = pathlib.Path(sorted(tf.io.gfile.glob(pattern))[0])
  shard.write_bytes(shard.read_bytes()[:-100])
  error = processes.user_error(
      str(ROOT / "run_pretraining.py"), f"--input_file={pattern}",
      f"--output_dir={tmp_path / 'out'}", "--do_train=True",
      f"--bert_config_file={SAMPLE / 'bert_config.json'}", f"--max_seq_length={SEQ}",
      f"--max_predictions_per_seq={PREDICTIONS}", "--num_train_steps=4",
      "--num_warmup_steps=0")
  assert str(shard) in error and "when it was written" in error, error


def test_demo_runs_clean_vocab_data_pretraining_and_export(tmp_path):
  result = _run("--demo", f"--output_dir={tmp_path}", "--num_train_steps=20",
                "--num_warmup_steps=2", "--save_checkpoints_steps=10", "--iterations_per_loop=10",
                "--max_eval_steps=2")
  assert result.returncode == 0, result.stderr[-3000:]
  for step in ("1. Cleaned (kcbert)", "2. Vocab", "3. Data", "4. Pretraining 20 steps",
               "Eval results", "Exported", "smoke run"):
    assert step in result.stdout, result.stdout
  metadata = json.loads((tmp_path / "data" / "pretrain.tfrecord.metadata.json").read_text())
  assert metadata["counts"]["instances"] > 100
  assert metadata["vocab_sha256"] and (tmp_path / "clean.txt").read_text().count("ㅋㅋㅋ") == 0
  assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["hf", "tf1", "tf2"]


def test_missing_input_is_reported_before_any_work(tmp_path):
  result = _run(f"--input_file={tmp_path}/none-*.tfrecord", f"--output_dir={tmp_path / 'out'}",
                f"--bert_config_file={SAMPLE / 'bert_config.json'}", "--do_train=True")
  assert result.returncode != 0
  assert f"--input_file={tmp_path}/none-*.tfrecord" in result.stderr
  assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_next_sentence_flag_the_data_contradicts_stops_the_script_with_one_line(tmp_path):
  config = instances.DataConfig(input_file=str(SAMPLE / "pretraining" / "raw_comments.txt"),
                                output_file=str(tmp_path / "data" / "train"),
                                vocab_file=str(SAMPLE / "vocab.txt"), do_lower_case=False,
                                max_seq_length=SEQ, max_predictions_per_seq=PREDICTIONS,
                                dupe_factor=1, masking="dynamic", next_sentence_prediction=False)
  pattern = cpd.create_pretraining_data(config)["file_pattern"]
  result = _run(f"--input_file={pattern}", f"--output_dir={tmp_path / 'out'}", "--do_train=True",
                f"--bert_config_file={SAMPLE / 'bert_config.json'}", f"--max_seq_length={SEQ}",
                f"--max_predictions_per_seq={PREDICTIONS}", f"--vocab_file={SAMPLE / 'vocab.txt'}",
                "--next_sentence_prediction=true")
  assert result.returncode != 0 and "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, result.stderr[-3000:]
  assert "holds dynamically masked records without next-sentence labels" in errors[0]
  assert "--next_sentence_prediction asks for a model with the next-sentence head" in errors[0]

