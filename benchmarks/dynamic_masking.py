"""Dynamic masking's cost in the input pipeline, against the static pipeline in the same run.

  python -m benchmarks.dynamic_masking [--lines 6000] [--batches 200] [--repeats 3]

Makes pretraining data of corpus_ko (benchmarks.pretraining_data's text, the KcBERT vocab,
max_seq_length 128, 20 predictions, dupe_factor 1) three ways: static masks, dynamic, and
dynamic with whole-word masking; reads each through PretrainingTask.train_dataset (the training
pipeline: shuffled, batched 32, parsed, and for dynamic data masked by data.masking) and reports
records/s over `--batches` batches after the first, the median over repeats, and each as a ratio
of the static pipeline's. Merged into benchmarks/results.json under "dynamic_masking".
"""

import argparse
import os
import tempfile
import time
from typing import Any, Dict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from benchmarks import common, pretraining_data  # noqa: E402
from bert_tf.checkpoints import model_files  # noqa: E402
from bert_tf.checkpoints.configs import BertConfig  # noqa: E402
from bert_tf.corpus import instances  # noqa: E402
from bert_tf.corpus import create_pretraining_data as cpd  # noqa: E402
from bert_tf.tasks import pretraining as pretraining_task  # noqa: E402
from bert_tf.training import trainer  # noqa: E402

BATCH_SIZE, SEQ, PREDICTIONS = 32, 128, 20
MODES = {"static": dict(masking="static"), "dynamic": dict(masking="dynamic"),
         "dynamic_whole_word": dict(masking="dynamic", do_whole_word_mask=True)}


def _task(pattern: str, output_dir: str) -> pretraining_task.PretrainingTask:
  training = trainer.TrainConfig(output_dir=output_dir, train_batch_size=BATCH_SIZE,
                                 num_train_steps=1, learning_rate=1e-4)
  config = pretraining_task.PretrainingConfig(training=training, input_file=pattern,
                                              max_seq_length=SEQ,
                                              max_predictions_per_seq=PREDICTIONS, do_train=True)
  files = model_files.ModelFiles(str(pretraining_data.VOCAB), BertConfig(vocab_size=30000), None,
                                 False, None)
  task = pretraining_task.PretrainingTask(config, files, tf.distribute.get_strategy())
  task.check()
  return task


def run(lines: int, batches: int, repeats: int) -> Dict[str, Any]:
  with tempfile.TemporaryDirectory() as tmp:
    text = os.path.join(tmp, "ko.txt")
    pretraining_data.write_korean_corpus(text, max_lines=lines)
    readers = {}
    for name, options in MODES.items():
      metadata = cpd.create_pretraining_data(instances.DataConfig(
          input_file=text, output_file=os.path.join(tmp, name, "data"),
          vocab_file=str(pretraining_data.VOCAB), do_lower_case=False, max_seq_length=SEQ,
          max_predictions_per_seq=PREDICTIONS, dupe_factor=1, num_output_shards=8, **options))
      task = _task(metadata["file_pattern"], os.path.join(tmp, name, "out"))

      def read(task=task):
        iterator = iter(task.train_dataset(tf.distribute.InputContext(), 0))
        next(iterator)
        started = time.perf_counter()
        for _ in range(batches):
          next(iterator)
        return time.perf_counter() - started
      readers[name] = read
    seconds = {name: [] for name in readers}
    for _ in range(repeats):  # in turn, so that other processes' load affects all alike
      for name, read in readers.items():
        seconds[name].append(read())
  rates = {name: batches * BATCH_SIZE / sorted(values)[len(values) // 2]
           for name, values in seconds.items()}
  return dict(records_per_second={k: round(v) for k, v in rates.items()},
              vs_static={k: round(v / rates["static"], 3) for k, v in rates.items()},
              batch_size=BATCH_SIZE, max_seq_length=SEQ, max_predictions_per_seq=PREDICTIONS,
              batches=batches, repeats=repeats, lines=lines, machine=common.machine_info())


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--lines", type=int, default=6000)
  parser.add_argument("--batches", type=int, default=200)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  missing = common.data_missing([str(pretraining_data.CORPUS), str(pretraining_data.VOCAB)])
  if missing:
    raise SystemExit(missing)
  result = run(args.lines, args.batches, args.repeats)
  print(result)
  common.merge_results("dynamic_masking", result)


if __name__ == "__main__":
  main()
