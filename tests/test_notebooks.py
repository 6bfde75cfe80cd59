"""Tests for notebooks/: the Colab notebook, executed top to bottom on CPU with the demo's sizes.

Its parameters cell reads BERT_TF_* environment variables, which the kernel inherits: here they
point it at the bundled sample data, a temporary output directory and this checkout, with the
packages already installed.
"""

import json
import pathlib
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import PROJECT_ROOT

NOTEBOOK = PROJECT_ROOT / "notebooks" / "korquad_colab.ipynb"
SAMPLE_SQUAD = PROJECT_ROOT / "sample_data" / "squad_sample.json"
# The demo's model and sequence sizes (run_squad.DEMO_FLAGS), with 1 epoch instead of 60.
DEMO_SIZES = ("--vocab_file=sample_data/vocab.txt --bert_config_file=sample_data/bert_config.json "
              "--max_seq_length=128 --doc_stride=64 --train_batch_size=8 --learning_rate=2e-3 "
              "--num_train_epochs=1 --warmup_proportion=0.1 --iterations_per_loop=4 "
              "--save_checkpoints_steps=4")


def cell_stdout(cell: nbformat.NotebookNode) -> str:
  """What a cell printed (the kernel's own warnings go to stderr)."""
  return "".join(output.get("text", "") for output in cell.get("outputs", [])
                 if output.get("name") == "stdout")


def test_the_notebook_is_committed_without_outputs() -> None:
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  code = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
  assert notebook.metadata.get("accelerator") == "GPU"


def test_the_notebook_fine_tunes_on_cpu_top_to_bottom(tmp_path: pathlib.Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
  output_dir = tmp_path / "output"
  for name, value in {"DATA_DIR": str(SAMPLE_SQUAD.parent), "TRAIN_FILE": str(SAMPLE_SQUAD),
                      "PREDICT_FILE": str(SAMPLE_SQUAD), "MODEL_DIR": "",
                      "OUTPUT_DIR": str(output_dir), "EXTRA_FLAGS": DEMO_SIZES, "RUNTIME": "cpu",
                      "CODE_DIR": str(PROJECT_ROOT), "INSTALL": "0"}.items():
    monkeypatch.setenv(f"BERT_TF_{name}", value)
  for name in ("TPU_NAME", "COLAB_TPU_ADDR", "TF_CONFIG"):
    monkeypatch.delenv(name, raising=False)
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(notebook, timeout=240, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  outputs = [cell_stdout(cell) for cell in notebook.cells if cell.cell_type == "code"]
  doctor = next(text for text in outputs if "python -m bert_tf.doctor" in text)
  assert "Runs here on    CPU" in doctor and "OK: nothing contradicts." in doctor
  # The last cell prints the official scores the training cell's prediction produced.
  scores = json.loads(outputs[-1])
  assert set(scores) >= {"exact_match", "f1"} and 0 <= scores["f1"] <= 100
  assert (output_dir / "predictions.json").exists()
  assert list(output_dir.glob("ckpt-*.index"))  # checkpoints to resume from


def install_commands(runtime: str, tf_stack: str, monkeypatch: pytest.MonkeyPatch) -> list:
  """The commands the notebook's parameter, install and TPU cells run for RUNTIME and TF_STACK,
  recorded instead of run (the cells are executed as they are, with `run` a recorder)."""
  for name, value in {"RUNTIME": runtime, "TF_STACK": tf_stack, "CODE_DIR": str(PROJECT_ROOT),
                      "INSTALL": "1"}.items():
    monkeypatch.setenv(f"BERT_TF_{name}", value)
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
  commands = []
  namespace = {"run": lambda *command: commands.append(command[1:]), "sys": sys,
               "subprocess": subprocess}
  exec(code[0], namespace)  # pylint: disable=exec-used
  for source in code:
    if "pip" in source and "install" in source:
      exec(source, namespace)  # pylint: disable=exec-used
  return [" ".join(command) for command in commands]


@pytest.mark.parametrize("tf_stack, venv", [("2.20", "VENV"), ("2.19", "TF219_VENV")])
def test_the_notebook_installs_a_tpu_runtime_as_make_does(tf_stack, venv, monkeypatch):
  commands = install_commands("tpu", tf_stack, monkeypatch)
  # `$(call install_tpu,$(VENV),requirements.txt,requirements-tpu.txt)` and its 2.19 twin.
  recipes = [line for line in (PROJECT_ROOT / "Makefile").read_text().splitlines()
             if line.strip().startswith("$(call install_tpu,$(" + venv + ")")]
  [recipe] = recipes
  plain, tpu = recipe.strip().rstrip(")").split(",")[2:]
  assert commands == [f"-m pip install -q -r {plain}",
                      f"-m pip install -q --no-deps -e {PROJECT_ROOT}",
                      f"-m pip install -q --no-deps --force-reinstall -r {tpu}"], commands
  assert (PROJECT_ROOT / plain).exists() and (PROJECT_ROOT / tpu).exists()


def test_the_notebook_refuses_a_stack_it_has_no_wheels_for(monkeypatch):
  with pytest.raises(ValueError, match="TF_STACK='2.19' is for the TPU"):
    install_commands("gpu", "2.19", monkeypatch)
  with pytest.raises(ValueError, match="TF_STACK='2.21': use '2.20' or '2.19'"):
    install_commands("tpu", "2.21", monkeypatch)
  assert install_commands("gpu", "2.20", monkeypatch)[0] == (
      "-m pip install -q -r requirements.txt -r requirements-gpu.txt")
