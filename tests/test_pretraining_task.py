"""pretraining_task: learning on real Korean text, keep-best by loss, export into fine-tuning."""

import collections
import csv
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bert_tf import build_vocab, checkpoints, io_utils, modeling
from bert_tf.tasks import classifier as classifier_task
from bert_tf.tasks import pretraining as pretraining_task
from bert_tf import create_pretraining_data as cpd
from bert_tf import tokenization
from bert_tf.data import squad
from bert_tf.tasks import squad as squad_task
from bert_tf.training import trainer
from bert_tf.configs import BertConfig
from tests.conftest import shared_path
from tests.test_run_pretraining import PREDICTIONS, SAMPLE, SEQ, write_data

TINY = BertConfig.from_json_file(str(SAMPLE / "bert_config.json"))


def _sts_sentences(limit: int):
  """The first `limit` KorSTS training sentences (real Korean captions and news)."""
  path = shared_path("corpus_ko", "KorNLUDatasets", "KorSTS", "sts-train.tsv")
  sentences = []
  with path.open(encoding="utf-8") as f:
    for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
      sentences += [row["sentence1"], row["sentence2"]]
  return sentences[:limit]


def _masked_labels(pattern: str, max_seq_length: int, max_predictions: int) -> np.ndarray:
  """The ids of every masked position (weight 1) in the records."""
  spec = pretraining_task.feature_spec(max_seq_length, max_predictions)
  labels = []
  for record in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)):
    features = tf.io.parse_single_example(record, spec)
    weights = features["masked_lm_weights"].numpy() > 0
    labels.extend(features["masked_lm_ids"].numpy()[weights])
  return np.array(labels)


def test_every_file_of_the_data_is_checked(tmp_path):
  """A shard made with another max_seq_length is found even when it is not the first file;
  an empty shard is harmless."""
  pattern = write_data(tmp_path)
  (tmp_path / "empty.tfrecord").write_bytes(b"")
  pretraining_task.check_data_shapes(f"{tmp_path / 'empty.tfrecord'},{pattern}", SEQ,
                                     PREDICTIONS)
  longer = cpd.create_pretraining_data(cpd.DataConfig(
      input_file=str(tmp_path / "text.txt"), output_file=str(tmp_path / "long" / "train"),
      vocab_file=str(SAMPLE / "vocab.txt"), do_lower_case=False, max_seq_length=2 * SEQ,
      max_predictions_per_seq=PREDICTIONS, dupe_factor=1))["file_pattern"]
  # The files are read in sorted order: data/train-* first, then long/train-*.
  with pytest.raises(ValueError, match=rf"{tmp_path / 'long' / 'train'}-00000-of-00001 was made "
                     rf"with max_seq_length={2 * SEQ}, max_predictions_per_seq={PREDICTIONS} but "
                     rf"the flags say --max_seq_length={SEQ}"):
    pretraining_task.check_data_shapes(f"{pattern},{longer}", SEQ, PREDICTIONS)


def test_learns_masked_words_of_held_out_korean_text(tmp_path):
  sentences = _sts_sentences(2000)
  documents = ["\n".join(sentences[i:i + 10]) for i in range(0, len(sentences), 10)]
  split = len(documents) * 9 // 10
  (tmp_path / "train.txt").write_text("\n\n".join(documents[:split]) + "\n")
  (tmp_path / "eval.txt").write_text("\n\n".join(documents[split:]) + "\n")
  vocab_file = str(tmp_path / "vocab.txt")
  build_vocab.write_vocab(build_vocab.learn_vocab(
      (tmp_path / "train.txt").read_text().splitlines(), 500, False), vocab_file)
  seq, predictions = 32, 5
  patterns = {}
  for name in ("train", "eval"):
    patterns[name] = cpd.create_pretraining_data(cpd.DataConfig(
        input_file=str(tmp_path / f"{name}.txt"), output_file=str(tmp_path / name / "data"),
        vocab_file=vocab_file, do_lower_case=False, max_seq_length=seq,
        max_predictions_per_seq=predictions, dupe_factor=2))["file_pattern"]
  config = BertConfig(vocab_size=len(tokenization.load_vocab(vocab_file)), hidden_size=64,
                      num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                      max_position_embeddings=seq)
  train_config = trainer.TrainConfig(output_dir=str(tmp_path / "out"), train_batch_size=32,
                                     num_train_steps=200, learning_rate=5e-3,
                                     num_warmup_steps=20, iterations_per_loop=100,
                                     save_checkpoints_steps=1000)
  strategy = tf.distribute.get_strategy()
  run = pretraining_task.make_trainer(
      strategy, config, pretraining_task.PretrainingData(patterns["train"], seq, predictions),
      train_config, None, seed=1)
  run.train()
  metrics = pretraining_task.evaluate(strategy, run.model, patterns["eval"], seq, predictions,
                                      eval_batch_size=32, max_eval_steps=100)
  # Always answering the commonest masked token of the held-out text scores this:
  labels = _masked_labels(patterns["eval"], seq, predictions)
  commonest_rate = collections.Counter(labels.tolist()).most_common(1)[0][1] / len(labels)
  # Measured: 0.155 against 0.058 after 200 steps.
  assert metrics["masked_lm_accuracy"] > 2 * commonest_rate, (metrics, commonest_rate)


@dataclasses.dataclass
class Pretrained:
  run: trainer.Trainer
  exports: dict
  pattern: str


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  """A tiny model pretrained for 20 steps (checkpoints at 10 and 20) and its export."""
  tmp = tmp_path_factory.mktemp("pretrained")
  pattern = write_data(tmp)
  output_dir = str(tmp / "out")
  train_config = trainer.TrainConfig(output_dir=output_dir, train_batch_size=16,
                                     num_train_steps=20, learning_rate=2e-3,
                                     iterations_per_loop=10, save_checkpoints_steps=10)
  run = pretraining_task.make_trainer(
      tf.distribute.get_strategy(), TINY, pretraining_task.PretrainingData(pattern, SEQ,
                                                                           PREDICTIONS),
      train_config, None, seed=1)
  run.train()
  exports = pretraining_task.export_model(output_dir, run.manager.latest_checkpoint,
                                          str(SAMPLE / "bert_config.json"),
                                          str(SAMPLE / "vocab.txt"))
  return Pretrained(run, exports, pattern)


def _assert_same_encoder(model: tf_keras.Model, expected: tf_keras.Model) -> None:
  assert len(model.encoder.weights) == len(expected.encoder.weights) > 10
  for got, want in zip(model.encoder.weights, expected.encoder.weights):
    np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=got.name)


@pytest.mark.parametrize("fmt", ["tf1", "tf2", "hf"])
def test_export_initializes_squad_fine_tuning(pretrained, fmt, tmp_path):
  run, exports = pretrained.run, pretrained.exports
  init_checkpoint = exports[fmt]
  vocab_file, config_file = checkpoints.resolve_model_files(init_checkpoint, None, None)
  tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=False)
  metadata = squad.prepare_features(str(SAMPLE / "squad_sample.json"), tokenizer, vocab_file,
                                    64, 32, 16, True, False, output_dir=str(tmp_path),
                                    num_workers=1)
  # A learning rate of 0 leaves the weights as loaded: they must be the pretrained encoder's.
  train_config = trainer.TrainConfig(output_dir=str(tmp_path), train_batch_size=8,
                                     num_train_steps=1, learning_rate=0.0)
  model = squad_task.train(tf.distribute.get_strategy(), BertConfig.from_json_file(config_file),
                           metadata, train_config, init_checkpoint, seed=2)
  _assert_same_encoder(model, run.model)


def test_export_initializes_classifier_fine_tuning(pretrained, tmp_path):
  run, exports = pretrained.run, pretrained.exports
  task = classifier_task.TaskConfig(task_name="nsmc", data_dir=str(SAMPLE / "classifier" / "nsmc"),
                                    output_dir=str(tmp_path), max_seq_length=32, do_train=True,
                                    train_batch_size=16, num_train_epochs=0.1)

  def make_train_config(num_train_steps):
    return trainer.TrainConfig(output_dir=str(tmp_path), train_batch_size=16,
                               num_train_steps=num_train_steps, learning_rate=0.0)

  tokenizer = tokenization.FullTokenizer(str(SAMPLE / "vocab.txt"), do_lower_case=False)
  classifier_task.run(task, TINY, tokenizer, exports["hf"], tf.distribute.get_strategy(),
                      make_train_config)
  fine_tuned = modeling.build_model(modeling.BertModel(TINY))
  checkpoints.load_init_checkpoint(fine_tuned, str(tmp_path))
  _assert_same_encoder(fine_tuned, run.model)


@pytest.mark.parametrize("fmt", ["tf1", "hf"])
def test_continued_pretraining_starts_from_an_export_with_its_heads(pretrained, fmt, tmp_path):
  train_config = trainer.TrainConfig(output_dir=str(tmp_path), train_batch_size=16,
                                     num_train_steps=1, learning_rate=2e-3)
  run = pretraining_task.make_trainer(
      tf.distribute.get_strategy(), TINY,
      pretraining_task.PretrainingData(pretrained.pattern, SEQ, PREDICTIONS), train_config,
      pretrained.exports[fmt], seed=2)
  for part in ("encoder", "masked_lm", "next_sentence"):
    variables = getattr(run.model, part).trainable_variables
    expected = getattr(pretrained.run.model, part).trainable_variables
    assert len(variables) == len(expected) > 0
    for got, want in zip(variables, expected):
      np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=f"{part}: {got.name}")


def test_export_is_redone_for_a_newer_checkpoint_only(pretrained, tmp_path, monkeypatch):
  run = pretrained.run
  output_dir = str(tmp_path)
  first, second = run.manager.checkpoints[-2:]
  files = (str(SAMPLE / "bert_config.json"), str(SAMPLE / "vocab.txt"))
  # An export that dies half-way leaves no directory that a later run would take as done.
  real_convert = pretraining_task.convert_checkpoint.convert_checkpoint

  def convert_then_crash(source, target, fmt, *args):
    real_convert(source, target, fmt, *args)
    if fmt == "hf":
      raise KeyboardInterrupt("killed")

  monkeypatch.setattr(pretraining_task.convert_checkpoint, "convert_checkpoint",
                      convert_then_crash)
  with pytest.raises(KeyboardInterrupt):
    pretraining_task.export_model(output_dir, first, *files)
  assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["tf1", "tf2"]
  monkeypatch.setattr(pretraining_task.convert_checkpoint, "convert_checkpoint", real_convert)
  exported = pretraining_task.export_model(output_dir, first, *files)
  assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["hf", "tf1", "tf2"]
  record = tmp_path / "export" / "tf1" / pretraining_task.EXPORT_SOURCE
  written = record.stat().st_mtime_ns
  pretraining_task.export_model(output_dir, first, *files)  # current: kept as it is
  assert record.stat().st_mtime_ns == written
  pretraining_task.export_model(output_dir, second, *files)  # newer: replaced
  assert io_utils.read_json(str(record)) == {"checkpoint": second}
  assert tf.train.load_variable(exported["tf1"] + "/bert_model.ckpt",
                                "bert/pooler/dense/bias").shape == (TINY.hidden_size,)


def test_best_model_is_always_complete_and_survives_a_crash(pretrained, tmp_path, monkeypatch):
  train_config = trainer.TrainConfig(output_dir=str(tmp_path), train_batch_size=16,
                                     num_train_steps=30, learning_rate=2e-3,
                                     iterations_per_loop=10, save_checkpoints_steps=10)

  def resume():
    return pretraining_task.make_trainer(
        tf.distribute.get_strategy(), TINY,
        pretraining_task.PretrainingData(pretrained.pattern, SEQ, PREDICTIONS), train_config,
        None, seed=1)

  losses = {10: 3.0, 20: 2.0, 30: 1.0}
  first = resume()
  real_write = io_utils.write_json_atomic

  def crash_on_second_best(path, obj, *args):
    if isinstance(obj, dict) and obj.get("step") == 20:
      raise KeyboardInterrupt("killed after the checkpoint, before best.json")
    real_write(path, obj, *args)

  monkeypatch.setattr(pretraining_task.io_utils, "write_json_atomic", crash_on_second_best)
  with pytest.raises(KeyboardInterrupt):
    pretraining_task.train_keeping_best(first, lambda: losses[first.step])
  best = pretraining_task.read_best(str(tmp_path))
  assert best["step"] == 10 and best["loss"] == 3.0
  tf.train.Checkpoint(model=first.model).read(best["checkpoint"]).assert_consumed()
  monkeypatch.setattr(pretraining_task.io_utils, "write_json_atomic", real_write)
  second = resume()
  history = pretraining_task.train_keeping_best(second, lambda: losses[second.step])
  # Step 20 was saved but never scored: the resumed run scores it first, as it would have.
  assert history == [{"step": 20, "loss": 2.0}, {"step": 30, "loss": 1.0}]
  best = pretraining_task.read_best(str(tmp_path))
  assert best["step"] == 30
  assert sorted(p.name for p in (tmp_path / "best").iterdir()) == [
      "best.json", "ckpt-30.data-00000-of-00001", "ckpt-30.index", "scores.json"]
  assert io_utils.read_json(str(tmp_path / "best" / "scores.json")) == [10, 20, 30]
