"""SavedModel export: raw-text signatures equal the scripts' Python path, served in a fresh process.

Each parity test exports a model, serves it with tests/serving_client.py (a new Python with only
tensorflow and tensorflow_text imported, bert_tf not importable) and compares with what
run_classifier / run_squad compute from the same weights: class probabilities and labels
(test_results.tsv), answers (predictions.json) and the int32-feature logits.
"""

import json
import logging
import pathlib
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from absl import logging as absl_logging

from bert_tf import modeling, tokenization
from bert_tf.checkpoints import formats, configs
from bert_tf.checkpoints.configs import BertConfig
from bert_tf.data import classifier as classifier_data
from bert_tf.data import squad_examples, squad_features, squad_predictions
from bert_tf.serving import export
from bert_tf.tasks import classifier_metrics

import serving_client
from conftest import PROJECT_ROOT, shared_path
from tests import processes

TINY = configs.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=16, max_position_embeddings=16)
SEQ_LENGTH = 12
SAMPLE = PROJECT_ROOT / "sample_data"
SAMPLE_CLASSIFIER = SAMPLE / "classifier"
FEATURE_NAMES = export.INPUT_NAMES


def _inputs(batch):
  rng = np.random.default_rng(batch)
  mask = np.ones((batch, SEQ_LENGTH), np.int32)
  mask[0, 7:] = 0
  return dict(input_ids=tf.constant(rng.integers(0, 30, (batch, SEQ_LENGTH)), tf.int32),
              input_mask=tf.constant(mask),
              segment_ids=tf.constant(rng.integers(0, 2, (batch, SEQ_LENGTH)), tf.int32))


@pytest.mark.parametrize("model_class,outputs", [
    (lambda: modeling.BertSpanLabeler(TINY), ["end_logits", "start_logits"]),
    (lambda: modeling.BertClassifier(TINY, num_labels=3), ["logits"]),
])
def test_reloaded_signature_gives_the_same_logits(tmp_path, model_class, outputs):
  model = modeling.build_model(model_class())
  export_dir = export.export_saved_model(model, str(tmp_path / "export"), SEQ_LENGTH)
  serve = tf.saved_model.load(export_dir).signatures["serving_default"]
  for batch in (1, 3):  # The batch dimension is dynamic.
    inputs = _inputs(batch)
    served = serve(**inputs)
    assert sorted(served) == outputs
    expected = model(inputs, training=False)
    for name in outputs:
      np.testing.assert_allclose(served[name].numpy(), expected[name].numpy(), rtol=1e-5,
                                 atol=1e-6)
  assert [p.name for p in tmp_path.iterdir()] == ["export"]  # No temporary directory left.


def test_refuses_an_existing_directory(tmp_path):
  model = modeling.build_model(modeling.BertSpanLabeler(TINY))
  (tmp_path / "export").mkdir()
  with pytest.raises(ValueError, match="already exists"):
    export.export_saved_model(model, str(tmp_path / "export"), SEQ_LENGTH)


def test_info_logs_still_reach_the_caller_after_an_export(tmp_path, caplog):
  model = modeling.build_model(modeling.BertSpanLabeler(TINY))
  export.export_saved_model(model, str(tmp_path / "export"), SEQ_LENGTH)
  with caplog.at_level(logging.INFO):
    absl_logging.info("after the export")
  assert "after the export" in caplog.text


# ---------------------------------------------------------------------------------------------
# Training runs and the Python path


def _model(config: BertConfig, label_list: Optional[Sequence[str]], seed: int = 0,
           init_checkpoint: Optional[str] = None) -> tf_keras.Model:
  """A seeded model with random weights (the encoder's from `init_checkpoint` when given)."""
  tf_keras.utils.set_random_seed(seed)
  model = modeling.build_model(modeling.BertClassifier(config, len(label_list)) if label_list
                               else modeling.BertSpanLabeler(config))
  if init_checkpoint:
    formats.load_init_checkpoint(model, init_checkpoint)
  return model


def _make_run(directory: pathlib.Path, model: tf_keras.Model, config_file: pathlib.Path,
              vocab_file: pathlib.Path, run_flags: Dict, label_list: Optional[List[str]] = None,
              steps: int = 2) -> str:
  """A training output_dir as the scripts leave it; returns its latest checkpoint."""
  directory.mkdir(parents=True, exist_ok=True)
  shutil.copy(config_file, directory / "bert_config.json")
  shutil.copy(vocab_file, directory / "vocab.txt")
  (directory / "run_flags.json").write_text(json.dumps(run_flags))
  state = {"history": [], "extras": {"label_list": label_list} if label_list else {}}
  (directory / "training_state.json").write_text(json.dumps(state))
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(directory), 3)
  for _ in range(steps):
    path = manager.save()
  return path


def _python_classifier(model, vocab_file, do_lower_case, max_seq_length, examples, label_list):
  """run_classifier's path: convert_single_example, the model, softmax (test_results.tsv)."""
  tokenizer = tokenization.FullTokenizer(str(vocab_file), do_lower_case)
  features = [classifier_data.convert_single_example(10, example, label_list, max_seq_length,
                                                     tokenizer) for example in examples]
  inputs = {name: tf.constant([getattr(f, name) for f in features]) for name in FEATURE_NAMES}
  logits = model(inputs, training=False)["logits"].numpy()
  probabilities = classifier_metrics.softmax(logits)
  return dict(inputs={k: v.numpy().tolist() for k, v in inputs.items()}, logits=logits,
              probabilities=probabilities,
              labels=[label_list[i] for i in probabilities.argmax(axis=1)])


def _python_squad(model, vocab_file, do_lower_case, settings, input_file, tmp_path, limit=None):
  """run_squad's path: features, the model, write_predictions (predictions.json)."""
  examples = squad_examples.read_squad_examples(str(input_file), is_training=False)[:limit]
  features: List[squad_features.InputFeatures] = []
  squad_features.convert_examples_to_features(
      examples, tokenization.FullTokenizer(str(vocab_file), do_lower_case),
      settings.max_seq_length, settings.doc_stride, settings.max_query_length, False,
      features.append)
  inputs = {name: np.array([getattr(f, name) for f in features], np.int32)
            for name in FEATURE_NAMES}
  logits = {"start_logits": [], "end_logits": []}
  for begin in range(0, len(features), 32):
    batch = model({k: tf.constant(v[begin:begin + 32]) for k, v in inputs.items()},
                  training=False)
    for name in logits:
      logits[name].append(batch[name].numpy())
  logits = {name: np.concatenate(values) for name, values in logits.items()}
  # Over each window's own tokens, as run_squad's default (--length_buckets) prediction gives them.
  results = [squad_predictions.RawResult(f.unique_id, logits["start_logits"][i][:len(f.tokens)],
                                         logits["end_logits"][i][:len(f.tokens)])
             for i, f in enumerate(features)]
  v2 = settings.version_2_with_negative
  predictions = squad_predictions.write_predictions(
      examples, features, results, settings.n_best_size, settings.max_answer_length,
      do_lower_case, str(tmp_path / "predictions.json"), str(tmp_path / "nbest.json"),
      str(tmp_path / "null_odds.json") if v2 else None, v2, settings.null_score_diff_threshold)
  return examples, inputs, logits, predictions


def _contexts(input_file) -> Dict[str, str]:
  """Each question id's context, from a SQuAD file."""
  data = json.loads(pathlib.Path(input_file).read_text(encoding="utf-8"))["data"]
  return {qa["id"]: paragraph["context"] for article in data
          for paragraph in article["paragraphs"] for qa in paragraph["qas"]}


def _tokenizer_differs(vocab_file, do_lower_case, texts: Sequence[str]) -> bool:
  """Whether InGraphTokenizer's ids differ from FullTokenizer's on any of `texts`."""
  full = tokenization.FullTokenizer(str(vocab_file), do_lower_case)
  in_graph = tokenization.InGraphTokenizer(str(vocab_file), do_lower_case).tokenize(
      tf.constant(list(texts))).to_list()
  return any(full.convert_tokens_to_ids(full.tokenize(text)) != ids
             for text, ids in zip(texts, in_graph))


def _check_answers(examples, predictions, contexts, served, vocab_file, do_lower_case,
                   minimum=1.0):
  """Served answers equal predictions.json on at least `minimum` of the questions, and each
  difference comes with a tokenizer difference on its question or context."""
  different = []
  for example, answer, begin, end in zip(examples, served["answer"], served["start_char"],
                                         served["end_char"]):
    context = contexts[example.qas_id]
    if answer != predictions[example.qas_id]:
      different.append(example)
    elif answer not in ("", "empty"):
      assert " ".join(squad_examples._split_context(context[begin:end])[0]) == answer
  for example in different:
    assert _tokenizer_differs(vocab_file, do_lower_case,
                              [example.question_text, contexts[example.qas_id]]), example.qas_id
  assert len(different) <= (1 - minimum) * len(examples), [e.qas_id for e in different]


# ---------------------------------------------------------------------------------------------
# Demo data


def _sample_classifier(tmp_path: pathlib.Path):
  """The sample vocab and a config whose random weights give both labels on the sample data."""
  config = BertConfig.from_json_file(str(SAMPLE_CLASSIFIER / "bert_config.json"))
  config = BertConfig(**{**config.to_dict(), "initializer_range": 0.5})
  config_file = tmp_path / "bert_config.json"
  config_file.write_text(config.to_json_string())
  return SAMPLE_CLASSIFIER / "vocab.txt", config_file, config


def _sample_texts():
  cola = classifier_data.get_processor("cola").get_dev_examples(str(SAMPLE_CLASSIFIER / "cola"))
  nsmc = classifier_data.get_processor("nsmc").get_test_examples(str(SAMPLE_CLASSIFIER / "nsmc"))
  return cola, nsmc


def _check_classifier(served, expected, num_examples):
  assert sorted(served) == ["label", "logits", "probabilities"]
  assert served["label"] == expected["labels"]
  np.testing.assert_allclose(served["probabilities"], expected["probabilities"], atol=1e-5)
  assert 0 < expected["labels"].count("1") < num_examples  # both labels occur


def test_cli_exports_a_classifier_run_that_serves_like_run_classifier(tmp_path):
  vocab_file, config_file, config = _sample_classifier(tmp_path)
  labels = ["0", "1"]
  model = _model(config, labels, seed=1)
  run_flags = {"task_name": "cola", "do_lower_case": False, "max_seq_length": 24}
  _make_run(tmp_path / "run", model, config_file, vocab_file, run_flags, labels)
  process = subprocess.run(
      [sys.executable, "-m", "bert_tf.serving.export", f"--model_dir={tmp_path / 'run'}",
       f"--output_dir={tmp_path / 'export'}"], cwd=PROJECT_ROOT, capture_output=True, text=True,
      timeout=300)
  assert process.returncode == 0, process.stderr[-3000:]
  settings = json.loads((tmp_path / "export" / export.SETTINGS_FILE).read_text())
  assert (settings["task"], settings["pair"], settings["label_names"]) == (
      "classifier", False, labels)
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
  cola, nsmc = _sample_texts()
  examples = cola + nsmc
  texts = [e.text_a for e in examples]
  response = serving_client.run([
      dict(export_dir=str(tmp_path / "export"), signature="serving_default",
           inputs=dict(text_a=texts)),
      dict(export_dir=str(tmp_path / "export"), signature="serving_default",
           inputs=dict(text_a=texts[:1])),
  ], str(tmp_path))
  assert response["modules"] == []
  _check_classifier(response["responses"][0],
                    _python_classifier(model, vocab_file, False, 24, examples, labels),
                    len(examples))
  assert response["responses"][1]["label"] == response["responses"][0]["label"][:1]  # batch 1


def test_pair_classifier_export_serves_like_run_classifier(tmp_path):
  vocab_file, _, config = _sample_classifier(tmp_path)
  labels = ["0", "1"]
  model = _model(config, labels, seed=3)
  settings = export.ServingSettings("classifier", str(vocab_file), False, 16, labels, pair=True)
  export.export_run(model, settings, str(tmp_path / "export"))
  cola, nsmc = _sample_texts()
  # Long and short texts on both sides, and an empty text_b (no second segment).
  pairs = [classifier_data.InputExample("p", a.text_a, b.text_a if i % 7 else "")
           for i, (a, b) in enumerate(zip(cola, nsmc + nsmc))]
  expected = _python_classifier(model, vocab_file, False, 16, pairs, labels)
  response = serving_client.run([
      dict(export_dir=str(tmp_path / "export"), signature="serving_default",
           inputs=dict(text_a=[e.text_a for e in pairs], text_b=[e.text_b for e in pairs])),
      dict(export_dir=str(tmp_path / "export"), signature="serving_features",
           inputs=expected["inputs"])], str(tmp_path))
  _check_classifier(response["responses"][0], expected, len(pairs))
  # float32 sums in another order: measured differences up to 1.2e-5 on logits near -4.
  np.testing.assert_allclose(response["responses"][1]["logits"], expected["logits"], rtol=1e-5,
                             atol=1e-5)


def test_squad_export_serves_like_run_squad(tmp_path):
  vocab_file = SAMPLE / "vocab.txt"
  config = BertConfig.from_json_file(str(SAMPLE / "bert_config.json"))
  model = _model(config, None, seed=2)
  input_file = SAMPLE / "squad_sample.json"
  contexts = _contexts(input_file)
  settings = export.ServingSettings("squad", str(vocab_file), False, 64, doc_stride=24,
                                    max_query_length=16, version_2_with_negative=True)
  _python_squad(model, vocab_file, False, settings, input_file, tmp_path)
  # The median null odds as the threshold: half the questions are answered.
  odds = json.loads((tmp_path / "null_odds.json").read_text())
  settings.null_score_diff_threshold = float(np.median(list(odds.values())))
  examples, inputs, logits, predictions = _python_squad(model, vocab_file, False, settings,
                                                        input_file, tmp_path)
  export.export_run(model, settings, str(tmp_path / "export"))
  response = serving_client.run([
      dict(export_dir=str(tmp_path / "export"), signature="serving_default", inputs=dict(
          question=[e.question_text for e in examples],
          context=[contexts[e.qas_id] for e in examples])),
      dict(export_dir=str(tmp_path / "export"), signature="serving_features",
           inputs={k: v.tolist() for k, v in inputs.items()})], str(tmp_path))
  assert response["modules"] == []
  served, features = response["responses"]
  assert sorted(served) == ["answer", "end_char", "score", "start_char"]
  _check_answers(examples, predictions, contexts, served, vocab_file, False)
  assert 0 < served["answer"].count("") < len(examples)
  for name in ("start_logits", "end_logits"):
    np.testing.assert_allclose(features[name], logits[name], atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Reading the run's files


def test_read_run_reads_what_the_run_recorded(tmp_path):
  config_file = SAMPLE / "bert_config.json"
  model = _model(BertConfig.from_json_file(str(config_file)), None)
  flags = {"doc_stride": 32, "max_query_length": 20, "max_seq_length": 96,
           "version_2_with_negative": True, "do_lower_case": False, "n_best_size": 7}
  latest = _make_run(tmp_path, model, config_file, SAMPLE / "vocab.txt", flags)
  run = export.read_run(str(tmp_path))
  assert (run.checkpoint, run.bert_config_file) == (latest, str(tmp_path / "bert_config.json"))
  assert run.settings == export.ServingSettings(
      "squad", str(tmp_path / "vocab.txt"), False, 96, doc_stride=32, max_query_length=20,
      version_2_with_negative=True, n_best_size=7)
  # The best checkpoint is preferred, also from a moved run directory; flags override.
  best = tf.train.Checkpoint(model=model).write(str(tmp_path / "best" / "ckpt-1"))
  (tmp_path / "best" / "best.json").write_text(json.dumps(
      {"metric": "f1", "value": 1.0, "step": 1, "checkpoint": "/elsewhere/best/ckpt-1"}))
  assert export.read_run(str(tmp_path)).checkpoint == best
  run = export.read_run(str(tmp_path), {"checkpoint": latest, "max_seq_length": 64,
                                        "doc_stride": None})
  assert (run.checkpoint, run.settings.max_seq_length, run.settings.doc_stride) == (
      latest, 64, 32)
  assert export.load_model(run).count_params() == model.count_params()


@pytest.mark.parametrize("run_flags,pair", [
    ({"task_name": "MRPC"}, True), ({"task_name": "nsmc"}, False),
    ({"task_name": "tsv", "text_b_column": "2"}, True),
    ({"task_name": "tsv", "text_b_column": None}, False)])
def test_read_run_knows_pair_tasks(tmp_path, run_flags, pair):
  (tmp_path / "run_flags.json").write_text(json.dumps({**run_flags, "max_seq_length": 8}))
  run = export.read_run(str(tmp_path), {"vocab_file": str(SAMPLE / "vocab.txt"),
                                        "bert_config_file": str(SAMPLE / "bert_config.json"),
                                        "label_names": ["a", "b"], "checkpoint": "x"})
  assert (run.settings.task, run.settings.pair) == ("classifier", pair)


def test_read_run_errors_name_the_missing_file_and_its_flag(tmp_path):
  def error(overrides=None):
    with pytest.raises((ValueError, FileNotFoundError)) as raised:
      export.read_run(str(tmp_path), overrides)
    return str(raised.value)

  assert "run_flags.json does not exist" in error() and "--task=" in error()
  assert "vocab.txt does not exist: pass --vocab_file" in error({"task": "squad"})
  files = {"vocab_file": str(SAMPLE / "vocab.txt")}
  assert "bert_config.json does not exist: pass --bert_config_file" in error(
      {"task": "squad", **files})
  files["bert_config_file"] = str(SAMPLE / "bert_config.json")
  assert "run_flags.json does not exist: pass --max_seq_length" in error({"task": "squad", **files})
  (tmp_path / "run_flags.json").write_text(json.dumps({"task_name": "cola", "max_seq_length": 8}))
  assert "training_state.json does not exist: pass --label_names" in error(files)
  assert "holds no checkpoint" in error({**files, "label_names": ["0", "1"]})
  (tmp_path / "run_flags.json").write_text(json.dumps({"max_seq_length": 8, "doc_stride": 4}))
  assert "has no 'max_query_length': pass --max_query_length" in error(files)


def test_cli_error_is_one_line(tmp_path):
  process = subprocess.run(
      [sys.executable, "-m", "bert_tf.serving.export", f"--model_dir={tmp_path}",
       f"--output_dir={tmp_path / 'export'}"], cwd=PROJECT_ROOT, capture_output=True, text=True,
      timeout=120)
  assert process.returncode == 1
  assert process.stderr.strip().splitlines()[-1].startswith("error: ")
  assert "run_flags.json does not exist" in process.stderr
  assert not (tmp_path / "export").exists()


def test_an_unwritable_output_dir_is_one_line_before_the_run_is_read(tmp_path, unwritable_dir):
  export_dir = unwritable_dir / "export"
  line = processes.user_error("-m", "bert_tf.serving.export", f"--model_dir={tmp_path}",
                              f"--output_dir={export_dir}")
  assert line.startswith(f"error: --output_dir={export_dir}: nothing can be written in ")


def test_a_pretrained_checkpoint_without_the_head_is_refused(tmp_path):
  config_file = SAMPLE / "bert_config.json"
  encoder_only = modeling.build_model(modeling.BertModel(BertConfig.from_json_file(
      str(config_file))))
  prefix = tf.train.Checkpoint(model=encoder_only).write(str(tmp_path / "ckpt-1"))
  run = export.RunFiles(export.ServingSettings("squad", str(SAMPLE / "vocab.txt"), False, 64),
                        str(config_file), prefix)
  with pytest.raises(ValueError, match="lacks the squad head"):
    export.load_model(run)


# ---------------------------------------------------------------------------------------------
# Real data (../shared/data; skipped when absent)


def _tiny_model(vocab_file, label_list: Optional[Sequence[str]], seed: int) -> tf_keras.Model:
  """A seeded random 2-layer model for a real vocab (std 0.5, so answers and labels vary)."""
  config = BertConfig(vocab_size=len(tokenization.load_vocab(str(vocab_file))), hidden_size=32,
                      num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      max_position_embeddings=512, initializer_range=0.5)
  return _model(config, label_list, seed)


def test_squad_dev_answers_equal_predictions_json(tmp_path):
  input_file = shared_path("squad", "dev-v1.1.json")
  vocab_file = str(shared_path("vocabs", "bert-base-uncased-vocab.txt"))
  model = _tiny_model(vocab_file, None, seed=4)
  settings = export.ServingSettings("squad", vocab_file, True, 384, doc_stride=128,
                                    max_query_length=64)
  examples, _, _, predictions = _python_squad(model, vocab_file, True, settings, input_file,
                                              tmp_path, limit=200)
  export.export_run(model, settings, str(tmp_path / "export"))
  contexts = _contexts(input_file)
  response = serving_client.run([dict(
      export_dir=str(tmp_path / "export"), signature="serving_default",
      inputs=dict(question=[e.question_text for e in examples],
                  context=[contexts[e.qas_id] for e in examples]))], str(tmp_path))
  served = response["responses"][0]
  _check_answers(examples, predictions, contexts, served, vocab_file, True, minimum=0.99)
  assert len(set(served["answer"])) > len(examples) // 4  # varied answers


@pytest.mark.parametrize("task,data,vocab,do_lower_case,limit", [
    ("cola", "cola", "bert-base-uncased-vocab.txt", True, None),
    ("nsmc", "nsmc_like", "kcbert-base-vocab.txt", False, 1000)])
def test_labels_equal_test_results(tmp_path, task, data, vocab, do_lower_case, limit):
  vocab_file = str(shared_path("vocabs", vocab))
  processor = classifier_data.get_processor(task)
  examples = (processor.get_dev_examples if task == "cola" else processor.get_test_examples)(
      str(shared_path(data)))[:limit]
  labels = processor.get_labels()
  model = _tiny_model(vocab_file, labels, seed=5)
  export.export_run(model, export.ServingSettings("classifier", vocab_file, do_lower_case, 64,
                                                  labels), str(tmp_path / "export"))
  response = serving_client.run([dict(
      export_dir=str(tmp_path / "export"), signature="serving_default",
      inputs=dict(text_a=[e.text_a for e in examples]))], str(tmp_path))
  _check_classifier(response["responses"][0],
                    _python_classifier(model, vocab_file, do_lower_case, 64, examples, labels),
                    len(examples))
