"""SQuAD dev prediction by length buckets (--length_buckets, the default) vs padded windows.

  python -m benchmarks.bucketed_prediction [--articles 1] [--config configs/bert_mini.json]
      [--repeats 1]

Converts the first --articles articles of SQuAD 1.1 dev (uncased vocab, 384 / stride 128 /
query 64, as run_squad), builds a span labeler of --config's sizes (random weights: the work
is the same as a trained model's), and times run_squad's prediction both ways in this process
(tracing included, as in a run), each round running both in turn: padded, every window at 384
(google-research's), and bucketed, each window at the shortest of 4 static lengths that holds
it. Then checks the outputs: every window's logits over its own tokens equal to the bit, and
predictions.json, nbest_predictions.json and the v2 null odds compared question by question
(the n-best differs only where padding positions ranked among a window's 20 best logits, which
google-research counts and then skips).
Merged into benchmarks/results.json under "bucketed_prediction".
"""

import argparse
import os
import tempfile
from typing import Any, Dict, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from benchmarks import common  # noqa: E402
from bert_tf import modeling, tokenization  # noqa: E402
from bert_tf.checkpoints import configs  # noqa: E402
from bert_tf.data import length_buckets, squad_predictions, squad_records  # noqa: E402
from bert_tf.io import files as io_files  # noqa: E402
from bert_tf.tasks import squad as squad_task  # noqa: E402

DEV = common.DATA / "squad" / "dev-v1.1.json"
VOCAB = common.DATA / "vocabs" / "bert-base-uncased-vocab.txt"
BATCH = 32


def compare_answers(examples, features, padded, bucketed) -> Dict[str, Any]:
  """How many questions get the same predictions, n-best lists and null odds both ways."""
  figures: Dict[str, Any] = {}
  for version_2 in (False, True):
    ours, theirs = [squad_predictions.compute_predictions(examples, features, results, 20, 30,
                                                          True, version_2)
                    for results in (bucketed, padded)]
    name = "v2" if version_2 else "v1"
    figures[f"{name}_same_predictions"] = sum(ours[0][k] == theirs[0][k] for k in ours[0])
    figures[f"{name}_same_nbest"] = sum(ours[1][k] == theirs[1][k] for k in ours[1])
    if version_2:
      figures["v2_same_null_odds"] = sum(ours[2][k] == theirs[2][k] for k in ours[2])
  return figures


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--articles", type=int, default=1)
  parser.add_argument("--config", default=str(common.ROOT / "configs" / "bert_mini.json"))
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--length_buckets", type=int, default=length_buckets.DEFAULT_NUM_BUCKETS)
  args = parser.parse_args(argv)
  missing = common.data_missing([str(DEV), str(VOCAB)])
  if missing:
    raise SystemExit(missing)
  dataset = io_files.read_json(str(DEV))
  dataset["data"] = dataset["data"][:args.articles]
  config = configs.BertConfig.from_json_file(args.config)
  tf_keras.utils.set_random_seed(1)
  model = modeling.build_model(modeling.BertSpanLabeler(config))
  strategy = tf.distribute.get_strategy()
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "dev.json")
    io_files.write_json_atomic(path, dataset)
    meta = squad_records.prepare_features(path, tokenization.FullTokenizer(str(VOCAB), True),
                                          str(VOCAB), 384, 128, 64, False, False, output_dir=tmp)
    examples, features = squad_records.load_eval_data(tmp)
    # Each call traces its own tf.functions (1 padded shape, up to 4 bucket shapes), as a run
    # does: the timings include that.
    outputs: Dict[str, Any] = {}
    seconds = common.median_seconds(dict(
        padded=lambda: outputs.update(padded=squad_task.predict(strategy, model, meta, BATCH)),
        bucketed=lambda: outputs.update(bucketed=squad_task.predict(
            strategy, model, meta, BATCH, args.length_buckets))), args.repeats)
  padded = {r.unique_id: r for r in outputs["padded"]}
  lengths = np.array([len(f.tokens) for f in features])
  same_logits = all(
      np.array_equal(r.start_logits, padded[r.unique_id].start_logits[:len(r.start_logits)]) and
      np.array_equal(r.end_logits, padded[r.unique_id].end_logits[:len(r.end_logits)])
      for r in outputs["bucketed"])
  entry = dict(
      what="run_squad's prediction on SQuAD 1.1 dev windows (seq 384), length buckets vs padded",
      command="python -m benchmarks.bucketed_prediction " + " ".join(argv or []),
      machine=common.machine_info(), config=os.path.basename(args.config),
      questions=len(examples), windows=len(features), batch=BATCH,
      bucket_lengths=length_buckets.choose_lengths(lengths, 384, args.length_buckets),
      useful_share_padded=round(length_buckets.useful_share(lengths, [384]), 4),
      useful_share_bucketed=round(length_buckets.useful_share(
          lengths, length_buckets.choose_lengths(lengths, 384, args.length_buckets)), 4),
      median_seconds={k: round(v, 2) for k, v in seconds.items()},
      speedup=round(seconds["padded"] / seconds["bucketed"], 2),
      window_logits_identical=same_logits,
      **compare_answers(examples, features, list(padded.values()), outputs["bucketed"]))
  common.merge_results("bucketed_prediction", entry)
  print(entry, flush=True)
  return entry


if __name__ == "__main__":
  main()
