"""The command-line side of the Beam pipelines: --runner, and Beam's options after `--`.

Kept apart from bert_tf.corpus.beam_pipelines so that the tools import Apache Beam only when
--runner is given.
"""

from typing import Any, Optional, Sequence

from absl import flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("runner", None, "Run as an Apache Beam pipeline on this runner "
                      "(DirectRunner, DataflowRunner, FlinkRunner, SparkRunner); Beam's own "
                      "options go after `--`. The output is the same as the local run's.")


def pipeline_options(argv: Sequence[str]) -> Optional[Any]:
  """Beam's pipeline options when --runner is given (checked, see
  beam_pipelines.pipeline_options), else None. `argv` is absl's: the program, then the
  arguments after `--`."""
  if not FLAGS.runner:
    return None
  # Apache Beam, imported with --runner only.
  from bert_tf.corpus import beam_pipelines  # pylint: disable=import-outside-toplevel
  return beam_pipelines.pipeline_options(FLAGS.runner, argv[1:], FLAGS["num_workers"].present)
