"""Useful-token share: of the positions a model computes, the share that hold a real token.

  python -m benchmarks.useful_tokens [--sets nsmc,cola,squad,korquad,pretraining]
      [--dupe_factor 2]

Measured on the real data in ../shared/data with the vocab its users use: NSMC-like training
reviews (KcBERT's vocab, cased, seq 128), CoLA's in-domain training sentences (uncased, 128),
SQuAD 1.1 dev windows and KorQuAD-like windows (benchmarks/korquad_features.py, 10,000
questions; both 384 / stride 128 / query 64), each three ways:
  padded   every example at max_seq_length, as google-research batches them;
  buckets  --length_buckets's evaluation and prediction (data/length_buckets.py, 4 lengths);
  packed   --pack_sequences's training rows (data/packing.py, best fit).
And the instances of create_pretraining_data on corpus_ko (benchmarks/pretraining_data.py's
text, KcBERT vocab, seq 128, google-research's flags otherwise) with static and dynamic masking,
with next-sentence prediction and masked-LM only: how full google-research's instances already
are; and run_pretraining's packed rows of them (data/packed_pretraining.py): their token share
and the share of their masked-LM slots that hold a prediction (unpacked: 20 an instance; dynamic
masking: the predictions its rule gives). Merged into benchmarks/results.json under
"useful_tokens".
"""

import argparse
import os
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common, korquad_features, pretraining_data  # noqa: E402
from benchmarks import tokenization as tokenization_benchmark  # noqa: E402
from bert_tf import tokenization  # noqa: E402
from bert_tf.data import classifier as classifier_data  # noqa: E402
from bert_tf.data import length_buckets, packed_pretraining, packing, pipeline  # noqa: E402
from bert_tf.data import squad_examples, squad_features  # noqa: E402
from bert_tf.io import files as io_files  # noqa: E402

VOCABS = common.DATA / "vocabs"
SETS = ("nsmc", "cola", "squad", "korquad", "pretraining")
PRETRAINING_MODES = {"static masking, NSP": ["--masking=static"],
                     "dynamic masking, NSP": ["--masking=dynamic"],
                     "static masking, MLM only": ["--masking=static",
                                                  "--next_sentence_prediction=false"],
                     "dynamic masking, MLM only": ["--masking=dynamic",
                                                   "--next_sentence_prediction=false"]}


def shares(lengths: np.ndarray, seq_length: int) -> Dict[str, Any]:
  """The padded, length-bucketed and packed shares of examples of these lengths."""
  buckets = length_buckets.choose_lengths(lengths, seq_length)
  rows = packing.pack_lengths(lengths, seq_length, seed=12345)
  return dict(examples=len(lengths), seq_length=seq_length,
              mean_length=round(float(np.mean(lengths)), 1),
              padded=round(length_buckets.useful_share(lengths, [seq_length]), 4),
              buckets=round(length_buckets.useful_share(lengths, buckets), 4),
              bucket_lengths=buckets,
              packed=round(float(np.sum(lengths)) / (len(rows) * seq_length), 4),
              examples_per_packed_row=round(len(lengths) / len(rows), 2))


def classifier_lengths(task: str, data_dir: str, vocab: str, lowercase: bool,
                       seq_length: int = 128) -> np.ndarray:
  """The token counts of a classifier task's training examples, as run_classifier writes them."""
  processor = classifier_data.get_processor(task)
  tokenizer = tokenization.FullTokenizer(vocab, do_lower_case=lowercase)
  labels = processor.get_labels()
  return np.array([sum(classifier_data.convert_single_example(
      i, example, labels, seq_length, tokenizer).input_mask)
                   for i, example in enumerate(processor.get_train_examples(data_dir))])


def window_lengths(path: str, vocab: str, lowercase: bool, seq_length: int = 384) -> np.ndarray:
  """The token counts of a SQuAD-format file's windows (stride 128, query 64), as run_squad's."""
  examples = squad_examples.read_squad_examples(path, False, False)
  lengths: List[int] = []
  squad_features.convert_examples_to_features(
      examples, tokenization.FullTokenizer(vocab, do_lower_case=lowercase), seq_length, 128, 64,
      False, lambda feature: lengths.append(len(feature.tokens)))
  return np.array(lengths)


def korquad_lengths() -> np.ndarray:
  dataset = korquad_features.korquad_like(tokenization_benchmark.korean_texts(), 10000)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "korquad_like.json")
    io_files.write_json_atomic(path, dataset)
    return window_lengths(path, str(VOCABS / "kcbert-base-vocab.txt"), False)


def instance_lengths(pattern: str) -> np.ndarray:
  """The token counts (sum of input_mask) of pretraining instances."""
  parser = pipeline.example_parser(pipeline.int_features(dict(input_mask=128)))
  dataset = pipeline.evaluation_dataset(pattern, parser, 4096)
  return np.concatenate([batch["input_mask"].numpy().sum(axis=1) for batch in dataset])


def packed_pretraining_shares(pattern: str, lengths: np.ndarray, next_sentence: bool,
                              masked_lm_prob: Optional[float], output_file: str
                              ) -> Dict[str, Any]:
  """The shares of run_pretraining's packed rows of the instances (seq 128, 20 predictions an
  instance, seed 12345; masked_lm_prob for dynamically masked ones)."""
  packed = packed_pretraining.prepare_packed(sorted(tf.io.gfile.glob(pattern)), 128, 20,
                                             next_sentence, 12345, output_file, masked_lm_prob)
  if masked_lm_prob:
    predictions = float(packed_pretraining.num_to_predict(lengths, masked_lm_prob, 20).sum())
  else:
    parser = pipeline.example_parser({"masked_lm_weights": tf.io.FixedLenFeature([20],
                                                                               tf.float32)})
    predictions = sum(float(batch["masked_lm_weights"].numpy().sum())
                      for batch in pipeline.evaluation_dataset(pattern, parser, 4096))
  return dict(packed=round(float(lengths.sum()) / (packed.num_rows * 128), 4),
              instances_per_packed_row=round(packed.examples_per_row, 2),
              max_instances_per_row=packed.max_examples_per_row,
              max_predictions_per_row=packed.max_predictions_per_row,
              prediction_slots_used_unpacked=round(predictions / (len(lengths) * 20), 4),
              prediction_slots_used_packed=round(
                  predictions / (packed.num_rows * packed.max_predictions_per_row), 4))


def pretraining_shares(dupe_factor: int) -> Dict[str, Any]:
  """The padded share of create_pretraining_data's instances in each mode, on corpus_ko, and
  the packed one."""
  figures: Dict[str, Any] = {}
  with tempfile.TemporaryDirectory() as tmp:
    text = os.path.join(tmp, "corpus_ko.txt")
    pretraining_data.write_korean_corpus(text)
    for name, flags in PRETRAINING_MODES.items():
      output = os.path.join(tmp, name.replace(" ", "_").replace(",", ""), "instances")
      pretraining_data.run_ours(text, output, dupe_factor, num_workers=1, more_flags=flags)
      lengths = instance_lengths(f"{output}-*")
      figures[name] = dict(instances=len(lengths), mean_length=round(float(lengths.mean()), 1),
                           padded=round(length_buckets.useful_share(lengths, [128]), 4),
                           short_instances=round(float(np.mean(lengths < 64)), 4))
      figures[name].update(packed_pretraining_shares(
          f"{output}-*", lengths, "--next_sentence_prediction=false" not in flags,
          0.15 if "--masking=dynamic" in flags else None, f"{output}_packed"))
      print(f"pretraining, {name}: {figures[name]}", flush=True)
  return figures


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sets", default=",".join(SETS), help=f"some of {', '.join(SETS)}")
  parser.add_argument("--dupe_factor", type=int, default=2,
                      help="create_pretraining_data's (the share does not depend on it)")
  args = parser.parse_args(argv)
  names = [name.strip() for name in args.sets.split(",") if name.strip()]
  if set(names) - set(SETS):
    parser.error(f"--sets={args.sets}: expected some of {', '.join(SETS)}.")
  measures: Dict[str, Callable[[], Dict[str, Any]]] = dict(
      nsmc=lambda: shares(classifier_lengths("nsmc", str(common.DATA / "nsmc_like"),
                                             str(VOCABS / "kcbert-base-vocab.txt"), False), 128),
      cola=lambda: shares(classifier_lengths("cola", str(common.DATA / "cola"),
                                             str(VOCABS / "bert-base-uncased-vocab.txt"), True),
                          128),
      squad=lambda: shares(window_lengths(str(common.DATA / "squad" / "dev-v1.1.json"),
                                          str(VOCABS / "bert-base-uncased-vocab.txt"), True),
                           384),
      korquad=lambda: shares(korquad_lengths(), 384),
      pretraining=lambda: pretraining_shares(args.dupe_factor))
  entry = common.read_results().get("useful_tokens", {})
  entry.update(command="python -m benchmarks.useful_tokens " + " ".join(argv or []),
               machine=common.machine_info())
  for name in names:
    entry[name] = measures[name]()
    print(f"{name}: {entry[name]}", flush=True)
  common.merge_results("useful_tokens", entry)
  return entry


if __name__ == "__main__":
  main()
