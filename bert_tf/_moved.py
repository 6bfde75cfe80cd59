"""The old flat module names (bert_tf.io_utils, python -m bert_tf.clean_text, ...) after the
grouping into sub-packages: an import of an old name gives the new module itself, and running an
old name with -m prints one line naming the new one and runs that. Installed by bert_tf/__init__.

The standard library only: bert_tf/tpu/compile.py runs where TensorFlow is not installed.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import CodeType, ModuleType
from typing import Optional, Sequence

# Old module under bert_tf -> its new place under bert_tf.
MOVED = {
    "script_flags": "cli.flags",
    "script_errors": "cli.errors",
    "clean_text": "corpus.clean_text",
    "build_vocab": "corpus.build_vocab",
    "create_pretraining_data": "corpus.create_pretraining_data",
    "beam_pipelines": "corpus.beam_pipelines",
    "beam_flags": "corpus.beam_flags",
    "convert_checkpoint": "checkpoints.convert",
    "model_files": "checkpoints.model_files",
    "configs": "checkpoints.configs",
    "export": "serving.export",
    "in_graph_tokenization": "serving.in_graph_tokenization",
    "extract_features": "serving.extract_features",
    "io_utils": "io.files",
    "gcs": "io.gcs",
    "run_lock": "io.run_lock",
    "run_directory": "io.run_directory",
    "tpu_plan": "tpu.plan",
    "tpu_export": "tpu.hlo_export",
    "tpu_compile": "tpu.compile",
    "tpu_chips": "tpu.chips",
}
# Not here: bert_tf.checkpoints and bert_tf.serving, modules once, are the packages now (their
# contents are checkpoints.formats and serving.raw_text); neither ran as a command.
_PACKAGE = "bert_tf"


class _MovedLoader(importlib.abc.Loader):
  """Loads an old name as the new module object; runs it as __main__ for `python -m`."""

  def __init__(self, old: str, new: str):
    self.old, self.new = old, new

  def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[ModuleType]:
    return None

  def exec_module(self, module: ModuleType) -> None:
    # The import system returns what sys.modules holds under the old name after this call.
    sys.modules[self.old] = importlib.import_module(self.new)

  def get_code(self, fullname: str) -> CodeType:
    """What `python -m <old name>` runs (runpy asks for the code): the pointer, then the new
    module as __main__, with the same arguments."""
    print(f"{self.old} moved to {self.new}; running that.", file=sys.stderr)
    return compile(f"import runpy; runpy.run_module({self.new!r}, run_name='__main__', "
                   "alter_sys=True)", f"<{self.old}>", "exec")


class _MovedFinder(importlib.abc.MetaPathFinder):
  """Finds bert_tf.<old name> for every name in MOVED."""

  def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
    package, _, name = fullname.rpartition(".")
    if package != _PACKAGE or name not in MOVED:
      return None
    return importlib.util.spec_from_loader(
        fullname, _MovedLoader(fullname, f"{_PACKAGE}.{MOVED[name]}"))


def install() -> None:
  """Puts the finder first, once, so that an old name never finds a stale copy of the old module
  (e.g. through another checkout's editable install)."""
  if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedFinder())
