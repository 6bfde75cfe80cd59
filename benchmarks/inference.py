"""Serving latency: one question + paragraph, batch 1, seq 384, on the CPU.

  python -m benchmarks.inference [--config configs/bert_base_uncased.json] [--calls 20]

Builds a SQuAD span labeler with random weights from the config, exports it with
bert_tf.serving.export (SavedModel, "serving_default" signature), reloads it and times the signature
on the first question of SQuAD 1.1 dev (its first 384-token window, bert-base-uncased vocab). The
reference, timed in the same rounds, is the same Keras model's call wrapped in a tf.function
(what training and bert_tf.trainer.predict run; no SavedModel), and, for information, the eager
Keras call. Reports p50/p90 milliseconds over `--calls` calls after 3 warm-up calls, and the
host-side preprocessing of that example (tokenizing and windowing with bert_tf.squad).

From raw text to answer: the same weights exported with bert_tf.serving.export.export_run (the QA
SavedModel: in-graph tokenizing, windows and answer choice), its "serving_default" on the
question and its whole paragraph, next to the Python path run_squad takes, timed in the same
rounds: FullTokenizer + convert_examples_to_features, the same SavedModel's int32
"serving_features" signature, write_predictions (which writes its two small JSON files).
Merged into benchmarks/results.json under "inference".
"""

import argparse
import json
import os
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from benchmarks import common  # noqa: E402
from bert_tf import modeling, tokenization  # noqa: E402
from bert_tf.checkpoints.configs import BertConfig  # noqa: E402
from bert_tf.data import squad_examples, squad_features, squad_predictions
from bert_tf.serving import export  # noqa: E402

SEQ_LENGTH, DOC_STRIDE, MAX_QUERY_LENGTH = 384, 128, 64
SQUAD_DEV = common.DATA / "squad" / "dev-v1.1.json"
VOCAB = common.DATA / "vocabs" / "bert-base-uncased-vocab.txt"
WARMUP_CALLS = 3
SAVED_MODEL = "SavedModel signature"
RAW_TEXT = "SavedModel from raw text"
PYTHON_PATH = "Python path (run_squad's)"
TF_FUNCTION = "tf.function, no SavedModel"
EAGER = "Keras eager call"


def first_feature(example: squad_examples.SquadExample, tokenizer: tokenization.FullTokenizer
                  ) -> squad_features.InputFeatures:
  """The first window of `example` at seq 384, as run_squad.py makes it for prediction."""
  features: List[squad_features.InputFeatures] = []
  squad_features.convert_examples_to_features([example], tokenizer, SEQ_LENGTH, DOC_STRIDE,
                                              MAX_QUERY_LENGTH, False, features.append)
  return features[0]


def python_answer(serve_features: Callable[..., Any], example: squad_examples.SquadExample,
                  tokenizer: tokenization.FullTokenizer, output_dir: str) -> str:
  """run_squad's prediction of one example: features, the model on them, write_predictions."""
  features: List[squad_features.InputFeatures] = []
  squad_features.convert_examples_to_features([example], tokenizer, SEQ_LENGTH, DOC_STRIDE,
                                              MAX_QUERY_LENGTH, False, features.append)
  logits = serve_features(**{name: tf.constant([getattr(f, name) for f in features], tf.int32)
                             for name in export.INPUT_NAMES})
  results = [squad_predictions.RawResult(f.unique_id, logits["start_logits"][i].numpy(),
                                         logits["end_logits"][i].numpy())
             for i, f in enumerate(features)]
  return squad_predictions.write_predictions(
      [example], features, results, 20, 30, True, os.path.join(output_dir, "predictions.json"),
      os.path.join(output_dir, "nbest.json"), None)[example.qas_id]


def raw_text_calls(model: tf_keras.Model, tmp: str, question: str, context: str
                   ) -> Dict[str, Callable[[], str]]:
  """The raw-text SavedModel and the Python path, each giving the answer to `question`."""
  settings = export.ServingSettings("squad", str(VOCAB), True, SEQ_LENGTH, doc_stride=DOC_STRIDE,
                                    max_query_length=MAX_QUERY_LENGTH)
  signatures = tf.saved_model.load(export.export_run(model, settings, os.path.join(tmp, "raw"))
                                   ).signatures
  tokenizer = tokenization.FullTokenizer(str(VOCAB), do_lower_case=True)
  example = squad_examples.SquadExample("q", question, squad_examples._split_context(context)[0])
  serve, serve_features = signatures["serving_default"], signatures["serving_features"]
  return {RAW_TEXT: lambda: serve(question=tf.constant([question]), context=tf.constant(
              [context]))["answer"].numpy()[0].decode("utf-8"),
          PYTHON_PATH: lambda: python_answer(serve_features, example, tokenizer, tmp)}


def latencies(calls: Dict[str, Callable[[], Any]], count: int) -> Dict[str, List[float]]:
  """Milliseconds of each call, `count` rounds after the warm-up, every call once a round."""
  for call in calls.values():
    for _ in range(WARMUP_CALLS):
      call()
  timings: Dict[str, List[float]] = {name: [] for name in calls}
  for _ in range(count):
    for name, call in calls.items():
      started = time.perf_counter()
      call()
      timings[name].append(1000 * (time.perf_counter() - started))
  return timings


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default=str(common.ROOT / "configs" / "bert_base_uncased.json"))
  parser.add_argument("--calls", type=int, default=20)
  args = parser.parse_args(argv)
  missing = common.data_missing([SQUAD_DEV, VOCAB])
  if missing:
    raise SystemExit(missing)
  example = squad_examples.read_squad_examples(str(SQUAD_DEV), is_training=False)[0]
  paragraph = json.loads(SQUAD_DEV.read_text(encoding="utf-8"))["data"][0]["paragraphs"][0]
  tokenizer = tokenization.FullTokenizer(str(VOCAB), do_lower_case=True)
  started = time.perf_counter()
  feature = first_feature(example, tokenizer)
  preprocessing_ms = 1000 * (time.perf_counter() - started)
  inputs = {name: tf.constant([getattr(feature, name)], tf.int32) for name in export.INPUT_NAMES}

  tf_keras.utils.set_random_seed(1)
  config = BertConfig.from_json_file(args.config)
  model = modeling.build_model(modeling.BertSpanLabeler(config))
  with tempfile.TemporaryDirectory() as tmp:
    export_dir = export.export_saved_model(model, os.path.join(tmp, "export"), SEQ_LENGTH)
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    function = tf.function(lambda features: model(features, training=False))
    calls = {SAVED_MODEL: lambda: serve(**inputs)["start_logits"].numpy(),
             TF_FUNCTION: lambda: function(inputs)["start_logits"].numpy(),
             EAGER: lambda: model(inputs, training=False)["start_logits"].numpy()}
    np.testing.assert_allclose(calls[SAVED_MODEL](), calls[TF_FUNCTION](), rtol=1e-4, atol=1e-4)
    raw = raw_text_calls(model, tmp, example.question_text, paragraph["context"])
    answers = {name: call() for name, call in raw.items()}
    if len(set(answers.values())) != 1:
      raise SystemExit(f"The raw-text SavedModel and the Python path disagree: {answers}")
    timings = latencies({**calls, **raw}, args.calls)
  milliseconds = {name: dict(p50=round(float(np.percentile(values, 50)), 1),
                             p90=round(float(np.percentile(values, 90)), 1))
                  for name, values in timings.items()}
  entry = dict(
      what="batch-1 latency of one SQuAD question + paragraph (seq 384) on the CPU, random "
           "weights",
      config=os.path.basename(args.config), layers=config.num_hidden_layers,
      hidden_size=config.hidden_size, seq_length=SEQ_LENGTH, calls=args.calls,
      milliseconds=milliseconds, preprocessing_ms=round(preprocessing_ms, 1),
      question=example.question_text,
      ratio_p50=round(milliseconds[TF_FUNCTION]["p50"] / milliseconds[SAVED_MODEL]["p50"], 2),
      raw_text_ratio_p50=round(milliseconds[PYTHON_PATH]["p50"] / milliseconds[RAW_TEXT]["p50"],
                               2),
      context_chars=len(paragraph["context"]), answer=answers[RAW_TEXT],
      machine=common.machine_info())
  print(f"{os.path.basename(args.config)}, batch 1, seq {SEQ_LENGTH}, {args.calls} calls:")
  for name, values in milliseconds.items():
    print(f"  {name:<30}p50 {values['p50']:>8.1f} ms   p90 {values['p90']:>8.1f} ms")
  print(f"  preprocessing (tokenize + window) {entry['preprocessing_ms']} ms; tf.function / "
        f"SavedModel p50 {entry['ratio_p50']}x; Python path / raw text p50 "
        f"{entry['raw_text_ratio_p50']}x (answer {entry['answer']!r})")
  common.merge_results("inference", entry)
  return entry


if __name__ == "__main__":
  main()
