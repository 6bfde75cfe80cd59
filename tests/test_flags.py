"""The output_dir guard shared by the three scripts: same flags resume, others are refused."""

import json
import re
import subprocess
import sys

import pytest
import tensorflow as tf

from bert_tf.checkpoints import configs, model_files
from bert_tf.cli import flags as cli_flags
from bert_tf.training import history
from conftest import PROJECT_ROOT
from tests import processes

CONFIG = configs.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=16)
TRAINING = dict(train_batch_size=32, learning_rate=5e-5, train_file="gs://b/train.json", seed=1)


@pytest.fixture
def model(tmp_path):
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n", encoding="utf-8")
  return _settings(CONFIG, str(vocab))


def _settings(config, vocab_file):
  return model_files.ModelFiles(vocab_file, config, "bert_config.json", True, None).settings()


def _previous_run(output_dir, model, training=TRAINING):
  """A training run's record, checkpoints and summaries in output_dir, and a user's own file."""
  cli_flags.check_output_dir(str(output_dir), model, training, do_train=True)
  for name in ("ckpt-4.index", "ckpt-4.data-00000-of-00001", "notes.txt"):
    (output_dir / name).write_text("x")
  (output_dir / "checkpoint").write_text('model_checkpoint_path: "ckpt-4"\n')
  (output_dir / "train").mkdir()
  (output_dir / "train" / "events.out.tfevents.1").write_text("x")


def test_a_training_run_records_its_flags_and_the_same_flags_resume(tmp_path, model):
  _previous_run(tmp_path, model)
  recorded = json.loads((tmp_path / history.RUN_FLAGS_FILE).read_text())
  assert recorded == {**model, **TRAINING}
  assert recorded["vocab_file"].startswith("sha256:")
  cli_flags.check_output_dir(str(tmp_path), model, dict(TRAINING), do_train=True)
  assert (tmp_path / "ckpt-4.index").exists()


def test_different_training_flags_are_refused_with_each_difference_and_the_fix(tmp_path,
                                                                               model):
  _previous_run(tmp_path, model)
  changed = dict(TRAINING, learning_rate=3e-5, train_batch_size=16)
  with pytest.raises(ValueError) as caught:
    cli_flags.check_output_dir(str(tmp_path), model, changed, do_train=True)
  message = str(caught.value)
  assert "--learning_rate: 5e-05 then, 3e-05 now" in message
  assert "--train_batch_size: 32 then, 16 now" in message
  assert "--seed" not in message
  assert "--overwrite_output_dir" in message and "new --output_dir" in message
  assert (tmp_path / "ckpt-4.index").exists()


def test_a_different_vocab_or_config_is_refused_even_for_prediction_only(tmp_path, model):
  _previous_run(tmp_path, model)
  other_vocab = tmp_path / "other_vocab.txt"
  other_vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nworld\n", encoding="utf-8")
  for other in (_settings(CONFIG, str(other_vocab)),
                _settings(configs.BertConfig(
                    vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=16), str(tmp_path / "vocab.txt"))):
    with pytest.raises(ValueError, match=r"--(vocab_file|bert_config_file\[num_hidden_layers\])"
                       ) as refused:
      cli_flags.check_output_dir(str(tmp_path), other, TRAINING, do_train=False)
    # Advice that works for a run that does not train: --overwrite_output_dir would not.
    assert "--overwrite_output_dir" not in str(refused.value)
    assert "trained with" in str(refused.value)


def test_prediction_only_ignores_training_flags_and_records_nothing(tmp_path, model):
  _previous_run(tmp_path, model)
  before = (tmp_path / history.RUN_FLAGS_FILE).read_text()
  cli_flags.check_output_dir(str(tmp_path), model, dict(TRAINING, train_batch_size=8),
                             do_train=False)
  assert (tmp_path / history.RUN_FLAGS_FILE).read_text() == before
  fresh = tmp_path / "fresh"
  cli_flags.check_output_dir(str(fresh), model, TRAINING, do_train=False)
  assert not (fresh / history.RUN_FLAGS_FILE).exists()


def test_overwrite_deletes_the_previous_runs_checkpoints_only(tmp_path, model):
  _previous_run(tmp_path, model)
  changed = dict(TRAINING, learning_rate=3e-5)
  cli_flags.check_output_dir(str(tmp_path), model, changed, do_train=True, overwrite=True)
  assert tf.train.latest_checkpoint(str(tmp_path)) is None
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      "notes.txt", history.RUN_FLAGS_FILE, "vocab.txt"]
  assert json.loads((tmp_path / history.RUN_FLAGS_FILE).read_text())["learning_rate"] == 3e-5


def test_a_non_chief_worker_compares_but_writes_and_deletes_nothing(tmp_path, model):
  _previous_run(tmp_path, model)
  changed = dict(TRAINING, learning_rate=3e-5)
  with pytest.raises(ValueError, match="--learning_rate"):
    cli_flags.check_output_dir(str(tmp_path), model, changed, do_train=True, chief=False)
  cli_flags.check_output_dir(str(tmp_path), model, changed, do_train=True, overwrite=True,
                             chief=False)
  assert (tmp_path / "ckpt-4.index").exists()
  fresh = tmp_path / "fresh"
  cli_flags.check_output_dir(str(fresh), model, TRAINING, do_train=True, chief=False)
  assert not (fresh / history.RUN_FLAGS_FILE).exists()


def test_flags_of_a_run_that_saved_no_checkpoint_are_replaced_not_refused(tmp_path, model):
  # E.g. a run stopped by a bad line in its data file before training began.
  cli_flags.check_output_dir(str(tmp_path), model, TRAINING, do_train=True)
  changed = dict(TRAINING, learning_rate=3e-5)
  cli_flags.check_output_dir(str(tmp_path), model, changed, do_train=True)
  assert json.loads((tmp_path / history.RUN_FLAGS_FILE).read_text())["learning_rate"] == 3e-5


@pytest.mark.parametrize("script", ["run_squad.py", "run_classifier.py", "run_pretraining.py"])
def test_help_shows_the_shared_core_flags(script):
  """--help lists the flags defined in cli/flags.py and distribution, not only --helpfull."""
  result = subprocess.run([sys.executable, str(PROJECT_ROOT / script), "--help"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)
  shown = set(re.findall(r"^  --(?:\[no\])?(\w+)", result.stdout, re.M))
  assert {"learning_rate", "init_checkpoint", "output_dir", "train_batch_size", "vocab_file",
          "use_tpu", "tpu_name"} <= shown, result.stdout[-2000:]


def test_tools_without_cloud_storage_do_not_import_it():
  """The data tools start without google-cloud-storage (it is imported to stage files only)."""
  code = ("import sys\n"
          "import bert_tf.corpus.build_vocab, bert_tf.corpus.clean_text\n"
          "import bert_tf.checkpoints.convert, bert_tf.corpus.create_pretraining_data\n"
          "import bert_tf.evaluate, bert_tf.serving.extract_features\n"
          "import run_pretraining  # the script that imports the most of bert_tf\n"
          "print(sorted(m for m in sys.modules if m.startswith('google.cloud.storage')))\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("flag, message", [
    ("--learning_rate=-1", "--learning_rate=-1.0 must be positive"),
    ("--warmup_proportion=1.5", "--warmup_proportion=1.5 must be between 0 and 1"),
    ("--train_batch_size=0", "--train_batch_size=0 must be positive"),
    ("--num_train_epochs=-1", "--num_train_epochs=-1.0 must be positive"),
    ("--num_train_epochs=nan", "--num_train_epochs=nan: must be a finite number"),
    ("--num_train_epochs=inf", "--num_train_epochs=inf: must be a finite number"),
    ("--learning_rate=nan", "--learning_rate=nan: must be a finite number")])
def test_numeric_flags_out_of_range_are_one_line_before_any_work(tmp_path, flag, message):
  out = tmp_path / "out"
  line = processes.user_error("run_squad.py", "--demo", f"--output_dir={out}", flag)
  assert line.startswith(f"error: {message}")
  assert not out.exists()


def test_prediction_with_no_model_is_one_line_before_any_data_is_converted(tmp_path):
  out = tmp_path / "out"
  line = processes.user_error("run_squad.py", "--demo", "--do_train=false",
                              f"--output_dir={out}")
  assert line == (f"error: Nothing to evaluate or predict with: {out} holds no checkpoint and "
                  "--init_checkpoint is not set. Train first (--do_train=true) or point "
                  "--init_checkpoint at a fine-tuned model.")
  assert not [p.name for p in out.iterdir() if not p.name.startswith(".")]  # no features
