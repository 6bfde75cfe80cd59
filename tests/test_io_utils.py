"""Atomic outputs survive a killed writer; derived file names cannot leave their directory."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from bert_tf import io_utils
from conftest import PROJECT_ROOT


def test_a_writer_killed_mid_write_leaves_no_file_under_the_real_name(tmp_path):
  target = tmp_path / "predictions.json"
  script = textwrap.dedent(f"""
      import sys, time
      import tensorflow as tf
      from bert_tf import io_utils
      with io_utils.atomic_output({str(target)!r}) as temporary:
        with tf.io.gfile.GFile(temporary, "w") as f:
          f.write('{{"half": ')
          f.flush()
          print("WRITING", flush=True)
          time.sleep(120)
  """)
  process = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  try:
    assert process.stdout.readline().strip() == "WRITING"
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
  finally:
    if process.poll() is None:
      process.kill()
  assert not target.exists()
  leftovers = [p.name for p in tmp_path.iterdir()]
  assert len(leftovers) == 1 and leftovers[0].startswith(".predictions.json.tmp-")


def test_an_error_inside_the_block_removes_the_temporary_and_keeps_the_old_file(tmp_path):
  target = tmp_path / "eval_results.json"
  io_utils.write_json_atomic(str(target), {"f1": 1.0})
  with pytest.raises(RuntimeError):
    with io_utils.atomic_output(str(target)) as temporary:
      with open(temporary, "w", encoding="utf-8") as f:
        f.write("{")
      raise RuntimeError("crash")
  assert io_utils.read_json(str(target)) == {"f1": 1.0}
  assert [p.name for p in tmp_path.iterdir()] == ["eval_results.json"]


@pytest.mark.parametrize("name, expected", [
    ("predictions.json", "predictions.json"),
    ("export/hf/config.json", "export/hf/config.json"),
    ("a/../b.json", "b.json"),
])
def test_join_under_keeps_names_inside(name, expected):
  assert io_utils.join_under("/out", name) == os.path.join("/out", expected)
  assert io_utils.join_under("gs://bucket/out", name) == f"gs://bucket/out/{expected}"


@pytest.mark.parametrize("name", ["../x.json", "a/../../x", "..", "/etc/passwd", "gs://other/x",
                                  "", ".", "a\\..\\..\\x"])
def test_join_under_refuses_names_that_escape(name):
  with pytest.raises(ValueError, match="is not a file name inside /out.*no '\\.\\.'"):
    io_utils.join_under("/out", name)
