"""Classifier fine-tuning end to end on a tiny model: outputs, padding, resume, best checkpoint."""

import csv
import dataclasses
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bert_tf import modeling, tokenization
from bert_tf.checkpoints import configs, model_files
from bert_tf.cli import errors as cli_errors
from bert_tf.data import classifier as classifier_data
from bert_tf.tasks import classifier as classifier_task
from bert_tf.tasks import classifier_metrics
from bert_tf.tasks import task
from bert_tf.training import best_checkpoint, history, trainer
from conftest import PROJECT_ROOT
from tests import processes

SAMPLE = PROJECT_ROOT / "sample_data" / "classifier"
VOCAB = str(SAMPLE / "vocab.txt")
TINY = configs.BertConfig(
    vocab_size=configs.BertConfig.from_json_file(str(SAMPLE / "bert_config.json")).vocab_size,
    hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
    max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
SEQ_LENGTH = 24
BATCH = 8
NUM_DEV = 21  # not a multiple of any batch size used here: the last batch is always padded
NUM_TEST = 13


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  """A CoLA-format directory: 48 training, 21 dev and 13 labeled test sentences."""
  directory = tmp_path_factory.mktemp("cola")
  for name, count in (("in_domain_train.tsv", 48), ("in_domain_dev.tsv", NUM_DEV),
                      ("out_of_domain_dev.tsv", NUM_TEST)):
    lines = (SAMPLE / "cola" / name).read_text(encoding="utf-8").splitlines()[:count]
    (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
  return str(directory)


@pytest.fixture(scope="module")
def tokenizer() -> tokenization.FullTokenizer:
  return tokenization.FullTokenizer(VOCAB, do_lower_case=False)


def _config(data_dir, output_dir, **overrides) -> classifier_task.ClassifierConfig:
  training = trainer.TrainConfig(output_dir=str(output_dir), train_batch_size=BATCH,
                                 num_train_steps=0, learning_rate=2e-3, iterations_per_loop=100,
                                 save_checkpoints_steps=1000)
  values = dict(task_name="cola", data_dir=data_dir, training=training,
                max_seq_length=SEQ_LENGTH, do_train=True, do_eval=True, do_predict=True,
                eval_batch_size=BATCH, predict_batch_size=BATCH, num_train_epochs=3.0,
                warmup_proportion=0.0, seed=1)
  values.update(overrides)
  return classifier_task.ClassifierConfig(**values)


def _run(config, tokenizer, strategy=None):
  files = model_files.ModelFiles(VOCAB, TINY, "the tiny test config", False, None)
  return classifier_task.ClassifierTask(config, files,
                                        strategy or tf.distribute.get_strategy()).run()


def _read_csv(path):
  with open(path, encoding="utf-8") as f:
    return list(csv.DictReader(f))


def test_train_eval_predict_writes_every_output(tmp_path, data_dir, tokenizer, caplog):
  out = tmp_path / "out"
  results = _run(_config(data_dir, out, keep_best_by="loss"), tokenizer)

  assert sorted(results["written"]) == sorted([
      "eval_results.json", "eval_results.txt", "test_metrics.json", "test_results.tsv",
      history.STATS_FILE, history.CURVES_FILE])
  assert all((out / name).exists() for name in results["written"])
  rows = results["history"]
  assert [row["step"] for row in rows] == [6, 12, 18]  # 48 examples / 8 = 6 steps an epoch
  assert all(row["train_loss"] > 0 and row["training_time"] >= 0 for row in rows)
  best_row = min(rows, key=lambda row: row["val_loss"])
  assert results["best"]["step"] == best_row["step"]
  # The final evaluation is of the restored best checkpoint, not of the last step.
  evaluation = json.loads((out / "eval_results.json").read_text())
  assert evaluation["global_step"] == best_row["step"]
  assert evaluation["loss"] == pytest.approx(best_row["val_loss"], rel=1e-5)
  assert evaluation["num_examples"] == NUM_DEV
  assert sum(map(sum, evaluation["confusion_matrix"])) == NUM_DEV
  assert set(evaluation["per_class"]) == {"0", "1"}
  lines = (out / "eval_results.txt").read_text().splitlines()
  assert lines == sorted(lines)
  scalars = dict(line.split(" = ") for line in lines)
  assert {"eval_accuracy", "eval_loss", "global_step", "loss", "eval_mcc"} <= set(scalars)
  assert int(scalars["global_step"]) == best_row["step"]

  rows = [line.split("\t") for line in (out / "test_results.tsv").read_text().splitlines()]
  assert len(rows) == NUM_TEST and all(len(row) == 2 for row in rows)
  assert np.allclose(np.array(rows, float).sum(axis=1), 1.0, atol=1e-5)
  assert json.loads((out / "test_metrics.json").read_text())["num_examples"] == NUM_TEST

  stats = _read_csv(out / history.STATS_FILE)
  assert list(stats[0]) == ["epoch", "step", "train_loss", "val_loss", "val_accuracy", "val_mcc",
                            "training_time", "validation_time"]
  assert [float(row["epoch"]) for row in stats] == [1.0, 2.0, 3.0]
  assert (out / history.CURVES_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert list((out / "eval").glob("events.out.tfevents.*"))
  assert [p.name for p in (out / "best").glob("*.index")] == [f"ckpt-{best_row['step']}.index"]
  assert "val_mcc" in history.stats_table(results["history"],
                                          ["loss", "accuracy", "mcc"]).splitlines()[0]

  # Evaluation alone, later: the run directory's best model, with or without --keep_best_by.
  for keep_best_by in ("loss", None):
    again = _run(_config(data_dir, out, do_train=False, do_predict=False,
                         keep_best_by=keep_best_by), tokenizer)
    assert again["eval"]["loss"] == pytest.approx(best_row["val_loss"], rel=1e-5)
  assert json.loads((out / "eval_results.json").read_text())["global_step"] == best_row["step"]
  assert not (out / "previous_outputs").exists()  # the same weights: rewritten in place
  # A training rerun without --keep_best_by (already trained) also uses best/, and says so.
  caplog.set_level(logging.WARNING)
  retrained = _run(_config(data_dir, out, do_predict=False), tokenizer)
  assert retrained["eval"]["loss"] == pytest.approx(best_row["val_loss"], rel=1e-5)
  assert "which this run (without the flag) does not update" in caplog.text

  # A copy of the directory evaluates its own best model, even when the original's changes.
  shutil.copytree(out, tmp_path / "copy")
  tf.train.Checkpoint(model=modeling.build_model(modeling.BertClassifier(TINY, 2))).write(
      str(out / "best" / f"ckpt-{best_row['step']}"))
  copied = _run(_config(data_dir, tmp_path / "copy", do_train=False, do_predict=False), tokenizer)
  assert copied["eval"]["loss"] == pytest.approx(best_row["val_loss"], rel=1e-5)
  # best/ copied alone is a whole model: its checkpoint, config and vocab.
  shutil.copytree(tmp_path / "copy" / "best", tmp_path / "best_alone")
  alone = model_files.resolve(str(tmp_path / "best_alone"), None, None, None)
  assert (alone.vocab_file, alone.config) == (str(tmp_path / "best_alone" / "vocab.txt"), TINY)

  # Without best/ the directory means its latest checkpoint: the best model's outputs are moved
  # to previous_outputs/, not overwritten.
  shutil.rmtree(out / "best")
  latest = _run(_config(data_dir, out, do_train=False, do_predict=False), tokenizer)
  assert latest["eval"]["loss"] == pytest.approx(results["history"][-1]["val_loss"], rel=1e-5)
  assert json.loads((out / "eval_results.json").read_text())["global_step"] == 18
  kept = out / "previous_outputs" / f"best_ckpt-{best_row['step']}"
  assert sorted(p.name for p in kept.iterdir()) == ["eval_results.json", "eval_results.txt",
                                                    "test_metrics.json", "test_results.tsv"]
  assert json.loads((kept / "eval_results.json").read_text())["global_step"] == best_row["step"]


def test_padded_batches_count_every_example_once_on_two_replicas(tmp_path, data_dir, tokenizer,
                                                                  mirrored_cpus):
  processor = classifier_data.get_processor("cola")
  feature_file = classifier_data.prepare_features(
      processor.get_dev_examples(data_dir), processor.get_labels(), SEQ_LENGTH, tokenizer,
      str(tmp_path / "eval.tf_record"))
  # Static shapes, as TPUs need: full batches, the last one padded with is_real_example = 0.
  batches = list(classifier_task.eval_dataset(feature_file, SEQ_LENGTH, 8))
  assert [b["input_ids"].shape.as_list() for b in batches] == [[8, SEQ_LENGTH]] * 3
  assert [int(b["is_real_example"].numpy().sum()) for b in batches] == [8, 8, 5]
  assert classifier_task.eval_dataset(feature_file, SEQ_LENGTH, 8).element_spec[
      "input_ids"].shape.as_list() == [8, SEQ_LENGTH]
  mirrored = mirrored_cpus
  with mirrored.scope():
    tf_keras.utils.set_random_seed(3)
    model = modeling.build_model(modeling.BertClassifier(TINY, 2))
  single = classifier_task.predict_probabilities(tf.distribute.get_strategy(), model,
                                                 feature_file, SEQ_LENGTH, 8)
  for batch_size in (2, 4, 6):  # 21 = 10*2+1 = 5*4+1 = 3*6+3: a padded last batch each time
    split = classifier_task.predict_probabilities(mirrored, model, feature_file, SEQ_LENGTH,
                                                  batch_size)
    assert split["probabilities"].shape == (NUM_DEV, 2)
    np.testing.assert_allclose(split["probabilities"], single["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(split["label_ids"], single["label_ids"])
  result = classifier_metrics.classification_metrics(split["logits"], split["label_ids"],
                                                     ["0", "1"])
  assert result["num_examples"] == NUM_DEV


def test_resumes_after_interruption_as_if_never_stopped(tmp_path, data_dir, tokenizer,
                                                        monkeypatch):
  reference = _run(_config(data_dir, tmp_path / "whole", do_predict=False), tokenizer)

  calls = []
  real_evaluate = classifier_task.ClassifierTask.evaluate

  def crash_on_second_evaluation(self, model):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt("simulated interruption")
    return real_evaluate(self, model)

  config = _config(data_dir, tmp_path / "resumed", do_predict=False)
  monkeypatch.setattr(classifier_task.ClassifierTask, "evaluate", crash_on_second_evaluation)
  with pytest.raises(KeyboardInterrupt):
    _run(config, tokenizer)
  monkeypatch.setattr(classifier_task.ClassifierTask, "evaluate", real_evaluate)
  state = history.TrainingState.load(config.output_dir)
  assert [row["step"] for row in state.history] == [6]
  assert tf.train.latest_checkpoint(config.output_dir).endswith("ckpt-12")

  resumed = _run(config, tokenizer)
  rows = resumed["history"]
  assert [row["step"] for row in rows] == [6, 12, 18]
  for ours, theirs in zip(rows, reference["history"]):
    assert ours["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-4)
    # The epoch trained before the interruption has its mean loss too: the running loss sum
    # is in the checkpoint.
    assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-4)
  assert resumed["eval"]["loss"] == pytest.approx(reference["eval"]["loss"], rel=1e-4)
  assert len(_read_csv(os.path.join(config.output_dir, history.STATS_FILE))) == 3


def test_early_stopping_keeps_and_restores_the_best_checkpoint(tmp_path, data_dir, tokenizer,
                                                               monkeypatch):
  scores = iter([0.2, 0.5, 0.4, 0.3, 0.9])  # best at the 2nd evaluation; stop after the 4th
  seen = []

  def scripted_evaluate(self, model):
    seen.append(model.classifier.kernel.numpy().copy())
    value = next(scores)
    return dict(accuracy=value, loss=1.0 - value, mcc=value, f1=value, num_examples=NUM_DEV)

  monkeypatch.setattr(classifier_task.ClassifierTask, "evaluate", scripted_evaluate)
  config = _config(data_dir, tmp_path / "out", do_predict=False, num_train_epochs=6.0,
                   keep_best_by="mcc", early_stopping_patience=2)
  results = _run(config, tokenizer)
  assert [row["step"] for row in results["history"]] == [6, 12, 18, 24]
  assert results["best"]["step"] == 12 and results["best"]["value"] == 0.5
  # The final evaluation (5th call) saw the weights of step 12, not those of step 24.
  np.testing.assert_array_equal(seen[4], seen[1])
  assert not np.array_equal(seen[4], seen[3])
  assert tf.train.latest_checkpoint(config.output_dir).endswith("ckpt-24")
  assert json.loads((tmp_path / "out" / "eval_results.json").read_text())["global_step"] == 12

  scores = iter([0.7])  # a rerun trains no further: only the final evaluation happens
  again = _run(config, tokenizer)
  assert len(again["history"]) == 4
  assert tf.train.latest_checkpoint(config.output_dir).endswith("ckpt-24")

  # Evaluation alone uses the run directory's best model, with --keep_best_by or without.
  for overrides, expected in ((dict(), seen[1]),
                              (dict(keep_best_by=None, early_stopping_patience=0), seen[1])):
    scores, seen[:] = iter([0.1]), []
    _run(dataclasses.replace(config, do_train=False, **overrides), tokenizer)
    np.testing.assert_array_equal(seen[0], expected)


def test_evaluation_steps():
  assert task.evaluation_steps(18, 6.0, True, None) == [6, 12, 18]
  assert task.evaluation_steps(16, 6.5, True, None) == [6, 13, 16]  # 2.5 epochs
  assert task.evaluation_steps(18, 6.0, True, 5) == [5, 10, 15, 18]
  assert task.evaluation_steps(18, 6.0, False, None) == [18]


def test_bad_settings_fail_before_any_work(tmp_path, data_dir, tokenizer, mirrored_cpus):
  cases = [
      (dict(keep_best_by="mcc", do_eval=False), "--keep_best_by picks among evaluations"),
      (dict(early_stopping_patience=3), "set --keep_best_by"),
      (dict(max_seq_length=64), "max_position_embeddings"),
      (dict(do_train=False, do_eval=False, do_predict=False), "At least one of"),
      (dict(task_name="tsv"), r"The tsv train set is not in --data_dir=.*train.tsv"),
  ]
  for overrides, message in cases:
    with pytest.raises((ValueError, FileNotFoundError), match=message):
      _run(_config(data_dir, tmp_path / "out", **overrides), tokenizer)
  with pytest.raises(ValueError, match=r"eval_batch_size=5 is not a multiple of the 2"):
    _run(_config(data_dir, tmp_path / "out", eval_batch_size=5), tokenizer,
         mirrored_cpus)
  history.TrainingState(extras={"label_list": ["neg", "pos"]}).save(str(tmp_path / "trained"))
  with pytest.raises(ValueError, match=r"trained with the labels 'neg', 'pos', but this run "
                     r"has '0', '1'"):
    _run(_config(data_dir, tmp_path / "trained", do_predict=False), tokenizer)
  with pytest.raises(ValueError, match=r"Nothing to evaluate or predict with: .*empty holds no "
                     "checkpoint"):  # found before any data is read
    _run(_config(tmp_path / "no_data", tmp_path / "empty", do_train=False), tokenizer)


def _write_tsv_task(data: pathlib.Path) -> None:
  """train.tsv (40 rows), dev.tsv (10) and test.tsv (10) with a header, from the NSMC sample."""
  data.mkdir()
  sentences = (SAMPLE / "nsmc" / "ratings_train.txt").read_text(encoding="utf-8").splitlines()
  rows = [line.split("\t") for line in sentences[1:41]]
  for name, part in (("train", rows), ("dev", rows[:10]), ("test", rows[30:])):
    (data / f"{name}.tsv").write_text("text\tsentiment\n" + "".join(
        f"{text}\t{'pos' if label == '1' else 'neg'}\n" for _, text, label in part),
        encoding="utf-8")


TSV_FLAGS = ["--task_name=tsv", f"--vocab_file={VOCAB}",
             f"--bert_config_file={SAMPLE / 'bert_config.json'}", "--has_header",
             "--text_a_column=text", "--label_column=sentiment", "--max_seq_length=16",
             "--train_batch_size=8", "--num_train_epochs=1", "--eval_batch_size=4"]


def test_script_flags_and_a_tsv_run(tmp_path):
  """run_classifier.py keeps google-research's flag names and defaults and runs a tsv task.

  One default differs on purpose: do_lower_case is inferred from the vocab (google-research's
  True lowercased every cased model run without the flag)."""
  data = tmp_path / "data"
  _write_tsv_task(data)
  google = dict(max_seq_length=128, do_train=False, do_eval=False, do_predict=False,
                train_batch_size=32, eval_batch_size=8, predict_batch_size=8,
                learning_rate=5e-5, num_train_epochs=3.0, warmup_proportion=0.1,
                save_checkpoints_steps=1000, iterations_per_loop=1000, use_tpu=False,
                num_tpu_cores=8, do_lower_case=None, data_dir=None, task_name=None,
                vocab_file=None, bert_config_file=None, output_dir=None,
                init_checkpoint=None, tpu_name=None, tpu_zone=None, gcp_project=None,
                master=None)
  code = (
      "import json, sys\n"
      "from absl import app, flags\n"
      "import run_classifier\n"
      f"print('DEFAULTS', json.dumps({{n: flags.FLAGS[n].default for n in {sorted(google)}}}))\n"
      "app.run(run_classifier.main, argv=sys.argv)\n")
  args = [sys.executable, "-c", code, *TSV_FLAGS, f"--data_dir={data}",
          f"--output_dir={tmp_path / 'out'}", "--do_train", "--do_eval"]
  done = subprocess.run(args, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert done.returncode == 0, done.stderr[-3000:]
  defaults = json.loads(next(line for line in done.stdout.splitlines()
                             if line.startswith("DEFAULTS "))[len("DEFAULTS "):])
  assert defaults == google
  assert "Dev: 10 examples" in done.stdout
  state = json.loads((tmp_path / "out" / history.STATE_FILE).read_text())
  assert state["extras"]["label_list"] == ["neg", "pos"]
  assert (tmp_path / "out" / "eval_results.txt").exists()
  assert pathlib.Path(tmp_path / "out" / history.STATS_FILE).exists()


def test_two_workers_share_an_output_dir_and_only_the_chief_writes(tmp_path):
  """run_classifier.py under MultiWorkerMirroredStrategy, both workers on one --output_dir, with
  packed rows (the default) and --use_xla: packing's static shapes compile under multi-worker.

  tests/test_distribution.py shows with separate directories that other workers write no
  checkpoint or summary; here their logs show they write no result, cache or best checkpoint.
  """
  data, out = tmp_path / "data", tmp_path / "out"
  _write_tsv_task(data)
  results = processes.run_workers(
      [str(PROJECT_ROOT / "run_classifier.py"), *TSV_FLAGS, f"--data_dir={data}",
       f"--output_dir={out}", "--do_train", "--do_eval", "--do_predict", "--keep_best_by=loss",
       "--distribution_strategy=multi_worker_mirrored", "--use_xla"], cwd=PROJECT_ROOT)
  for returncode, _, stderr in results:
    assert returncode == 0, stderr[-3000:]
    assert "Packed training:" in stderr and "XLA compiles forward and backward" in stderr
  outputs = [(stdout, stderr) for _, stdout, stderr in results]
  # Both evaluated every dev example once (each worker a share, gathered).
  assert all("Dev: 10 examples" in stdout for stdout, _ in outputs)
  (_, chief_log), (_, other_log) = outputs
  for line in ("Wrote the features of", "Saved checkpoint", "Evaluated 10 examples",
               "Wrote the class probabilities of 10 test examples"):
    assert line in chief_log and line not in other_log, line
  assert "Reusing" in other_log  # the feature files the chief wrote
  for name in ("eval_results.json", "test_results.tsv", history.STATS_FILE,
               history.STATE_FILE, history.RUN_FLAGS_FILE):
    assert (out / name).exists(), name
  assert len((out / "test_results.tsv").read_text().splitlines()) == 10
  assert list((out / best_checkpoint.BEST_DIR).glob("ckpt-*.index"))
  assert not list(out.glob(".worker_tmp_*")) and not list(out.glob("**/.*tmp*"))


def test_a_cache_rewrite_cut_short_is_rebuilt_not_reused(tmp_path, tokenizer, monkeypatch):
  """A run that dies between writing a new feature file and its sidecar leaves no cache that a
  later run with the old settings would take for its own."""
  def examples(texts):
    return [classifier_data.InputExample(f"train-{i}", text, None, "1")
            for i, text in enumerate(texts)]
  output_file = str(tmp_path / "train.tf_record")
  old, new = examples(["a b c", "d e f"]), examples(["x y", "z w", "v u", "t s"])
  assert classifier_data.prepare_features(old, ["0", "1"], 8, tokenizer,
                                          output_file).num_examples == 2

  def die(*args, **kwargs):
    raise SystemExit("killed before the sidecar was written")

  with monkeypatch.context() as patch:
    patch.setattr(classifier_data.io_files, "write_json_atomic", die)
    with pytest.raises(SystemExit):
      classifier_data.prepare_features(new, ["0", "1"], 8, tokenizer, output_file)
  # The file now holds the 4 new records; the old settings must not reuse it as their 2.
  rebuilt = classifier_data.prepare_features(old, ["0", "1"], 8, tokenizer, output_file)
  assert rebuilt.num_examples == 2
  assert sum(1 for _ in tf.data.TFRecordDataset(output_file)) == 2


@pytest.mark.parametrize("pack_sequences, name", [(False, "train.tf_record"),
                                                  (True, "train_packed.tf_record")])
def test_a_corrupt_training_record_is_named_with_its_file(tmp_path, data_dir, tokenizer,
                                                          pack_sequences, name):
  """A record damaged inside (size and count intact, its checksum not) stops training with one
  error line (a RunFault: the script's message and status 1) naming the file training reads
  (the packed rows, when packing), not TensorFlow's bare "corrupted record at N"."""
  out = tmp_path / "out"
  config = _config(data_dir, out, do_eval=False, do_predict=False, pack_sequences=pack_sequences)
  files = model_files.ModelFiles(VOCAB, TINY, "the tiny test config", False, None)
  classifier_task.ClassifierTask(config, files, tf.distribute.get_strategy()).prepare()
  path = out / name
  data = bytearray(path.read_bytes())
  data[20] ^= 0xFF  # in the first record's payload (after its 8-byte length and 4-byte crc)
  path.write_bytes(bytes(data))
  with pytest.raises(cli_errors.RunFault,
                     match=rf"error: {path}: corrupted TFRecord .*\(TensorFlow: .*\)\. "
                     "Copy the file again, or remove it"):
    classifier_task.ClassifierTask(config, files, tf.distribute.get_strategy()).run()


def test_test_results_keep_googles_format_and_can_name_the_labels(tmp_path):
  probabilities = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
  plain = tmp_path / "plain.tsv"
  classifier_task.write_test_results(str(plain), probabilities)
  assert plain.read_text().splitlines() == ["0.9\t0.1", "0.2\t0.8"]
  named = tmp_path / "named.tsv"
  classifier_task.write_test_results(str(named), probabilities, ["neg", "pos"])
  assert named.read_text().splitlines() == ["neg\tpos\tprediction", "0.9\t0.1\tneg",
                                            "0.2\t0.8\tpos"]


def test_packed_and_padded_runs_share_one_model(tmp_path, data_dir, tokenizer):
  """A packed run trains the very model a padded run does: the same variables in its
  checkpoint, which initialises a padded run (and the reverse), both learning from every example
  once an epoch."""
  def train(name, pack, **overrides):
    return _run(_config(data_dir, tmp_path / name, do_eval=False, do_predict=False,
                        num_train_epochs=1.0, pack_sequences=pack, **overrides), tokenizer)

  packed, padded = train("packed", True), train("padded", False)
  meta = json.loads((tmp_path / "packed" / task.PACKED_TRAIN_FILE).with_suffix(
      ".tf_record.json").read_text())
  assert meta["num_examples"] == 48 and meta["num_rows"] < 48
  # The packed epoch: its rows in steps of about 8 examples; the padded one 48 / 8 steps.
  assert padded["history"][-1]["step"] == 6
  assert packed["history"][-1]["step"] == int(
      meta["num_rows"] / round(8 * meta["num_rows"] / 48))
  weights = {name: processes.model_weights(tmp_path / name) for name in ("packed", "padded")}
  assert {k: v.shape for k, v in weights["packed"].items()} == {
      k: v.shape for k, v in weights["padded"].items()}
  files = model_files.ModelFiles(VOCAB, TINY, "the tiny test config", False,
                                 str(tmp_path / "packed"))
  config = _config(data_dir, tmp_path / "from_packed", do_eval=False, do_predict=False,
                   num_train_epochs=1.0, pack_sequences=False)
  run = classifier_task.ClassifierTask(config, files, tf.distribute.get_strategy())
  run.prepare()
  model = run.restore_for_inference()  # --init_checkpoint: the packed run's directory
  np.testing.assert_array_equal(
      model.classifier.kernel.numpy(),
      weights["packed"]["model/classifier/kernel/.ATTRIBUTES/VARIABLE_VALUE"])
  np.testing.assert_array_equal(
      model.encoder.pooler_layer.kernel.numpy(),
      weights["packed"]["model/encoder/_pooler_layer/kernel/.ATTRIBUTES/VARIABLE_VALUE"])


def test_packing_that_cannot_keep_the_batch_stops_before_training(tmp_path, data_dir,
                                                                   tokenizer):
  with pytest.raises(ValueError, match=r"--pack_sequences: rows of 24 tokens hold [\d.]+ "
                     r"training examples on average.*not --train_batch_size=1: raise "
                     r"--train_batch_size to at least \d+ or pass --pack_sequences=false"):
    _run(_config(data_dir, tmp_path / "out", training=trainer.TrainConfig(
        output_dir=str(tmp_path / "out"), train_batch_size=1, num_train_steps=0,
        learning_rate=1e-3)), tokenizer)
  assert not list((tmp_path / "out").glob("ckpt-*"))


def test_length_buckets_give_the_padded_outputs(tmp_path, data_dir, tokenizer, mirrored_cpus):
  """--length_buckets (the default) against 0 (google-research's padded batches): the same
  eval_results, test_results.tsv and test_metrics.json, byte for byte, also on two replicas."""
  out = tmp_path / "out"
  names = ("eval_results.json", "eval_results.txt", "test_results.tsv", "test_metrics.json")
  _run(_config(data_dir, out, max_seq_length=32, length_buckets=0, num_train_epochs=1.0),
       tokenizer)
  padded = {name: (out / name).read_bytes() for name in names}
  for strategy in (None, mirrored_cpus):
    for name in names:
      (out / name).unlink()
    _run(_config(data_dir, out, max_seq_length=32, do_train=False), tokenizer, strategy)
    assert {name: (out / name).read_bytes() for name in names} == padded


def test_nsmc_converts_and_scores_its_one_dev_and_test_file_once(tmp_path, tokenizer,
                                                                  monkeypatch):
  """NSMC validates on ratings_test.txt: the last evaluation during training, --do_eval and
  --do_predict score the same reviews with the same weights, so once."""
  data = tmp_path / "nsmc"
  data.mkdir()
  for name, count in (("ratings_train.txt", 33), ("ratings_test.txt", 11)):
    lines = (SAMPLE / "nsmc" / name).read_text(encoding="utf-8").splitlines()[:count]
    (data / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
  scored, converted = [], []
  real_predict, real_prepare = (classifier_task.predict_probabilities,
                                classifier_data.prepare_features)

  def counted_predict(*args, **kwargs):
    scored.append(args[2].path)
    return real_predict(*args, **kwargs)

  def counted_prepare(*args, **kwargs):
    converted.append(args[-1])
    return real_prepare(*args, **kwargs)

  monkeypatch.setattr(classifier_task, "predict_probabilities", counted_predict)
  monkeypatch.setattr(classifier_data, "prepare_features", counted_prepare)
  results = _run(_config(str(data), tmp_path / "out", task_name="nsmc", eval_every_epoch=True,
                         num_train_epochs=2.0), tokenizer)
  assert len(converted) == 2  # train, and dev = test
  assert len(results["history"]) == 2 and len(scored) == 2  # one per epoch, none after
  assert results["eval"] == results["test"]  # the same outputs
  probabilities = np.loadtxt(tmp_path / "out" / "test_results.tsv", delimiter="\t")
  assert probabilities.shape == (10, 2)
