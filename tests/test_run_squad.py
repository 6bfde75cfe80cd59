"""run_squad.py end to end on the bundled sample data with a tiny model, and squad_task on 2 replicas."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import tensorflow as tf

from bert_tf.checkpoints import configs, model_files
from bert_tf.data import squad_features, squad_predictions, squad_records
from bert_tf.tasks import squad as squad_task
from bert_tf.training import history, trainer
from tests import processes

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
# Few epochs: these tests check the plumbing, the demo itself trains longer.
FAST = ["--demo", "--num_train_epochs=6", "--iterations_per_loop=5",
        "--save_checkpoints_steps=10"]


def _run_squad(*args, wait=True, stderr=None, check=True):
  """Runs run_squad.py to completion, or (wait=False) starts it, logging to `stderr` if given."""
  command = [sys.executable, str(ROOT / "run_squad.py"), *args]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  if not wait:
    with open(stderr or os.devnull, "w", encoding="utf-8") as log:
      return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
  result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0 or not check, result.stderr[-3000:]
  return result


def test_train_predict_evaluate(tmp_path):
  out = tmp_path / "out"
  result = _run_squad(*FAST, f"--output_dir={out}", f"--export_dir={tmp_path / 'serving'}")
  assert "not a benchmark" in result.stdout
  # --export_dir: a raw-text SavedModel with the run's windowing (tests/test_export.py serves it).
  assert (tmp_path / "serving" / "saved_model.pb").exists()
  settings = json.loads((tmp_path / "serving" / "bert_tf_serving.json").read_text())
  assert (settings["task"], settings["doc_stride"], settings["max_seq_length"]) == ("squad", 64,
                                                                                  128)
  predictions = json.loads((out / "predictions.json").read_text(encoding="utf-8"))
  assert len(predictions) == 29
  raw = (out / "nbest_predictions.json").read_text(encoding="utf-8")
  assert "\\u" not in raw  # Korean stays readable
  nbest = json.loads(raw)
  assert all(abs(sum(e["probability"] for e in entries) - 1) < 1e-4 for entries in nbest.values())
  metrics = json.loads((out / "eval_results.json").read_text())
  assert metrics["total"] == 29 and 0 <= metrics["exact_match"] <= metrics["f1"] <= 100
  assert "Reusing the cached" not in result.stderr
  # The output_dir holds the model's files: it is an --init_checkpoint on its own.
  files = model_files.resolve(str(out), None, None, None)
  assert (files.vocab_file, files.config_file) == (str(out / "vocab.txt"),
                                                   str(out / "bert_config.json"))
  assert files.do_lower_case is False and files.init_checkpoint == str(out)
  # A second run reuses the cached features and, already trained, only predicts.
  again = _run_squad(*FAST, f"--output_dir={out}")
  assert re.search("Reusing the cached records of .*train_meta.json", again.stderr)
  assert "Already trained to step" in again.stderr
  # Other flags that change the weights are refused before any work, each one named.
  refused = _run_squad(*FAST, f"--output_dir={out}", "--learning_rate=1e-3",
                       "--max_query_length=32", check=False)
  assert refused.returncode != 0
  assert "--learning_rate: 0.002 then, 0.001 now" in refused.stderr
  assert "--max_query_length: 64 then, 32 now" in refused.stderr
  assert "Traceback" not in refused.stderr
  # ... unless asked to start afresh: then the old checkpoints go and training restarts at 0.
  afresh = _run_squad(*FAST, f"--output_dir={out}", "--learning_rate=1e-3", "--do_predict=False",
                      "--num_train_epochs=1", "--overwrite_output_dir")
  assert "Resumed from" not in afresh.stderr
  num_features = json.loads((out / "train_meta.json").read_text())["num_features"]
  assert tf.train.latest_checkpoint(str(out)).endswith(f"ckpt-{num_features // 8}")  # one epoch
  assert json.loads((out / "run_flags.json").read_text())["learning_rate"] == 1e-3


def test_killed_and_preempted_run_resumes_to_the_same_weights(tmp_path):
  """Interrupted three times, a run that evaluates EM/F1 every epoch and keeps the best by F1
  ends like an uninterrupted one: same weights, same best checkpoint."""
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  args = [*FAST, "--keep_best_by=f1"]
  uninterrupted = _run_squad(*args, f"--output_dir={straight}", wait=False)
  try:
    processes.kill_preempt_kill(
        lambda log: _run_squad(*args, f"--output_dir={resumed}", wait=False, stderr=log),
        resumed, (10, 20, 30), 44, tmp_path)
    result = _run_squad(*args, f"--output_dir={resumed}")
    assert "Resumed from" in result.stderr
    assert uninterrupted.wait(timeout=900) == 0
  finally:
    processes.stop(uninterrupted)
  processes.assert_same_final_checkpoint(straight, resumed)
  processes.assert_same_best(straight, resumed)
  # One row per epoch with EM/F1 in both, the same answers scored the same.
  stats = [[line.split(",") for line in (out / history.STATS_FILE).read_text().splitlines()]
           for out in (straight, resumed)]
  assert stats[0][0][:5] == ["epoch", "step", "train_loss", "val_exact_match", "val_f1"]
  assert len(stats[0]) == len(stats[1]) == 7
  assert (resumed / history.CURVES_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert [row[:2] + row[3:5] for row in stats[0]] == [row[:2] + row[3:5] for row in stats[1]]


def test_bad_flags_fail_before_work(tmp_path):
  command = [sys.executable, str(ROOT / "run_squad.py"), "--demo", f"--output_dir={tmp_path}",
             "--max_seq_length=512"]
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert "max_position_embeddings=256" in result.stderr
  assert not list(tmp_path.iterdir())


def test_bad_predict_file_fails_before_training_with_one_line(tmp_path):
  """A truncated predict file is found before training: one line naming it, nothing written."""
  text = json.dumps(json.loads((SAMPLE / "squad_sample.json").read_text(encoding="utf-8")),
                    indent=1, ensure_ascii=False)
  predict_file = tmp_path / "dev.json"
  predict_file.write_text(text[:len(text) // 2], encoding="utf-8")
  output_dir = tmp_path / "out"
  result = _run_squad(*FAST, f"--output_dir={output_dir}", f"--predict_file={predict_file}",
                      check=False)
  assert result.returncode != 0 and "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and re.match(rf"error: {predict_file}, line \d+ column \d+: not valid "
                                       "JSON", errors[0]), result.stderr[-2000:]
  assert not output_dir.exists() or not list(output_dir.iterdir())


def test_two_replica_mirrored_training_and_prediction(tmp_path, mirrored_cpus):
  strategy = mirrored_cpus
  config = configs.BertConfig.from_json_file(str(SAMPLE / "bert_config.json"))
  files = model_files.ModelFiles(str(SAMPLE / "vocab.txt"), config, "sample config", False, None)
  training = trainer.TrainConfig(output_dir=str(tmp_path), train_batch_size=8, num_train_steps=4,
                                 learning_rate=1e-3, iterations_per_loop=2,
                                 save_checkpoints_steps=2)
  task = squad_task.SquadTask(squad_task.SquadConfig(
      training=training, train_file=str(SAMPLE / "squad_sample.json"),
      predict_file=str(SAMPLE / "squad_sample.json"), do_train=True, do_predict=True,
      max_seq_length=64, doc_stride=32, max_query_length=16, num_workers=1, seed=1),
      files, strategy)
  model = task.train()
  eval_meta = task.eval_meta
  # 7 predict batches of 8 cover the features once each, the last one padded.
  results = squad_task.predict(strategy, model, eval_meta, predict_batch_size=8)
  assert sorted(r.unique_id for r in results) == list(
      range(squad_features.FIRST_UNIQUE_ID,
            squad_features.FIRST_UNIQUE_ID + eval_meta["num_features"]))
  assert all(len(r.start_logits) == 64 for r in results)


def test_a_run_directory_means_its_best_model_to_every_later_run(tmp_path):
  """After --keep_best_by, a prediction-only rerun on the same --output_dir predicts with the
  best model (and says so), and OUTPUT_DIR/best alone is an --init_checkpoint (with the run's
  vocab and config, copied beside the best checkpoint)."""
  out = tmp_path / "out"
  _run_squad(*FAST, "--keep_best_by=f1", f"--output_dir={out}")
  best = json.loads((out / "best" / "best.json").read_text())
  assert best["checkpoint"] == f"best/ckpt-{best['step']}"  # relative: the directory is portable
  predicted = _run_squad(*FAST, f"--output_dir={out}", "--do_train=False")
  assert re.search(rf"{out} means the best model by f1 [\d.]+ at step {best['step']}",
                   predicted.stderr)
  assert json.loads((out / "eval_results.json").read_text())["global_step"] == best["step"]
  alone = _run_squad(*FAST, f"--output_dir={tmp_path / 'other'}", "--do_train=False",
                     f"--init_checkpoint={out / 'best'}", "--vocab_file=", "--bert_config_file=")
  assert f"using {out / 'best' / 'vocab.txt'}" in alone.stderr
  assert ((tmp_path / "other" / "predictions.json").read_text(encoding="utf-8") ==
          (out / "predictions.json").read_text(encoding="utf-8"))


def _is_utf8(data: bytes) -> bool:
  try:
    data.decode("utf-8")
    return True
  except UnicodeDecodeError:
    return False


def test_a_cp949_vocab_names_the_file_line_and_the_iconv_fix(tmp_path):
  tokens = (SAMPLE / "vocab.txt").read_text(encoding="utf-8").splitlines()
  lines = [token.encode("cp949", errors="replace") for token in tokens]
  vocab = tmp_path / "vocab.txt"
  vocab.write_bytes(b"\n".join(lines) + b"\n")
  first_bad = next(number for number, line in enumerate(lines, 1) if not _is_utf8(line))
  error = processes.user_error("run_squad.py", "--demo", f"--vocab_file={vocab}",
                               f"--output_dir={tmp_path / 'out'}")
  assert error.startswith(f"error: {vocab}, line {first_bad}: not valid UTF-8")
  assert f"`iconv -f cp949 -t utf-8 {vocab} > {tmp_path / 'vocab.utf8.txt'}`" in error


def test_length_buckets_give_the_padded_logits_and_answers(tmp_path):
  """Bucketed prediction (the default --length_buckets) against the padded path: every window's
  logits over its own tokens to the bit; the n-best is chosen among those tokens only, so it
  equals the padded path's for every question whose windows have no padding position among
  their n_best_size best logits (google-research lets padding take n-best places, then drops
  it). On this trained tiny model predictions and null odds are the same for every question."""
  config = configs.BertConfig.from_json_file(str(SAMPLE / "bert_config.json"))
  files = model_files.ModelFiles(str(SAMPLE / "vocab.txt"), config, "sample config", False, None)
  training = trainer.TrainConfig(output_dir=str(tmp_path), train_batch_size=8,
                                 num_train_steps=120, learning_rate=2e-3,
                                 iterations_per_loop=60, save_checkpoints_steps=1000)
  task = squad_task.SquadTask(squad_task.SquadConfig(
      training=training, train_file=str(SAMPLE / "squad_sample.json"),
      predict_file=str(SAMPLE / "squad_sample.json"), do_train=True, do_predict=True,
      max_seq_length=128, doc_stride=64, seed=1), files, tf.distribute.get_strategy())
  model = task.train()
  strategy, meta = tf.distribute.get_strategy(), task.eval_meta
  padded = {r.unique_id: r for r in squad_task.predict(strategy, model, meta, 8)}
  bucketed = squad_task.predict(strategy, model, meta, 8, num_buckets=4)
  examples, features = squad_records.load_eval_data(str(tmp_path))
  assert sorted(r.unique_id for r in bucketed) == sorted(padded)
  by_id = {f.unique_id: f for f in features}
  padding_in_nbest = set()
  for result in bucketed:
    length = len(by_id[result.unique_id].tokens)
    assert len(result.start_logits) == len(result.end_logits) == length
    full = padded[result.unique_id]
    assert (result.start_logits == full.start_logits[:length]).all()
    assert (result.end_logits == full.end_logits[:length]).all()
    if any(max(logits[length:], default=-np.inf) > sorted(logits[:length])[-20]
           for logits in (full.start_logits, full.end_logits)):
      padding_in_nbest.add(examples[by_id[result.unique_id].example_index].qas_id)
  assert 0 < len(padding_in_nbest) < len(examples)  # both cases are exercised
  assert min(len(r.start_logits) for r in bucketed) < 100  # short windows ran short
  for version_2 in (False, True):
    (ours, our_nbest, our_odds), (theirs, their_nbest, their_odds) = [
        squad_predictions.compute_predictions(examples, features, results, 20, 30, False,
                                              version_2)
        for results in (bucketed, list(padded.values()))]
    assert ours == theirs and our_odds == their_odds
    for qas_id, entries in our_nbest.items():
      if qas_id not in padding_in_nbest:
        assert entries == their_nbest[qas_id]
      else:  # the best of more candidates: k-th score for k-th score, at least as high
        scores = [[e["start_logit"] + e["end_logit"] for e in nbest if e["text"]]
                  for nbest in (entries, their_nbest[qas_id])]
        assert len(scores[0]) >= len(scores[1])
        assert all(a >= b for a, b in zip(*scores))
        assert ({k: v for k, v in entries[0].items() if k != "probability"} ==
                {k: v for k, v in their_nbest[qas_id][0].items() if k != "probability"})
