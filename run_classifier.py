"""Fine-tunes BERT to classify sentences or sentence pairs, evaluates, predicts (google flags).

  python run_classifier.py --task_name=cola --data_dir=$GLUE/CoLA --vocab_file=$BERT/vocab.txt \
    --bert_config_file=$BERT/bert_config.json --init_checkpoint=$BERT/bert_model.ckpt \
    --do_train=true --do_eval=true --do_predict=true --output_dir=/tmp/cola

Tasks: cola, mrpc, mnli, xnli (--xnli_language), nsmc, and tsv/csv for any file
(--text_a_column, --text_b_column, --label_column, --has_header, --label_list).

  python run_classifier.py --demo   # a smoke run on bundled Korean and English data, CPU, minutes
"""

import os
import time
from typing import Any, Dict

import tensorflow as tf
from absl import app, flags, logging

from bert_tf import script_flags
from bert_tf.data import classifier as classifier_data
from bert_tf.tasks import classifier_metrics
from bert_tf.tasks import classifier as classifier_task
from bert_tf.training import distribution

FLAGS = flags.FLAGS
DEMO_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_data", "classifier")

script_flags.define_model_flags()
script_flags.define_training_flags(learning_rate=5e-5, train_batch_size=32)
script_flags.define_cloud_flags()
flags.DEFINE_string("data_dir", None, "Directory with the task's files (local or gs://), e.g. "
                    "train.tsv and dev.tsv for GLUE tasks or ratings_train.txt for NSMC.")
flags.DEFINE_string("task_name", None, "The task: " + ", ".join(classifier_data.TASK_NAMES) + ".")
flags.DEFINE_integer("max_seq_length", 128, "Sequence length in WordPiece tokens, [CLS] and "
                     "[SEP] included; longer inputs are truncated, shorter ones padded.")
flags.DEFINE_bool("do_train", False, "Fine-tune on the training set.")
flags.DEFINE_bool("do_eval", False, "Evaluate on the dev set.")
flags.DEFINE_bool("do_predict", False, "Write class probabilities for the test set.")
flags.DEFINE_integer("eval_batch_size", 8, "Global batch size for evaluation.")
flags.DEFINE_integer("predict_batch_size", 8, "Global batch size for prediction.")
flags.DEFINE_bool("eval_every_epoch", True, "(bert_tf) With --do_eval, also evaluate at the end "
                  "of every epoch (training_stats.csv, training_curves.png).")
flags.DEFINE_integer("eval_steps", None, "(bert_tf) With --do_eval, evaluate every this many "
                     "steps instead of every epoch.")
flags.DEFINE_enum("keep_best_by", None, list(classifier_metrics.SELECTABLE),
                  "(bert_tf) Keep the checkpoint with the best value of this validation metric "
                  "(in OUTPUT_DIR/best/) and evaluate/predict with it. Needs --do_eval.")
flags.DEFINE_integer("early_stopping_patience", 0, "(bert_tf) Stop after this many evaluations "
                     "in a row without a better --keep_best_by metric (0: never stop early).")
flags.DEFINE_string("xnli_language", "zh", "(bert_tf) XNLI language code (any in the files).")
flags.DEFINE_bool("mnli_mismatched", False, "(bert_tf) MNLI: evaluate and predict on the "
                  "mismatched dev/test sets instead of the matched ones.")
flags.DEFINE_string("text_a_column", "0", "(bert_tf) tsv/csv: the first sentence's column, as "
                    "an index from 0 or (with --has_header) a header name.")
flags.DEFINE_string("text_b_column", None, "(bert_tf) tsv/csv: the second sentence's column "
                    "for pair tasks; unset for single sentences.")
flags.DEFINE_string("label_column", "1", "(bert_tf) tsv/csv: the label's column; a test file "
                    "may lack it.")
flags.DEFINE_bool("has_header", False, "(bert_tf) tsv/csv: the first row is a header.")
flags.DEFINE_list("label_list", None, "(bert_tf) tsv/csv: the labels, in order (default: the "
                  "sorted labels of train.tsv/train.csv).")
flags.DEFINE_bool("demo", False, "(bert_tf) Smoke run on the bundled sample data: a tiny model "
                  "trained from scratch on CPU, on a Korean NSMC-like and an English CoLA-like "
                  "set. Not a benchmark.")

# Flags that change the weights training ends with; see script_flags.check_output_dir.
TRAINING_FLAGS = (*script_flags.TRAINING_FLAGS, "num_train_epochs", "warmup_proportion",
                  "task_name", "data_dir", "max_seq_length", "xnli_language", "text_a_column",
                  "text_b_column", "label_column", "has_header", "label_list", "keep_best_by",
                  "early_stopping_patience")
# Task -> epochs: word order (CoLA-like) takes a model trained from scratch longer to learn.
DEMO_TASKS = {"nsmc": 6.0, "cola": 20.0}
DEMO_FLAGS = dict(
    vocab_file=os.path.join(DEMO_DATA, "vocab.txt"),
    bert_config_file=os.path.join(DEMO_DATA, "bert_config.json"),
    output_dir="demo_output/classifier", do_train=True, do_eval=True, do_predict=True,
    max_seq_length=48, train_batch_size=16, eval_batch_size=16, predict_batch_size=16,
    learning_rate=1e-3, iterations_per_loop=50, save_checkpoints_steps=1000)


def task_config(task_name: str, data_dir: str, output_dir: str) -> classifier_task.TaskConfig:
  """The TaskConfig the flags describe, for one task (the demo runs two)."""
  return classifier_task.TaskConfig(
      task_name=task_name, data_dir=data_dir, output_dir=output_dir,
      max_seq_length=FLAGS.max_seq_length, do_train=FLAGS.do_train, do_eval=FLAGS.do_eval,
      do_predict=FLAGS.do_predict, train_batch_size=FLAGS.train_batch_size,
      eval_batch_size=FLAGS.eval_batch_size, predict_batch_size=FLAGS.predict_batch_size,
      num_train_epochs=FLAGS.num_train_epochs, seed=FLAGS.seed,
      eval_every_epoch=FLAGS.eval_every_epoch, eval_steps=FLAGS.eval_steps,
      keep_best_by=FLAGS.keep_best_by, early_stopping_patience=FLAGS.early_stopping_patience,
      xnli_language=FLAGS.xnli_language, mnli_mismatched=FLAGS.mnli_mismatched,
      table=classifier_data.TableFormat(
          text_a_column=FLAGS.text_a_column, text_b_column=FLAGS.text_b_column,
          label_column=FLAGS.label_column, has_header=FLAGS.has_header,
          label_list=FLAGS.label_list))


def report(results: Dict[str, Any], output_dir: str) -> None:
  """Prints the per-epoch table, the final metrics and where the outputs are."""
  metric = results["task_metric"]
  if results.get("history"):
    print(f"\nTraining statistics ({os.path.join(output_dir, classifier_task.STATS_FILE)}):")
    print(classifier_task.stats_table(results["history"], metric))
  for name, key in (("Dev", "eval"), ("Test", "test")):
    if key in results:
      values = results[key]
      shown = dict.fromkeys(["accuracy", metric, "loss"])
      print(f"{name}: {values['num_examples']} examples, "
            + ", ".join(f"{k} {values[k]:.4f}" for k in shown))
  print(f"Outputs in {output_dir}")


def run_task(task_name: str, data_dir: str, output_dir: str,
             strategy: tf.distribute.Strategy) -> Dict[str, Any]:
  """Resolves the model files and runs one task with them, printing a report."""
  files = script_flags.resolve_model_files()
  script_flags.check_output_dir_flags(files.settings(), TRAINING_FLAGS, strategy, output_dir)
  results = classifier_task.run(task_config(task_name, data_dir, output_dir), files.config,
                                files.tokenizer(), files.init_checkpoint, strategy,
                                script_flags.train_config)
  report(results, output_dir)
  return results


def main(_) -> None:
  # Errors in the flags, files or data are a user's to fix: printed plainly, without a traceback.
  with script_flags.user_errors():
    if FLAGS.demo:
      run_demo()
      return
    if not (FLAGS.task_name and FLAGS.data_dir and FLAGS.output_dir):
      raise app.UsageError("--task_name, --data_dir and --output_dir are required (or --demo).")
    strategy_config = script_flags.strategy_config()
    staging_client = script_flags.check_and_stage_paths(
        ["data_dir", "vocab_file", "bert_config_file", "init_checkpoint"], strategy_config)
    script_flags.apply_mixed_precision()
    strategy = distribution.resolve_strategy(strategy_config)
    results = run_task(FLAGS.task_name, FLAGS.data_dir, FLAGS.output_dir, strategy)
    script_flags.copy_results_back(staging_client, results["written"])


def run_demo() -> None:
  """Both bundled tasks, one after the other, with the demo settings (flags given still win)."""
  for name, value in DEMO_FLAGS.items():
    if not FLAGS[name].present:
      FLAGS[name].value = value
  script_flags.apply_mixed_precision()
  strategy = distribution.resolve_strategy(script_flags.strategy_config())
  started = time.time()
  root = FLAGS.output_dir
  logging.info("DEMO: a smoke run of the whole pipeline with a tiny model trained from scratch "
               "on bundled sample sets. It is not a benchmark.")
  for task, epochs in DEMO_TASKS.items():
    # script_flags.train_config reads these flags; the best checkpoint is kept by the task's metric.
    FLAGS.output_dir = os.path.join(root, task)
    if not FLAGS["num_train_epochs"].present:
      FLAGS.num_train_epochs = epochs
    if not FLAGS["keep_best_by"].present:
      FLAGS.keep_best_by = classifier_data.get_processor(task).metric
    print(f"\n=== {task}: {os.path.join(DEMO_DATA, task)} ===")
    run_task(task, os.path.join(DEMO_DATA, task), FLAGS.output_dir, strategy)
  print(f"\nThis was a smoke run ({time.time() - started:.0f} s): a tiny model trained from "
        "scratch on a few hundred bundled sentences, to show the pipeline works end to end. "
        "Its numbers say nothing about BERT's accuracy.")


if __name__ == "__main__":
  app.run(main)
