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

from absl import app, flags, logging

from bert_tf.checkpoints import model_files
from bert_tf.cli import flags as cli_flags
from bert_tf.data import classifier as classifier_data
from bert_tf.tasks import classifier as classifier_task
from bert_tf.tasks import classifier_metrics
from bert_tf.training import distribution, history
import tensorflow as tf  # after bert_tf, which quiets TensorFlow's start-up lines

FLAGS = flags.FLAGS
DEMO_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_data", "classifier")

cli_flags.define_model_flags()
cli_flags.define_training_flags(learning_rate=5e-5, train_batch_size=32)
cli_flags.define_evaluation_flags(eval_every_epoch=True, metrics=classifier_metrics.SELECTABLE)
cli_flags.define_cloud_flags()
cli_flags.define_packing_flags()
# --help shows the shared flags (learning_rate, output_dir, ...) as this script's own.
flags.adopt_module_key_flags(cli_flags)
flags.adopt_module_key_flags(distribution)
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
flags.DEFINE_bool("test_results_with_labels", False, "(bert_tf) test_results.tsv gets a header "
                  "row (the labels) and a last column with the predicted label.")
flags.DEFINE_string("export_dir", None, "(bert_tf) After training, a SavedModel that serves raw "
                    "text (python -m bert_tf.serving.export makes one from any run later).")
flags.DEFINE_bool("demo", False, "(bert_tf) Smoke run on the bundled sample data: a tiny model "
                  "trained from scratch on CPU, on a Korean NSMC-like and an English CoLA-like "
                  "set. Not a benchmark.")

# Flags that change the weights training ends with; see cli_flags.check_output_dir.
TRAINING_FLAGS = (*cli_flags.TRAINING_FLAGS, *cli_flags.EVALUATION_FLAGS,
                  "num_train_epochs", "warmup_proportion", "pack_sequences", "task_name",
                  "data_dir", "max_seq_length", "xnli_language", "mnli_mismatched",
                  "text_a_column", "text_b_column", "label_column", "has_header", "label_list")
# Task -> epochs: word order (CoLA-like) takes a model trained from scratch longer to learn.
DEMO_TASKS = {"nsmc": 6.0, "cola": 20.0}
DEMO_FLAGS = dict(
    vocab_file=os.path.join(DEMO_DATA, "vocab.txt"),
    bert_config_file=os.path.join(DEMO_DATA, "bert_config.json"),
    output_dir="demo_output/classifier", do_train=True, do_eval=True, do_predict=True,
    max_seq_length=48, train_batch_size=16, eval_batch_size=16, predict_batch_size=16,
    learning_rate=1e-3, iterations_per_loop=50, save_checkpoints_steps=1000)


def task_config() -> classifier_task.ClassifierConfig:
  """The ClassifierConfig the flags describe."""
  return cli_flags.config_from_flags(classifier_task.ClassifierConfig, table=(
      classifier_data.TableFormat(
          text_a_column=FLAGS.text_a_column, text_b_column=FLAGS.text_b_column,
          label_column=FLAGS.label_column, has_header=FLAGS.has_header,
          label_list=FLAGS.label_list)))


def report(results: Dict[str, Any]) -> None:
  """Prints the per-epoch table, the final metrics and where the outputs are."""
  metric = results["task_metric"]
  shown = list(dict.fromkeys(["loss", "accuracy", metric]))
  if results.get("history"):
    print(f"\nTraining statistics ({os.path.join(FLAGS.output_dir, history.STATS_FILE)}):")
    print(history.stats_table(results["history"], shown))
  files = results["files"]
  for name, key in (("Dev", "eval"), ("Test", "test")):
    if key == "test" and "eval" in results and files.get("test") == files.get("dev"):
      print(f"Test: the same file as Dev ({files['dev']}): this task has no separate dev set.")
      continue
    if key in results:
      values = results[key]
      print(f"{name}: {values['num_examples']} examples, "
            + ", ".join(f"{k} {values[k]:.4f}" for k in dict.fromkeys(["accuracy", metric,
                                                                        "loss"])))
  if "export_dir" in results:
    print(f"SavedModel serving raw text: {results['export_dir']}")
  print(f"Outputs in {FLAGS.output_dir}")


def prepared_task(files: model_files.ModelFiles,
                  strategy: tf.distribute.Strategy) -> classifier_task.ClassifierTask:
  """The task the flags describe, checked and with its data prepared."""
  task = classifier_task.ClassifierTask(task_config(), files, strategy)
  cli_flags.prepare_task(task, TRAINING_FLAGS)
  return task


def run_and_report(task: classifier_task.ClassifierTask) -> Dict[str, Any]:
  """Runs the task; every worker reports what it measured (the same numbers, gathered)."""
  results = task.run()
  report(results)
  return results


def main(_) -> None:
  # Errors in the flags, files or data are a user's to fix: printed plainly, without a traceback.
  with cli_flags.user_errors():
    if FLAGS.demo:
      run_demo()
      return
    if not (FLAGS.task_name and FLAGS.data_dir and FLAGS.output_dir):
      raise app.UsageError("--task_name, --data_dir and --output_dir are required (or --demo).")
    files, strategy, staging_client = cli_flags.start_run(
        ["data_dir", "vocab_file", "bert_config_file", "init_checkpoint"])
    task = prepared_task(files, strategy)
  results = run_and_report(task)
  cli_flags.copy_results_back(staging_client, results["written"])


def run_demo() -> None:
  """Both bundled tasks, one after the other, with the demo settings (flags given still win)."""
  cli_flags.apply_demo_flags(DEMO_FLAGS)
  files, strategy, _ = cli_flags.start_run([])
  started = time.time()
  root = FLAGS.output_dir
  logging.info("DEMO: a smoke run of the whole pipeline with a tiny model trained from scratch "
               "on bundled sample sets. It is not a benchmark.")
  for name, epochs in DEMO_TASKS.items():
    FLAGS.task_name, FLAGS.data_dir = name, os.path.join(DEMO_DATA, name)
    FLAGS.output_dir = os.path.join(root, name)
    if not FLAGS["num_train_epochs"].present:
      FLAGS.num_train_epochs = epochs
    if not FLAGS["keep_best_by"].present:
      FLAGS.keep_best_by = classifier_data.get_processor(name).metric
    print(f"\n=== {name}: {FLAGS.data_dir} ===")
    run_and_report(prepared_task(files, strategy))
  print(f"\nThis was a smoke run ({time.time() - started:.0f} s): a tiny model trained from "
        "scratch on a few hundred bundled sentences, to show the pipeline works end to end. "
        "Its numbers say nothing about BERT's accuracy.")


if __name__ == "__main__":
  app.run(main)
