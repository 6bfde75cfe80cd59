"""Tests for bert_tf.tf_stacks: the two TensorFlow stacks, their files, and TPU generations."""

import pathlib
import re
from typing import List

import pytest
import tensorflow as tf

from bert_tf import tf_stacks

from conftest import PROJECT_ROOT

_TENSORFLOW_PINS = ("tensorflow", "tensorflow-text", "tf-models-official", "tf-keras")


def requirement_lines(name: str) -> List[str]:
  """The requirement lines of a file, comments and blank lines left out."""
  return [line.strip() for line in (PROJECT_ROOT / name).read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]


def test_pinned_version_reads_the_requirements_file(tmp_path: pathlib.Path) -> None:
  requirements = tmp_path / "requirements-tpu.txt"
  requirements.write_text("# libtpu==0.0.1 in a comment\ntensorflow-tpu==2.20.0\nlibtpu==0.0.7\n")
  assert tf_stacks.pinned_version("libtpu", requirements) == "0.0.7"
  assert tf_stacks.pinned_version("tensorflow-tpu", requirements) == "2.20.0"
  assert tf_stacks.pinned_version("jax", requirements) is None
  assert tf_stacks.pinned_version("libtpu", tmp_path / "missing.txt") is None


@pytest.mark.parametrize("version, stack", [
    ("2.20.0", "2.20"), ("2.20.1", "2.20"), ("2.19.1", "2.19"), ("2.19.0", "2.19"),
    ("2.21.0", None), ("2.18.1", None), ("2.2.0", None),
])
def test_a_tensorflow_version_belongs_to_its_minor_versions_stack(version: str, stack) -> None:
  found = tf_stacks.stack_for(version)
  assert (found.tensorflow if found else None) == stack


def test_this_python_runs_one_of_the_stacks() -> None:
  # `make test` runs on 2.20, `make test-tf219` on 2.19: either way a stack, and the right one.
  stack = tf_stacks.installed()
  assert stack is not None and tf.__version__.startswith(stack.tensorflow + ".")


@pytest.mark.parametrize("stack", tf_stacks.STACKS, ids=lambda stack: stack.tensorflow)
def test_each_stack_pins_its_tensorflow_in_both_files(stack: tf_stacks.Stack) -> None:
  requirements = PROJECT_ROOT / stack.requirements
  assert tf_stacks.pinned_version("tensorflow", requirements).startswith(stack.tensorflow + ".")
  assert stack.tpu_pin("tensorflow-tpu").startswith(stack.tensorflow + ".")
  assert re.fullmatch(r"\d+\.\d+\.\d+", stack.tpu_pin("libtpu"))
  assert stack.tpu_reinstall() == (
      f"pip install --no-deps --force-reinstall -r {stack.tpu_requirements}")
  # Its make targets exist.
  makefile = (PROJECT_ROOT / "Makefile").read_text()
  for target in (stack.install, stack.install_tpu):
    assert re.search(rf"^{re.escape(target)}:", makefile, re.MULTILINE), target


def test_the_2_19_stack_differs_from_requirements_txt_only_in_its_tensorflow_pins() -> None:
  def rest(name: str) -> List[str]:
    return [line for line in requirement_lines(name)
            if re.split(r"[=~<>\[ ]", line)[0] not in _TENSORFLOW_PINS]

  assert rest("requirements-tf219.txt") == rest("requirements.txt")
  pins = [line for line in requirement_lines("requirements-tf219.txt")
          if line not in rest("requirements-tf219.txt")]
  assert [re.split(r"[=~]", line)[0] for line in pins] == list(_TENSORFLOW_PINS)
  assert all(re.search(r"==2\.19\.\d+$", line) for line in pins), pins


@pytest.mark.parametrize("accelerator_type, generation, runs", [
    ("v2-8", "v2", True), ("v3-32", "v3", True), ("v4-8", "v4", True),
    ("v5litepod-8", "v5e", True), ("v5p-128", "v5p", True), ("v6e-8", "v6e", True),
    ("tpu7x-8", "tpu7x", False), ("TPU7x-128", "tpu7x", False),
])
def test_tpu_generations_tensorflow_runs_on(accelerator_type: str, generation: str,
                                            runs: bool) -> None:
  assert tf_stacks.tpu_generation(accelerator_type) == generation
  assert tf_stacks.tensorflow_runs_on(accelerator_type) is runs
