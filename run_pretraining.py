"""Pretrains BERT (masked LM + next sentence) on create_pretraining_data's records.

  python run_pretraining.py --input_file=out/pretrain.tfrecord-* --output_dir=/tmp/pretrain \
    --bert_config_file=configs/kcbert_base.json --do_train=True --do_eval=True \
    --train_batch_size=32 --max_seq_length=128 --max_predictions_per_seq=20 \
    --num_train_steps=100000 --num_warmup_steps=10000 --learning_rate=5e-5

google-research's flags. Training resumes from the latest checkpoint in --output_dir when the
same command runs again (after a preemption or a Colab disconnect). With --keep_best_by_loss the
model is scored every save_checkpoints_steps (eval loss with --do_eval, else the training loss
over those steps) and the lowest-loss one is kept in OUTPUT_DIR/best/. With --vocab_file the
final (or best) model is exported to OUTPUT_DIR/export/{tf1,hf} for run_squad, run_classifier
and Hugging Face.
"""

import dataclasses
import os

from absl import app, flags, logging

from bert_tf import convert_checkpoint, distribution, pretraining_task, script_flags
from bert_tf.configs import BertConfig

FLAGS = flags.FLAGS

script_flags.define_model_flags()
script_flags.define_training_flags(learning_rate=5e-5, train_batch_size=32)
flags.DEFINE_string("input_file", None, "Input TF example files (can be a glob or comma "
                    "separated).")
flags.DEFINE_integer("max_seq_length", 128, "The maximum total input sequence length after "
                     "WordPiece tokenization. Must match the data.")
flags.DEFINE_integer("max_predictions_per_seq", 20, "Maximum number of masked LM predictions per "
                     "sequence. Must match the data.")
flags.DEFINE_bool("do_train", False, "Whether to run training.")
flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.")
flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")
flags.DEFINE_integer("num_train_steps", 100000, "Number of training steps.")
flags.DEFINE_integer("num_warmup_steps", 10000, "Number of warmup steps.")
flags.DEFINE_integer("max_eval_steps", 100, "Maximum number of eval steps.")
flags.DEFINE_string("eval_input_file", None, "(bert_tf) Records to evaluate on; default "
                    "--input_file, as google-research does.")
flags.DEFINE_bool("keep_best_by_loss", False, "(bert_tf) Keep the lowest-loss model in "
                  "OUTPUT_DIR/best/ (scored every save_checkpoints_steps), as KcBERT did.")


def validate_flags() -> None:
  """google-research's checks, plus the ones that would otherwise fail hours later."""
  if not FLAGS.do_train and not FLAGS.do_eval:
    raise app.UsageError("At least one of `do_train` or `do_eval` must be True.")
  for name in ("input_file", "output_dir", "bert_config_file"):
    if not FLAGS[name].value:
      raise app.UsageError(f"--{name} is required.")
  if FLAGS.num_warmup_steps > FLAGS.num_train_steps:
    raise app.UsageError(f"--num_warmup_steps={FLAGS.num_warmup_steps} exceeds "
                         f"--num_train_steps={FLAGS.num_train_steps}.")


def export(output_dir: str, source: str) -> None:
  """Writes `source` as Google TF1 and Hugging Face checkpoints under OUTPUT_DIR/export/."""
  for fmt in ("tf1", "hf"):
    target = os.path.join(output_dir, "export", fmt)
    if os.path.exists(target):
      logging.info("%s exists; not exported again.", target)
      continue
    convert_checkpoint.convert_checkpoint(source, target, fmt, FLAGS.bert_config_file,
                                          FLAGS.vocab_file)


def main(_) -> None:
  validate_flags()
  config = BertConfig.from_json_file(FLAGS.bert_config_file)
  if FLAGS.max_seq_length > config.max_position_embeddings:
    raise app.UsageError(f"--max_seq_length={FLAGS.max_seq_length} exceeds "
                         f"max_position_embeddings={config.max_position_embeddings} in "
                         f"{FLAGS.bert_config_file}.")
  eval_input = FLAGS.eval_input_file or FLAGS.input_file
  for pattern in {FLAGS.input_file, eval_input}:
    pretraining_task.check_data_shapes(pattern, FLAGS.max_seq_length,
                                       FLAGS.max_predictions_per_seq)
  script_flags.apply_mixed_precision()
  strategy = distribution.resolve_strategy(script_flags.strategy_config())
  kind = distribution.replica_kind(strategy)
  distribution.check_global_batch(FLAGS.train_batch_size, strategy.num_replicas_in_sync,
                                  "train_batch_size", kind)
  distribution.check_global_batch(FLAGS.eval_batch_size, strategy.num_replicas_in_sync,
                                  "eval_batch_size", kind)
  data = pretraining_task.PretrainingData(FLAGS.input_file, FLAGS.max_seq_length,
                                          FLAGS.max_predictions_per_seq)
  train_config = dataclasses.replace(script_flags.train_config(FLAGS.num_train_steps),
                                     num_warmup_steps=FLAGS.num_warmup_steps)
  run = pretraining_task.make_trainer(strategy, config, data, train_config,
                                      FLAGS.init_checkpoint, FLAGS.seed)

  def evaluate():
    return pretraining_task.evaluate(strategy, run.model, eval_input, FLAGS.max_seq_length,
                                     FLAGS.max_predictions_per_seq, FLAGS.eval_batch_size,
                                     FLAGS.max_eval_steps)

  if FLAGS.do_train and FLAGS.keep_best_by_loss:
    score = (lambda: evaluate()["loss"]) if FLAGS.do_eval else (lambda: run.mean_loss)
    pretraining_task.train_keeping_best(run, score)
  elif FLAGS.do_train:
    run.train()
  if FLAGS.do_eval:
    metrics = evaluate()
    path = os.path.join(FLAGS.output_dir, "eval_results.txt")
    pretraining_task.write_eval_results(path, metrics, run.step)
    logging.info("***** Eval results ***** %s", metrics)
    print(f"Eval results: {path}\n" + "".join(f"  {k} = {v:.4f}\n" for k, v in metrics.items()))
  if FLAGS.do_train and FLAGS.vocab_file:
    best = os.path.join(FLAGS.output_dir, pretraining_task.BEST_DIR, "ckpt")
    export(FLAGS.output_dir, best if FLAGS.keep_best_by_loss else run.manager.latest_checkpoint)


if __name__ == "__main__":
  app.run(main)
