"""Masked-LM / next-sentence pretraining TFRecords from raw text, at corpus scale.

Usage: python -m bert_tf.corpus.create_pretraining_data --input_file=corpus*.txt \
  --output_file=out/pretrain.tfrecord --vocab_file=vocab.txt --num_output_shards=64

Input and output follow google-research/bert's create_pretraining_data.py: one sentence a line,
a blank line between documents (a new file also starts a new document); the same flags; the
same instance semantics (short_seq_prob target lengths, random a_end split, 50% random next
segment with the unused segments put back, truncation from a random end of the longer side,
num_to_predict = min(max_predictions_per_seq, max(1, round(len * masked_lm_prob))), 80% [MASK]
/ 10% original / 10% random token, optional whole-word masking, next_sentence_labels 1 = random)
and the same tf.Example features (masked_lm_weights float).

What differs, for scale: documents are read as a stream and cut into windows of
--documents_per_shard documents (fewer when --num_output_shards makes smaller shards), so memory
is bounded by the window, not the corpus; a document longer than MAX_DOCUMENT_LINES lines (a text
without blank lines is one document) is cut into pieces of that many, so the window stays
bounded whatever the input's shape. The random next segment is drawn from a document of the same
window (google-research draws from the whole corpus), and instances are shuffled within each
window and dupe pass (google-research shuffles all of them). So that every shard is a sample of
the whole corpus, not one stretch of it, a window's instances are dealt round-robin over all the
shards: window i emits blocks of (shard, sort key, record), record j going to shard
(j + i) mod num_shards with a key that is a seeded hash of (i, j) (sort_keys); each shard is
written once, atomically, with all of its records sorted by key: a seeded shuffle of the shard,
a function of the seed and the flags only. Moving the blocks to their shards is a shuffle: Beam's
GroupByKey on the Beam path (bert_tf.corpus.beam_pipelines); locally, each window writes its blocks
to a part file, one sequential pass appends them to one spool file per shard (files held open), and
the worker processes sort each shard from its spool, so the file operations grow as windows +
shards, not as their product. The part and spool files live in OUTPUT_FILE.progress/scratch, or for a gs://
output on local disk ($TMPDIR), so that only finished shards go to the bucket. Windows are made
by --num_workers processes; window i uses its own random generator seeded from (random_seed, i),
so the output depends on the seed and the flags, not on the number of workers or the runner.
Shards are recorded in OUTPUT_FILE.progress/ as they are finished, so a rerun skips them (and
the windows whose part files remain). The metadata lists each shard's record count
("record_counts"), which lets a resumed training run skip whole files without reading them
(bert_tf.data.pipeline). For speed, the instances of a window and dupe pass are masked together
with NumPy (its own generator, seeded the same way) and encoded straight to the tf.Example wire
format, not through protobuf objects. With --runner (e.g. DataflowRunner; Beam's options after
`--`), Apache Beam pipelines run these same steps and write the same shards and metadata.

Two options go beyond google-research (both recorded in the metadata, which run_pretraining
reads): --masking=dynamic writes the instances unmasked (input_ids, input_mask, segment_ids and
next_sentence_labels, no masked_lm_* features), and training masks every batch afresh with the
same semantics (bert_tf.data.masking), so each epoch sees new masks; --dupe_factor then only
repeats the documents with other cuts and other random next segments, and 1 is enough.
--next_sentence_prediction=false makes masked-LM-only instances without next_sentence_labels:
whole consecutive sentences of one document packed up to the target length in one segment
(RoBERTa's DOC-SENTENCES; InstanceMaker.full_sentences), and run_pretraining trains the
masked LM alone.
"""

import dataclasses
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import app, flags, logging

from bert_tf import tokenization
from bert_tf.cli import errors as cli_errors
from bert_tf.corpus import beam_flags, cleaning, instances, reading, shards
from bert_tf.data import records
from bert_tf.io import files as io_files, writable

gfile = io_files.gfile  # tf.io.gfile's functions; TensorFlow only for gs:// paths


def _check_resumable(config: instances.DataConfig, run_config: Dict[str, Any]) -> None:
  """Records the run's flags, or fails if an earlier partial run used different ones."""
  path = os.path.join(shards.progress_dir(config.output_file), "config.json")
  if gfile.exists(path):
    previous = io_files.read_json(path)
    if previous != run_config:
      changed = sorted(k for k in set(previous) | set(run_config)
                       if previous.get(k) != run_config.get(k))
      raise ValueError(
          f"{config.output_file} shards were started with other settings ({', '.join(changed)} "
          f"differ; see {path}). Finishing them would mix two datasets. Fix: rerun with the "
          f"same flags, or delete {shards.progress_dir(config.output_file)} and the shards, or "
          "choose another --output_file.")
  else:
    io_files.write_json_atomic(path, run_config)


def create_pretraining_data(config: instances.DataConfig, num_workers: int = 1,
                            beam_options: Optional[Any] = None) -> Dict[str, Any]:
  """Writes the shards and OUTPUT_FILE.metadata.json; returns the metadata.

  With `beam_options` (apache_beam PipelineOptions, see bert_tf.corpus.beam_pipelines), the
  documents are counted and the windows and shards made by Beam pipelines instead of local
  processes; the output is the same.
  """
  config.check()
  tokenization.check_vocab(config.vocab_file, (*tokenization.SPECIAL_TOKENS, "[MASK]"))
  files = io_files.list_files(config.input_file)
  writable.check_writable(os.path.dirname(config.output_file), "output_file",
                          config.output_file)
  beam = None
  if beam_options is not None:
    # Apache Beam, imported with --runner only.
    from bert_tf.corpus import beam_pipelines  # pylint: disable=import-outside-toplevel
    beam = beam_pipelines.PretrainingRun(config, files, beam_options)
  shape = beam.count_documents() if beam else reading.corpus_shape(files, config.clean)
  num_documents = shape["documents"]
  if not num_documents:
    raise ValueError(f"No text in {config.input_file}: expected one sentence a line, a blank "
                     "line between documents.")
  if shape["documents_cut"]:
    logging.info("%s: %d document(s) longer than %d lines were cut into %d pieces of at most "
                 "that many lines (each a document from here on), so that a window's memory "
                 "stays bounded.", config.input_file, shape["documents_cut"],
                 reading.MAX_DOCUMENT_LINES, shape["pieces"])
  per_shard, num_shards = shard_layout(config, num_documents)
  run_config = {**dataclasses.asdict(config), "documents_per_shard": per_shard,
                "num_shards": num_shards, "window_documents": window_documents(config, per_shard),
                "vocab_sha256": io_files.file_sha256(config.vocab_file)}
  metadata = records.cached_records(
      shards.metadata_path(config.output_file), run_config,
      lambda: _make_shards(config, run_config, files, shape, num_workers, beam))
  report_structure(config, metadata["counts"])
  return metadata


def shard_layout(config: instances.DataConfig, num_documents: int) -> Tuple[int, int]:
  """(documents a shard's share of the corpus comes to, number of shards) for a corpus of
  `num_documents`."""
  per_shard = config.documents_per_shard
  if config.num_output_shards:
    per_shard = math.ceil(num_documents / config.num_output_shards)
  return per_shard, math.ceil(num_documents / per_shard)


def window_documents(config: instances.DataConfig, per_shard: int) -> int:
  """Documents in a window: a shard's worth, at most --documents_per_shard (which bounds a
  worker's memory also when --num_output_shards makes shards larger)."""
  return min(per_shard, config.documents_per_shard)


# Below these, the input's structure is probably wrong: google-research's data has documents of
# many sentences, and about half of the instances take a random next segment.
_MIN_SENTENCES_PER_DOCUMENT = 2.0

_MAX_RANDOM_NEXT_SHARE = 0.7


def structure_warnings(config: instances.DataConfig, counts: Dict[str, int]) -> List[str]:
  """What looks wrong in the input's structure (one sentence a line, blank lines between
  documents), from the counts of a run."""
  documents, sentences = counts["documents"], counts.get("sentences", 0)
  warnings = []
  if config.num_output_shards and documents < config.num_output_shards:
    warnings.append(
        f"only {documents} document(s) for --num_output_shards={config.num_output_shards}: a "
        "shard holds whole documents, and a document ends at a blank line. Put a blank line "
        "between documents (a text without blank lines is one document).")
  elif config.num_output_shards:
    per_shard, num_shards = shard_layout(config, documents)
    if num_shards != config.num_output_shards:
      warnings.append(
          f"--num_output_shards={config.num_output_shards} made {num_shards} shards: a shard "
          f"holds {per_shard} whole documents of the {documents}. Pick a number of shards that "
          "the document count divides more evenly, or leave the flag out.")
  if sentences and sentences / documents < _MIN_SENTENCES_PER_DOCUMENT:
    cost = ("next-sentence pairs cannot come from it" if config.next_sentence_prediction else
            "an instance (whole sentences of one document) holds one sentence")
    warnings.append(
        f"{sentences / documents:.2f} sentences per document: with a blank line after (nearly) "
        f"every line, each document is one sentence and {cost}. Put one sentence a line and "
        "blank lines only between documents"
        + (" (--clean also ends a document where it drops a line)." if config.clean != "none"
           else "."))
  if (counts.get("document_breaks") == 0 and sentences > 1
      and (counts.get("documents_cut") or documents == 1)):
    if config.next_sentence_prediction:
      learns = ("next-sentence prediction then learns whether two lines are neighbours in the "
                "file (its 'next' segment is the lines that follow, its random one lines of "
                "another piece of the same stretch): for comments, whether two comments sit side "
                "by side, not whether a text goes on. Pass --next_sentence_prediction=false "
                "(masked LM only), or put a blank line between threads (documents)")
    else:
      learns = ("an instance then packs neighbouring lines, whatever text they belong to; put "
                "a blank line between threads (documents) to keep them apart")
    warnings.append(
        f"no blank line in the input: each file is one document (cut into pieces of "
        f"{reading.MAX_DOCUMENT_LINES} lines), and {learns}. (If each file is meant as one "
        "document, this is expected.)")
  share = counts["random_next"] / counts["instances"] if counts["instances"] else 0.0
  if share > _MAX_RANDOM_NEXT_SHARE:
    warnings.append(f"{100 * share:.0f}% of the instances have a random next segment (about "
                    "50% is expected): the documents are too short to give real next segments.")
  return warnings


def report_structure(config: instances.DataConfig, counts: Dict[str, int]) -> None:
  """Logs documents, sentences per document and the next-sentence balance, and warns on what
  looks like a mis-structured input."""
  documents, instances = counts["documents"], counts["instances"]
  logging.info("%s: %d documents, %s sentences (%.1f a document), %d instances, %.0f%% with a "
               "random next segment.", config.input_file, documents,
               counts.get("sentences", "?"), counts.get("sentences", 0) / max(documents, 1),
               instances, 100 * counts["random_next"] / max(instances, 1))
  for warning in structure_warnings(config, counts):
    logging.warning("%s: %s", config.input_file, warning)


def _make_shards(config: instances.DataConfig, run_config: Dict[str, Any], files: Sequence[str],
                 shape: Dict[str, int], num_workers: int, beam: Optional[Any] = None
                 ) -> Dict[str, Any]:
  """Writes the shards that OUTPUT_FILE.progress/ does not record as done (locally, or with
  `beam`, a beam_pipelines.PretrainingRun, by one Beam pipeline); returns the metadata's counts,
  files and record counts."""
  num_shards, window_size = run_config["num_shards"], run_config["window_documents"]
  num_windows = math.ceil(shape["documents"] / window_size)
  _check_resumable(config, run_config)
  output = config.output_file
  todo_shards = [i for i in range(num_shards) if not shards.shard_done(output, i, num_shards)]
  logging.info("%d documents -> %d window(s) of up to %d documents, each dealt over %d "
               "shard(s); %d shard(s) already done.", shape["documents"], num_windows,
               window_size, num_shards, num_shards - len(todo_shards))
  if not todo_shards and gfile.exists(shards.counts_path(output)):
    totals = io_files.read_json(shards.counts_path(output))
  elif beam is not None:
    totals = beam.make_shards(window_size, num_shards, todo_shards)
    shards.check_instances(config, totals)  # the pipeline writes no shard when there is no instance
    io_files.write_json_atomic(shards.counts_path(output), totals)
  else:
    totals = shards.make_shards_locally(config, shards.scratch_dir(output, run_config), files,
                                        num_windows, window_size, num_shards, todo_shards,
                                        num_workers)
  pattern = f"{output}-*-of-{num_shards:05d}"
  logging.info("Wrote %d instances to %d shard(s): %s", totals["instances"], num_shards, pattern)
  names = [os.path.basename(records.shard_name(output, i, num_shards)) for i in range(num_shards)]
  counts = {**totals, **{name: shape[name] for name in ("document_breaks", "documents_cut")}}
  return {"file_pattern": pattern, "counts": counts, "files": names,
          "record_counts": {name: io_files.read_json(shards.shard_progress(output, i))["records"]
                            for i, name in enumerate(names)}}


FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("input_file", None, "Input raw text file (or comma-separated list of "
                      "files/globs; local or gs://).")
  flags.DEFINE_string("output_file", None, "Output TF example file; shards are named "
                      "OUTPUT_FILE-00000-of-000NN.")
  flags.DEFINE_string("vocab_file", None, "The vocabulary file that the BERT model was trained on.")
  flags.DEFINE_bool("do_lower_case", None, "Whether to lower case the input text. Default: "
                    "inferred from the vocab; a contradiction is an error.")
  flags.DEFINE_bool("do_whole_word_mask", False, "Whether to use whole word masking rather than "
                    "per-WordPiece masking.")
  flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length.")
  flags.DEFINE_integer("max_predictions_per_seq", 20, "Maximum number of masked LM predictions "
                       "per sequence.")
  flags.DEFINE_integer("random_seed", 12345, "Random seed for data generation.")
  flags.DEFINE_integer("dupe_factor", 10, "Number of times to duplicate the input data (with "
                       "different masks).")
  flags.DEFINE_float("masked_lm_prob", 0.15, "Masked LM probability.")
  flags.DEFINE_float("short_seq_prob", 0.1, "Probability of creating sequences which are shorter "
                     "than the maximum length.")
  flags.DEFINE_integer("num_output_shards", None, "(bert_tf) Number of output shards; by default "
                       "one per --documents_per_shard documents.")
  flags.DEFINE_integer("documents_per_shard", 2000, "(bert_tf) Documents per shard when "
                       "--num_output_shards is not set; bounds memory per worker.")
  flags.DEFINE_integer("num_workers", os.cpu_count() or 1, "(bert_tf) Worker processes.")
  beam_flags.define_flags()
  flags.DEFINE_enum("clean", "none", ["none", *cleaning.RECIPES], "(bert_tf) Clean each line "
                    "first (see bert_tf.corpus.clean_text; duplicates are not removed here).")
  flags.DEFINE_enum("masking", "static", list(instances.MASKING_MODES), "(bert_tf) static: masks "
                    "drawn here, a new one for each of the --dupe_factor copies (google-research); "
                    "dynamic: unmasked records, masked afresh every epoch by run_pretraining.")
  flags.DEFINE_bool("next_sentence_prediction", True, "(bert_tf) false: one-segment instances of "
                    "whole sentences of a document, no next_sentence_labels; run_pretraining "
                    "then trains the masked LM only.")
  flags.mark_flags_as_required(["input_file", "output_file", "vocab_file"])


def main(argv: Sequence[str]) -> None:
  # A bad flag or file: one line, no traceback. Arguments after `--` are Beam's (with --runner).
  with cli_errors.user_errors(None if FLAGS.runner else argv):
    beam_options = beam_flags.pipeline_options(argv)
    if not io_files.gfile.exists(FLAGS.vocab_file):  # io.gcs's preflight would import TensorFlow
      raise ValueError(f"--vocab_file={FLAGS.vocab_file}: nothing exists at this path. Check "
                       f"it (`ls -ld {FLAGS.vocab_file}`).")
    given = FLAGS.do_lower_case if FLAGS["do_lower_case"].present else None
    config = instances.DataConfig(
        input_file=FLAGS.input_file, output_file=FLAGS.output_file, vocab_file=FLAGS.vocab_file,
        do_lower_case=tokenization.resolve_do_lower_case(FLAGS.vocab_file, given),
        do_whole_word_mask=FLAGS.do_whole_word_mask, max_seq_length=FLAGS.max_seq_length,
        max_predictions_per_seq=FLAGS.max_predictions_per_seq, random_seed=FLAGS.random_seed,
        dupe_factor=FLAGS.dupe_factor, masked_lm_prob=FLAGS.masked_lm_prob,
        short_seq_prob=FLAGS.short_seq_prob, num_output_shards=FLAGS.num_output_shards,
        documents_per_shard=FLAGS.documents_per_shard, clean=FLAGS.clean, masking=FLAGS.masking,
        next_sentence_prediction=FLAGS.next_sentence_prediction)
    create_pretraining_data(config, FLAGS.num_workers, beam_options)


if __name__ == "__main__":
  define_flags()
  app.run(main)
