"""The package install (setup.py, `pip install -e .` in every `make install*`): bert_tf imports from
any directory, from this checkout, with the C tokenizer built in place."""

import importlib.metadata
import json
import pathlib
import shlex
import shutil
import site
import subprocess
import sys
import urllib.parse
from typing import List

import pytest

from conftest import PROJECT_ROOT

# What the import prints from another directory: where bert_tf and its C tokenizer come from.
_WHERE = ("import bert_tf, bert_tf._wordpiece as w, bert_tf.corpus.clean_text; "
          "print(bert_tf.__file__); print(w.__file__)")


def _make_dry_run(target: str, venv: pathlib.Path) -> List[str]:
  """The commands `make TARGET` runs with VENV=venv (all of them: -B); no "Entering directory"
  lines when the tests themselves run under make (`make test`)."""
  dry = subprocess.run(["make", "-n", "-B", "--no-print-directory", target, f"VENV={venv}"],
                       cwd=PROJECT_ROOT,
                       capture_output=True, text=True, check=True)
  return dry.stdout.splitlines()


@pytest.mark.parametrize("target", ["install", "install-gpu", "install-tpu"])
def test_every_install_installs_the_package_editable(tmp_path, target):
  package = _make_dry_run("package", tmp_path)
  assert package == [f"{tmp_path}/bin/python -m pip install -q --no-deps -e .",
                     f"touch {tmp_path}/editable"]
  assert package[0] in _make_dry_run(target, tmp_path)


def test_an_editable_install_imports_from_any_directory_with_the_c_tokenizer(tmp_path):
  """`make package`'s command on a copy of the package, in a new venv: then `import bert_tf` and
  `python -m bert_tf.<tool>` work from another directory and load the copy, whose C tokenizer
  the install built in place. The new venv sees this one's packages through a .pth file, so the
  build needs no network (--no-build-isolation added)."""
  if shutil.which("cc") is None:
    pytest.skip("no C compiler: the install would build no C tokenizer to check")
  source = tmp_path / "checkout"
  shutil.copytree(PROJECT_ROOT / "bert_tf", source / "bert_tf",
                  ignore=shutil.ignore_patterns("*.so", "__pycache__"))
  for name in ("setup.py", "requirements.txt"):
    shutil.copy(PROJECT_ROOT / name, source / name)
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
  python = venv / "bin" / "python"
  purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                           capture_output=True, text=True, check=True).stdout.strip()
  pathlib.Path(purelib, "outer_venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
  command = shlex.split(_make_dry_run("package", venv)[0]) + ["--no-build-isolation"]
  install = subprocess.run(command, cwd=source, capture_output=True, text=True, timeout=600,
                           check=False)
  assert install.returncode == 0, install.stderr[-3000:]
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  where = subprocess.run([python, "-c", _WHERE], cwd=elsewhere, capture_output=True, text=True,
                         timeout=120, check=False)
  assert where.returncode == 0, where.stderr[-3000:]
  package, extension = where.stdout.split()
  assert pathlib.Path(package) == source / "bert_tf" / "__init__.py"
  assert pathlib.Path(extension).parent == source / "bert_tf"  # built in place
  tool = subprocess.run([python, "-m", "bert_tf.corpus.clean_text", "--helpfull"], cwd=elsewhere,
                        capture_output=True, text=True, timeout=120, check=False)
  assert "--output_file" in tool.stdout, tool.stderr[-3000:]  # absl's help exits with 1


def test_this_interpreter_imports_its_editable_checkout_from_any_directory(tmp_path):
  """After `make install`: the .venv's bert_tf is an editable install, imported from the
  checkout it was installed from (a worktree sharing the .venv may see another checkout's), from
  any working directory."""
  # The checkout's own bert_tf.egg-info (left by the editable build, first on sys.path from the
  # checkout) has no direct_url.json; the installed record in site-packages has.
  distributions = list(importlib.metadata.distributions(name="bert_tf"))
  if not distributions:
    pytest.skip("bert_tf is not installed in this interpreter (an environment made before "
                "`make install` installed it): run `make install`, i.e. `pip install -e .`")
  origin = next((json.loads(d.read_text("direct_url.json")) for d in distributions
                 if d.read_text("direct_url.json")), {})
  assert origin.get("dir_info", {}).get("editable"), f"not an editable install: {origin}"
  checkout = pathlib.Path(urllib.parse.urlparse(origin["url"]).path)
  where = subprocess.run([sys.executable, "-c", _WHERE], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, check=False)
  assert where.returncode == 0, where.stderr[-3000:]
  assert pathlib.Path(where.stdout.split()[0]) == checkout / "bert_tf" / "__init__.py"
