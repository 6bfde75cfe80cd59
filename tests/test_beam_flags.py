"""beam_flags: Beam's options after `--` on the command line, and Beam imported only for them."""

import pathlib
import subprocess
import sys

from bert_tf.corpus import instances
from bert_tf.corpus import create_pretraining_data as cpd

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat"]


def _run(tmp_path, *args):
  text = tmp_path / "text.txt"
  text.write_text("the cat .\nthe cat .\n\nthe cat .\n")
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("".join(t + "\n" for t in TOKENS))
  return subprocess.run(
      [sys.executable, "-m", "bert_tf.corpus.create_pretraining_data", f"--input_file={text}",
       f"--output_file={tmp_path / 'out' / 'data'}", f"--vocab_file={vocab}", *args],
      cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


def test_bad_beam_option_is_one_line_and_writes_nothing(tmp_path):
  result = _run(tmp_path, "--runner=DirectRunner", "--", "--regoin=europe-west1")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert "error: Unknown Beam pipeline option(s) after `--`: --regoin" in result.stderr
  assert not (tmp_path / "out").exists()


def test_beam_options_without_runner_are_an_error_and_beam_is_not_imported(tmp_path):
  """Without --runner the tools never import Apache Beam (its import takes seconds), and
  arguments after `--` are an error."""
  script = ("import runpy, sys\n"
            "from bert_tf.corpus import clean_text, create_pretraining_data\n"
            "print('apache_beam' in sys.modules)\n"
            f"sys.argv = ['create_pretraining_data', '--input_file={tmp_path}/text.txt', "
            f"'--output_file={tmp_path}/out/data', '--vocab_file={tmp_path}/vocab.txt', '--', "
            "'--region=europe-west1']\n"
            "runpy.run_module('bert_tf.corpus.create_pretraining_data', run_name='__main__')\n")
  result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300)
  assert result.stdout.strip() == "False"
  assert result.returncode == 1 and "error: Unexpected arguments" in result.stderr


def test_runner_on_the_command_line_writes_the_local_shards(tmp_path):
  text = tmp_path / "text.txt"
  text.write_text("".join(f"the cat {'. ' * (i % 3)}\nthe cat .\n\n" for i in range(12)))
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("".join(t + "\n" for t in TOKENS))
  local = cpd.create_pretraining_data(instances.DataConfig(
      input_file=str(text), output_file=str(tmp_path / "local" / "data"), vocab_file=str(vocab),
      do_lower_case=True, dupe_factor=2, num_output_shards=3))
  result = subprocess.run(
      [sys.executable, "-m", "bert_tf.corpus.create_pretraining_data", f"--input_file={text}",
       f"--output_file={tmp_path / 'beam' / 'data'}", f"--vocab_file={vocab}",
       "--dupe_factor=2", "--num_output_shards=3", "--runner=FnApiRunner", "--",
       "--direct_num_workers=2", "--direct_running_mode=multi_threading"],
      cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "Running a Beam pipeline on FnApiRunner." in result.stderr
  for name in local["files"]:
    assert (tmp_path / "beam" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
