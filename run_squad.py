"""Fine-tunes BERT on SQuAD 1.1/2.0 or KorQuAD 1.0 and predicts answers (google-research flags).

  python run_squad.py --vocab_file=$BERT/vocab.txt --bert_config_file=$BERT/bert_config.json \
    --init_checkpoint=$BERT/bert_model.ckpt --do_train=True --train_file=train.json \
    --do_predict=True --predict_file=dev.json --output_dir=/tmp/squad

  python run_squad.py --demo   # a smoke run on bundled data, CPU, a few minutes
"""

import os
import time

from absl import app, flags, logging

from bert_tf import evaluate, script_flags
from bert_tf.training import distribution
from bert_tf.data import squad
from bert_tf.tasks import squad as squad_task
from bert_tf.training import trainer

FLAGS = flags.FLAGS
SAMPLE_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_data")

script_flags.define_model_flags()
script_flags.define_training_flags(learning_rate=5e-5, train_batch_size=32)
script_flags.define_cloud_flags()
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
flags.DEFINE_bool("demo", False, "(bert_tf) Smoke run on the bundled sample data: a tiny model "
                  "trained from scratch on CPU. Not a benchmark.")

# Flags that change the weights training ends with; see script_flags.check_output_dir.
TRAINING_FLAGS = (*script_flags.TRAINING_FLAGS, "num_train_epochs", "warmup_proportion",
                  "train_file", "max_seq_length", "doc_stride", "max_query_length",
                  "version_2_with_negative")
DEMO_FLAGS = dict(
    vocab_file=os.path.join(SAMPLE_DATA, "vocab.txt"),
    bert_config_file=os.path.join(SAMPLE_DATA, "bert_config.json"),
    train_file=os.path.join(SAMPLE_DATA, "squad_sample.json"),
    predict_file=os.path.join(SAMPLE_DATA, "squad_sample.json"),
    output_dir="demo_output/squad", do_train=True, do_predict=True, max_seq_length=128,
    doc_stride=64, train_batch_size=8, learning_rate=2e-3, num_train_epochs=60.0,
    warmup_proportion=0.1, iterations_per_loop=50, save_checkpoints_steps=100)


def apply_demo_flags() -> None:
  for name, value in DEMO_FLAGS.items():
    if not FLAGS[name].present:
      FLAGS[name].value = value
  logging.info("DEMO: a smoke run of the whole pipeline on %d bundled questions with a tiny "
               "model trained from scratch. It is not a benchmark.", 29)


def validate_flags() -> None:
  """google-research's checks, plus paths that must exist, before any expensive work."""
  if not FLAGS.do_train and not FLAGS.do_predict:
    raise app.UsageError("At least one of `do_train` or `do_predict` must be True.")
  for wanted, name in ((FLAGS.do_train, "train_file"), (FLAGS.do_predict, "predict_file")):
    if wanted and not FLAGS[name].value:
      raise app.UsageError(f"If `do_{name.split('_')[0]}` is True, then `{name}` must be "
                           "specified.")
  if not FLAGS.output_dir:
    raise app.UsageError("--output_dir is required.")
  if FLAGS.max_seq_length <= FLAGS.max_query_length + 3:
    raise app.UsageError(f"The max_seq_length ({FLAGS.max_seq_length}) must be greater than "
                         f"max_query_length ({FLAGS.max_query_length}) + 3")


def main(_) -> None:
  # Errors in the flags, files or data found before any training are a user's to fix:
  # print them plainly, without a traceback.
  with script_flags.user_errors():
    if FLAGS.demo:
      apply_demo_flags()
    validate_flags()
    strategy_config = script_flags.strategy_config()
    inputs = ["vocab_file", "bert_config_file", "init_checkpoint"]
    inputs += [name for wanted, name in ((FLAGS.do_train, "train_file"),
                                         (FLAGS.do_predict, "predict_file")) if wanted]
    staging_client = script_flags.check_and_stage_paths(inputs, strategy_config)
    files = script_flags.resolve_model_files()
    if FLAGS.max_seq_length > files.config.max_position_embeddings:
      raise app.UsageError(f"--max_seq_length={FLAGS.max_seq_length} exceeds the model's "
                           f"max_position_embeddings={files.config.max_position_embeddings} in "
                           f"{FLAGS.bert_config_file or FLAGS.init_checkpoint}.")
    # Read the data now (seconds): a malformed train or predict file fails before anything is
    # written to --output_dir or converted.
    for wanted, name, is_training in ((FLAGS.do_train, "train_file", True),
                                      (FLAGS.do_predict, "predict_file", False)):
      if wanted:
        squad.read_squad_examples(FLAGS[name].value, is_training, FLAGS.version_2_with_negative)
    script_flags.apply_mixed_precision()
    strategy = distribution.resolve_strategy(strategy_config)
    script_flags.check_output_dir_flags(files.settings(), TRAINING_FLAGS, strategy)
    kind = distribution.replica_kind(strategy)
    if FLAGS.do_train:
      distribution.check_global_batch(FLAGS.train_batch_size, strategy.num_replicas_in_sync,
                                      "train_batch_size", kind)
    if FLAGS.do_predict:
      distribution.check_global_batch(FLAGS.predict_batch_size, strategy.num_replicas_in_sync,
                                      "predict_batch_size", kind)
    tokenizer = files.tokenizer()

    def prepare(input_file: str, is_training: bool):
      return squad.prepare_features(
          input_file, tokenizer, files.vocab_file, FLAGS.max_seq_length, FLAGS.doc_stride,
          FLAGS.max_query_length, is_training, FLAGS.version_2_with_negative,
          output_dir=FLAGS.output_dir, num_workers=FLAGS.num_workers)

    # Preprocess both files up front, so that prediction cannot fail after hours of training.
    # With several workers the chief writes the feature files and the others then reuse them.
    chief = trainer.is_chief(strategy)
    if not chief:
      distribution.barrier(strategy)
    train_meta = prepare(FLAGS.train_file, True) if FLAGS.do_train else None
    eval_meta = prepare(FLAGS.predict_file, False) if FLAGS.do_predict else None
    if chief:
      distribution.barrier(strategy)

  model = None
  if FLAGS.do_train:
    steps = squad_task.num_train_steps(train_meta["num_features"], FLAGS.train_batch_size,
                                       FLAGS.num_train_epochs)
    logging.info("%d training examples became %d features (document windows); %d steps count "
                 "features, as google-research's num_train_steps counted examples.",
                 train_meta["num_examples"], train_meta["num_features"], steps)
    model = squad_task.train(strategy, files.config, train_meta,
                             script_flags.train_config(steps), files.init_checkpoint,
                             FLAGS.seed)
  if FLAGS.do_predict:
    if model is None:
      model = squad_task.restore_for_prediction(strategy, files.config, FLAGS.output_dir,
                                                files.init_checkpoint)
    started = time.time()
    results = squad_task.predict(strategy, model, eval_meta, FLAGS.predict_batch_size)
    if not chief:
      return  # every worker predicts its share; the chief gathers them and writes the files
    examples, features = squad.load_eval_data(FLAGS.output_dir)
    paths = squad_task.output_files(FLAGS.output_dir)
    squad.write_predictions(
        examples, features, results, FLAGS.n_best_size, FLAGS.max_answer_length,
        files.do_lower_case, paths["predictions"], paths["nbest_predictions"],
        paths["null_odds"] if FLAGS.version_2_with_negative else None,
        FLAGS.version_2_with_negative, FLAGS.null_score_diff_threshold)
    logging.info("Predicted %d questions in %.1f s: %s", len(examples), time.time() - started,
                 paths["predictions"])
    metrics = evaluate.evaluate_files(
        FLAGS.predict_file, paths["predictions"],
        paths["null_odds"] if FLAGS.version_2_with_negative else None,
        output_file=os.path.join(FLAGS.output_dir, "eval_results.json"))
    if metrics:
      logging.info("Evaluation: %s", metrics)
    written = [paths["predictions"], paths["nbest_predictions"]]
    if FLAGS.version_2_with_negative:
      written.append(paths["null_odds"])
    if metrics:
      written.append(os.path.join(FLAGS.output_dir, "eval_results.json"))
    script_flags.copy_results_back(staging_client, [os.path.basename(p) for p in written])
    print(f"Predictions: {paths['predictions']}" + (f"\nMetrics: {metrics}" if metrics else ""))
  if FLAGS.demo:
    print("This was a smoke run on bundled sample data with a tiny model, evaluated on the "
          "questions it was trained on: it shows the pipeline works, it is not a benchmark.")


if __name__ == "__main__":
  app.run(main)
