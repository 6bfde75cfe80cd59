"""Fine-tunes BERT on SQuAD 1.1/2.0 or KorQuAD 1.0 and predicts answers (google-research flags).

  python run_squad.py --vocab_file=$BERT/vocab.txt --bert_config_file=$BERT/bert_config.json \
    --init_checkpoint=$BERT/bert_model.ckpt --do_train=True --train_file=train.json \
    --do_predict=True --predict_file=dev.json --output_dir=/tmp/squad

With --eval_every_epoch (or --eval_steps) and a predict file that has answers, EM/F1 are
measured after each epoch (training_stats.csv, training_curves.png); --keep_best_by=f1 keeps the
best checkpoint in OUTPUT_DIR/best/ and predicts with it.

  python run_squad.py --demo   # a smoke run on bundled data, CPU, a few minutes
"""

import os

from absl import app, flags, logging

from bert_tf.cli import flags as cli_flags
from bert_tf.tasks import squad as squad_task
from bert_tf.training import distribution, history

FLAGS = flags.FLAGS
SAMPLE_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_data")

cli_flags.define_model_flags()
cli_flags.define_training_flags(learning_rate=5e-5, train_batch_size=32)
cli_flags.define_evaluation_flags(eval_every_epoch=False, metrics=squad_task.SquadTask.metrics)
cli_flags.define_cloud_flags()
cli_flags.define_packing_flags()
# --help shows the shared flags (learning_rate, output_dir, ...) as this script's own.
flags.adopt_module_key_flags(cli_flags)
flags.adopt_module_key_flags(distribution)
flags.DEFINE_string("train_file", None, "SQuAD json for training. E.g., train-v1.1.json")
flags.DEFINE_string("predict_file", None, "SQuAD json for predictions. E.g., dev-v1.1.json")
flags.DEFINE_integer("max_seq_length", 384, "The maximum total input sequence length after "
                     "WordPiece tokenization.")
flags.DEFINE_integer("doc_stride", 128, "When splitting up a long document into chunks, how much "
                     "stride to take between chunks.")
flags.DEFINE_integer("max_query_length", 64, "The maximum number of tokens for the question.")
flags.DEFINE_bool("do_train", False, "Whether to run training.")
flags.DEFINE_bool("do_predict", False, "Whether to run eval on the dev set.")
flags.DEFINE_integer("predict_batch_size", 8, "Total batch size for predictions.")
flags.DEFINE_integer("n_best_size", 20, "The total number of n-best predictions to generate in "
                     "the nbest_predictions.json output file.")
flags.DEFINE_integer("max_answer_length", 30, "The maximum length of an answer that can be "
                     "generated.")
flags.DEFINE_bool("verbose_logging", False, "If true, all of the warnings related to data "
                  "processing will be printed.")
flags.DEFINE_bool("version_2_with_negative", False, "If true, the SQuAD examples contain some "
                  "that do not have an answer.")
flags.DEFINE_float("null_score_diff_threshold", 0.0, "If null_score - best_non_null is greater "
                   "than the threshold predict null.")
flags.DEFINE_integer("num_workers", 0, "(bert_tf) Worker processes for feature conversion; 0 "
                     "converts in this process, which measured fastest on 2 cores.")
flags.DEFINE_string("export_dir", None, "(bert_tf) After training, a SavedModel that serves raw "
                    "text (python -m bert_tf.serving.export makes one from any run later).")
flags.DEFINE_bool("demo", False, "(bert_tf) Smoke run on the bundled sample data: a tiny model "
                  "trained from scratch on CPU. Not a benchmark.")

# Flags that change the weights training ends with; see cli_flags.check_output_dir.
TRAINING_FLAGS = (*cli_flags.TRAINING_FLAGS, *cli_flags.EVALUATION_FLAGS,
                  "num_train_epochs", "warmup_proportion", "pack_sequences", "train_file",
                  "max_seq_length", "doc_stride", "max_query_length", "version_2_with_negative")
DEMO_FLAGS = dict(
    vocab_file=os.path.join(SAMPLE_DATA, "vocab.txt"),
    bert_config_file=os.path.join(SAMPLE_DATA, "bert_config.json"),
    train_file=os.path.join(SAMPLE_DATA, "squad_sample.json"),
    predict_file=os.path.join(SAMPLE_DATA, "squad_sample.json"),
    output_dir="demo_output/squad", do_train=True, do_predict=True, max_seq_length=128,
    doc_stride=64, train_batch_size=8, learning_rate=2e-3, num_train_epochs=60.0,
    warmup_proportion=0.1, iterations_per_loop=50, save_checkpoints_steps=100)


def validate_flags() -> None:
  """google-research's checks of the flags, before any work."""
  if not FLAGS.do_train and not FLAGS.do_predict:
    raise app.UsageError("At least one of `do_train` or `do_predict` must be True.")
  for wanted, name in ((FLAGS.do_train, "train_file"), (FLAGS.do_predict, "predict_file")):
    if wanted and not FLAGS[name].value:
      raise app.UsageError(f"If `do_{name.split('_')[0]}` is True, then `{name}` must be "
                           "specified.")
  if not FLAGS.output_dir:
    raise app.UsageError("--output_dir is required.")


def input_flags():
  """The flags naming files this run reads."""
  wanted = dict(train_file=FLAGS.do_train, predict_file=FLAGS.do_predict)
  return ["vocab_file", "bert_config_file", "init_checkpoint",
          *[name for name, used in wanted.items() if used]]


def report(results) -> None:
  """The per-epoch table, where the predictions are and their metrics."""
  if any(row.get("val_f1") is not None for row in results.get("history", [])):
    print(f"\nTraining statistics ({os.path.join(FLAGS.output_dir, history.STATS_FILE)}):")
    print(history.stats_table(results["history"], squad_task.SquadTask.metrics))
  if "predictions" in results:
    metrics = results.get("metrics")
    print(f"Predictions: {results['predictions']}" + (f"\nMetrics: {metrics}" if metrics else ""))
  if "export_dir" in results:
    print(f"SavedModel serving raw text: {results['export_dir']}")
  if FLAGS.demo:
    print("This was a smoke run on bundled sample data with a tiny model, evaluated on the "
          "questions it was trained on: it shows the pipeline works, it is not a benchmark.")


def main(_) -> None:
  # Errors in the flags, files or data found before any training are a user's to fix:
  # print them plainly, without a traceback.
  with cli_flags.user_errors():
    if FLAGS.demo:
      cli_flags.apply_demo_flags(DEMO_FLAGS)
      logging.info("DEMO: a smoke run of the whole pipeline on 29 bundled questions with a tiny "
                   "model trained from scratch. It is not a benchmark.")
    validate_flags()
    files, strategy, staging_client = cli_flags.start_run(input_flags())
    task = squad_task.SquadTask(cli_flags.config_from_flags(squad_task.SquadConfig),
                                files, strategy)
    cli_flags.prepare_task(task, TRAINING_FLAGS)
  results = task.run()
  if task.chief:
    cli_flags.copy_results_back(staging_client, results["written"])
    report(results)


if __name__ == "__main__":
  app.run(main)
