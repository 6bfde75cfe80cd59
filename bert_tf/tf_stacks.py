"""The two TensorFlow stacks bert_tf installs and tests, and which one this Python runs.

TensorFlow 2.20 (requirements.txt, requirements-tpu.txt) is the default. TensorFlow 2.19
(requirements-tf219.txt, requirements-tpu-tf219.txt) is kept because tensorflow-tpu 2.19.1 with
libtpu 0.0.10 is the pair in the newest TF-on-TPU recipe Google published
(docs/installation-and-hardware.md, "Two TensorFlow stacks, and why"). `make test` and
`make test-tf219` run the code on each; neither ran on a TPU.
"""

import dataclasses
import pathlib
import re
from typing import Optional

import tensorflow as tf

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent

# The TPU generations of Google's TensorFlow TPU software versions (Cloud TPU, "TPU software
# versions": v2 to v6e, up to TF 2.18). Cloud TPU's TPU7x (Ironwood) page: "TensorFlow is not
# supported". Neither page covers TF 2.19 or 2.20; nothing here ran on a TPU.
TPU_GENERATIONS = ("v2", "v3", "v4", "v5e", "v5p", "v6e")
# Accelerator-type prefixes (GCE metadata `accelerator-type`, e.g. v5litepod-8) that are not the
# generation's name.
_GENERATION_ALIASES = {"v5litepod": "v5e"}


@dataclasses.dataclass(frozen=True)
class Stack:
  """One pinned stack: its TensorFlow minor version, requirements files and make targets."""
  tensorflow: str
  requirements: str
  tpu_requirements: str
  install: str
  install_tpu: str
  venv: str
  google_tpus: str  # Which TPUs Google's own recipe for this TensorFlow names, and where.

  def tpu_pin(self, package: str) -> Optional[str]:
    """The version its TPU requirements file pins `package` to, or None."""
    return pinned_version(package, PROJECT_ROOT / self.tpu_requirements)

  def tpu_reinstall(self) -> str:
    """The pip command that puts the TPU wheels back over the plain TensorFlow wheel."""
    return f"pip install --no-deps --force-reinstall -r {self.tpu_requirements}"


STACKS = (
    Stack(tensorflow="2.20", requirements="requirements.txt",
          tpu_requirements="requirements-tpu.txt", install="install", install_tpu="install-tpu",
          venv=".venv", google_tpus="none published"),
    Stack(tensorflow="2.19", requirements="requirements-tf219.txt",
          tpu_requirements="requirements-tpu-tf219.txt", install="install-tf219",
          install_tpu="install-tpu-tf219", venv=".venv-tf219",
          google_tpus="v5p, v6e (keras-io, keras_rs distributed_embedding_tf)"),
)
DEFAULT = STACKS[0]


def pinned_version(package: str, requirements: pathlib.Path) -> Optional[str]:
  """The `package==X` pin of a requirements file, or None (no file, e.g. an installed copy)."""
  if not requirements.exists():
    return None
  match = re.search(rf"^{re.escape(package)}==(\S+)", requirements.read_text(), re.MULTILINE)
  return match.group(1) if match else None


def stack_for(tf_version: str) -> Optional[Stack]:
  """The stack of a TensorFlow version ('2.19.1' is the 2.19 stack), or None for any other."""
  minor = ".".join(tf_version.split(".")[:2])
  return next((stack for stack in STACKS if stack.tensorflow == minor), None)


def installed() -> Optional[Stack]:
  """The stack of the TensorFlow this Python imports, or None."""
  return stack_for(tf.__version__)


def tpu_generation(accelerator_type: str) -> str:
  """The generation of a TPU accelerator type: 'v5litepod-8' is 'v5e', 'tpu7x-8' is 'tpu7x'."""
  prefix = accelerator_type.strip().lower().split("-")[0]
  return _GENERATION_ALIASES.get(prefix, prefix)


def tensorflow_runs_on(accelerator_type: str) -> bool:
  """Whether TensorFlow has a TPU build for this accelerator type's generation (not TPU7x)."""
  return tpu_generation(accelerator_type) in TPU_GENERATIONS
