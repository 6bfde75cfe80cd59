"""Atomic outputs survive a killed writer; derived file names cannot leave their directory."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from bert_tf.io import files as io_files
from conftest import PROJECT_ROOT


def test_a_writer_killed_mid_write_leaves_no_file_under_the_real_name(tmp_path):
  target = tmp_path / "predictions.json"
  script = textwrap.dedent(f"""
      import sys, time
      import tensorflow as tf
      from bert_tf.io import files as io_files
      with io_files.atomic_output({str(target)!r}) as temporary:
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
  io_files.write_json_atomic(str(target), {"f1": 1.0})
  with pytest.raises(RuntimeError):
    with io_files.atomic_output(str(target)) as temporary:
      with open(temporary, "w", encoding="utf-8") as f:
        f.write("{")
      raise RuntimeError("crash")
  assert io_files.read_json(str(target)) == {"f1": 1.0}
  assert [p.name for p in tmp_path.iterdir()] == ["eval_results.json"]


@pytest.mark.parametrize("name, expected", [
    ("predictions.json", "predictions.json"),
    ("export/hf/config.json", "export/hf/config.json"),
    ("a/../b.json", "b.json"),
])
def test_join_under_keeps_names_inside(name, expected):
  assert io_files.join_under("/out", name) == os.path.join("/out", expected)
  assert io_files.join_under("gs://bucket/out", name) == f"gs://bucket/out/{expected}"


@pytest.mark.parametrize("name", ["../x.json", "a/../../x", "..", "/etc/passwd", "gs://other/x",
                                  "", ".", "a\\..\\..\\x"])
def test_join_under_refuses_names_that_escape(name):
  with pytest.raises(ValueError, match="is not a file name inside /out.*no '\\.\\.'"):
    io_files.join_under("/out", name)


def test_gfile_on_local_paths_behaves_as_tf_io_gfile(tmp_path):
  """Python's file functions stand in for tf.io.gfile's on local paths: same globs (names with a
  leading dot too), same text (UTF-8; lines end at "\\n" and lose any "\\r"), same stat length."""
  for name in ("a.txt", ".hidden.txt", "b.json"):
    (tmp_path / name).write_bytes("한국어\r\nline two\rthree\n".encode("utf-8"))
  (tmp_path / "sub").mkdir()
  for pattern in ("*", "*.txt", "?.txt", "[ab].*", "sub", "missing*"):
    assert (sorted(io_files.gfile.glob(str(tmp_path / pattern)))
            == sorted(tf.io.gfile.glob(str(tmp_path / pattern))))
  path = str(tmp_path / "a.txt")
  with io_files.gfile.GFile(path) as ours, tf.io.gfile.GFile(path) as theirs:
    assert list(ours) == list(theirs) == ["한국어\n", "line twothree\n"]
  with io_files.gfile.GFile(path) as ours, tf.io.gfile.GFile(path) as theirs:
    assert ours.read() == theirs.read() == "한국어\r\nline two\rthree\n"
  written = str(tmp_path / "written.txt")
  with io_files.gfile.GFile(written, "w") as f:
    f.write("한국어\r\n\n")
  assert (tmp_path / "written.txt").read_bytes() == "한국어\r\n\n".encode("utf-8")
  assert io_files.gfile.stat(path).length == tf.io.gfile.stat(path).length
  assert io_files.gfile.isdir(str(tmp_path / "sub")) and not io_files.gfile.isdir(path)
  io_files.gfile.makedirs(str(tmp_path / "sub" / "deeper"))
  io_files.gfile.makedirs(str(tmp_path / "sub" / "deeper"))  # exists already: fine
  with pytest.raises(FileExistsError):
    io_files.gfile.rename(path, str(tmp_path / "b.json"))
  io_files.gfile.rename(path, str(tmp_path / "b.json"), overwrite=True)
  assert not io_files.gfile.exists(path) and io_files.gfile.exists(str(tmp_path / "b.json"))


def test_gfile_and_atomic_outputs_on_urls_go_through_tf_io_gfile():
  """ram:// stands in for gs://."""
  io_files.write_json_atomic("ram://io_utils_test/out/results.json", {"f1": 1.0})
  assert tf.io.gfile.listdir("ram://io_utils_test/out") == ["results.json"]
  assert io_files.read_json("ram://io_utils_test/out/results.json") == {"f1": 1.0}
  assert io_files.list_files("ram://io_utils_test/out/*.json") == [
      "ram://io_utils_test/out/results.json"]

