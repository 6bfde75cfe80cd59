"""Pretrains BERT (masked LM + next sentence) on create_pretraining_data's records.

  python run_pretraining.py --input_file=out/pretrain.tfrecord-* --output_dir=/tmp/pretrain \
    --bert_config_file=configs/kcbert_base.json --do_train=True --do_eval=True \
    --train_batch_size=32 --max_seq_length=128 --max_predictions_per_seq=20 \
    --num_train_steps=100000 --num_warmup_steps=10000 --learning_rate=5e-5

google-research's flags. Training resumes from the latest checkpoint in --output_dir when the
same command runs again (after a preemption or a Colab disconnect). With --keep_best_by_loss the
model is scored every save_checkpoints_steps (eval loss with --do_eval, else the training loss
over those steps) and the lowest-loss one is kept in OUTPUT_DIR/best/. With --vocab_file the
final (or best) model is exported to OUTPUT_DIR/export/{tf1,tf2,hf} (Google TF1 names, bert_tf,
Hugging Face) for run_squad, run_classifier and Hugging Face.

The data says how it is masked: records made with create_pretraining_data --masking=dynamic are
masked afresh every epoch in the input pipeline (with the masking flags the data was made with;
--vocab_file is then required), and records made with --next_sentence_prediction=false train the
masked LM alone (no next-sentence head, loss or metrics; the exports hold the MLM head only).
Training packs the records (--pack_sequences, the default): several instances to a row of
--max_seq_length, each with its own positions, attention, [CLS] and masks, the same loss and
variables as unpacked.

  python run_pretraining.py --demo   # clean -> vocab -> data -> pretraining on bundled text, CPU
"""

import dataclasses
import os
import time
from typing import Any, Dict

from absl import app, flags, logging

from bert_tf import tokenization
from bert_tf.checkpoints.configs import BertConfig
from bert_tf.cli import flags as cli_flags
from bert_tf.corpus import build_vocab, clean_text, instances
from bert_tf.corpus import create_pretraining_data as cpd
from bert_tf.io import files as io_files
from bert_tf.tasks import pretraining as pretraining_task
from bert_tf.training import distribution

FLAGS = flags.FLAGS

cli_flags.define_model_flags()
cli_flags.define_training_flags(learning_rate=5e-5, train_batch_size=32)
cli_flags.define_cloud_flags()
cli_flags.define_packing_flags()
# --help shows the shared flags (learning_rate, output_dir, ...) as this script's own.
flags.adopt_module_key_flags(cli_flags)
flags.adopt_module_key_flags(distribution)
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
flags.DEFINE_bool("next_sentence_prediction", None, "(bert_tf) Train the next-sentence head: "
                  "by default when the data has next_sentence_labels; a value the data "
                  "contradicts is an error.")
flags.DEFINE_bool("keep_best_by_loss", False, "(bert_tf) Keep the lowest-loss model in "
                  "OUTPUT_DIR/best/ (scored every save_checkpoints_steps), as KcBERT did.")
flags.DEFINE_bool("demo", False, "(bert_tf) Smoke run of the whole pipeline on bundled Korean "
                  "text: clean, learn a vocab, make the data, pretrain a tiny model on CPU. Not a "
                  "benchmark.")

# Flags that change the weights training ends with; see cli_flags.check_output_dir.
TRAINING_FLAGS = (*cli_flags.TRAINING_FLAGS, "num_train_steps", "num_warmup_steps",
                  "input_file", "max_seq_length", "max_predictions_per_seq", "keep_best_by_loss",
                  "save_checkpoints_steps", "pack_sequences")
DEMO_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_data", "pretraining")
DEMO_VOCAB_SIZE = 600  # the bundled text holds 579 WordPieces seen 10 times or more
DEMO_FLAGS = dict(
    output_dir="demo_output/pretraining", do_train=True, do_eval=True, keep_best_by_loss=True,
    max_seq_length=64, max_predictions_per_seq=10, train_batch_size=32, eval_batch_size=32,
    learning_rate=1e-3, num_train_steps=400, num_warmup_steps=40, save_checkpoints_steps=100,
    iterations_per_loop=50, max_eval_steps=20)


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


def prepare_demo() -> None:
  """Runs clean -> vocab -> data on the bundled raw text into OUTPUT_DIR and points the flags at
  the results (flags given on the command line still win)."""
  cli_flags.apply_demo_flags(DEMO_FLAGS)
  out = FLAGS.output_dir
  logging.info("DEMO: the whole pretraining pipeline on bundled Korean text with a tiny model "
               "trained from scratch. It is not a benchmark.")
  clean = os.path.join(out, "clean.txt")
  counts = clean_text.clean_files(os.path.join(DEMO_DATA, "raw_comments.txt"), clean)
  print(f"1. Cleaned (kcbert) into {clean}:\n{clean_text.format_report(counts)}")
  vocab_file = os.path.join(out, "vocab.txt")
  learn, held_out = build_vocab.split_lines(build_vocab.read_lines(clean), 1.0, 50,
                                            held_out_fraction=0.13)
  build_vocab.write_vocab(build_vocab.learn_vocab(learn, DEMO_VOCAB_SIZE, False), vocab_file)
  report = build_vocab.tokenization_report(vocab_file, False, held_out)
  vocab_size = len(tokenization.load_vocab(vocab_file))
  print(f"2. Vocab {vocab_file}: {vocab_size} tokens; on "
        f"{len(held_out)} held-out lines [UNK] rate {report['unk_rate']:.4f}, "
        f"{report['tokens_per_word']:.2f} tokens per word")
  metadata = cpd.create_pretraining_data(instances.DataConfig(
      input_file=clean, output_file=os.path.join(out, "data", "pretrain.tfrecord"),
      vocab_file=vocab_file, do_lower_case=False, max_seq_length=FLAGS.max_seq_length,
      max_predictions_per_seq=FLAGS.max_predictions_per_seq, dupe_factor=5))
  print(f"3. Data {metadata['file_pattern']}: {metadata['counts']['instances']} instances")
  config = BertConfig.from_json_file(os.path.join(DEMO_DATA, "bert_config.json"))
  config_file = os.path.join(out, "bert_config.json")
  io_files.write_text_atomic(config_file, dataclasses.replace(
      config, vocab_size=vocab_size).to_json_string())
  for name, value in (("input_file", metadata["file_pattern"]), ("vocab_file", vocab_file),
                      ("bert_config_file", config_file)):
    if not FLAGS[name].present:
      FLAGS[name].value = value
  print(f"4. Pretraining {FLAGS.num_train_steps} steps into {out}")


def task_config() -> pretraining_task.PretrainingConfig:
  """The PretrainingConfig the flags describe: google-research's fixed steps and warmup; with
  --keep_best_by_loss a score every save_checkpoints_steps."""
  keep_best = FLAGS.keep_best_by_loss
  return cli_flags.config_from_flags(
      pretraining_task.PretrainingConfig, training=dataclasses.replace(
          cli_flags.train_config(FLAGS.num_train_steps),
          num_warmup_steps=FLAGS.num_warmup_steps),
      keep_best_by="loss" if keep_best else None,
      eval_steps=FLAGS.save_checkpoints_steps if keep_best else None)


def report(results: Dict[str, Any], started: float) -> None:
  """The evaluation results, the exports and, for the demo, what it was."""
  if "eval" in results:
    print(f"Eval results: {os.path.join(FLAGS.output_dir, 'eval_results.txt')}\n" + "".join(
        f"  {k} = {v:.4f}\n" for k, v in results["eval"].items()))
  if "exports" in results:
    print(f"Exported {results['exported_from']} for run_squad/run_classifier (--init_checkpoint) "
          "and Hugging Face: " + ", ".join(results["exports"].values()))
  if FLAGS.demo:
    print(f"This was a smoke run ({time.time() - started:.0f} s): a tiny model pretrained from "
          "scratch on a few hundred bundled sentences, evaluated on its training data, to show "
          "the pipeline works end to end. Its numbers say nothing about BERT's quality.")


def main(_) -> None:
  started = time.time()
  # Errors in the flags, files or data found before any training are a user's to fix:
  # print them plainly, without a traceback.
  with cli_flags.user_errors():
    if FLAGS.demo:
      prepare_demo()
    validate_flags()
    files, strategy, staging_client = cli_flags.start_run(
        ["input_file", "eval_input_file", "bert_config_file", "vocab_file", "init_checkpoint"],
        special_tokens=(*tokenization.SPECIAL_TOKENS, "[MASK]"), vocab_required=False)
    task = pretraining_task.PretrainingTask(task_config(), files, strategy)
    cli_flags.prepare_task(task, TRAINING_FLAGS)
  results = task.run()
  if task.chief:
    cli_flags.copy_results_back(staging_client, results["written"])
    report(results, started)


if __name__ == "__main__":
  app.run(main)
