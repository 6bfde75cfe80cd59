"""run_classifier.py as a user runs it: bad input stops it with one line and writes nothing;
killed and preempted, it resumes to the weights of an uninterrupted run."""

import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest

from tests import processes

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "classifier"


def test_bad_tsv_line_stops_the_script_with_one_line(tmp_path):
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  (data_dir / "train.tsv").write_text("good one\t1\nfine too\t0\n", encoding="utf-8")
  (data_dir / "dev.tsv").write_text("a sentence\t1\nanother\tone\t0\n", encoding="utf-8")
  out = tmp_path / "out"
  command = [sys.executable, str(ROOT / "run_classifier.py"), "--task_name=tsv",
             f"--data_dir={data_dir}", f"--vocab_file={SAMPLE / 'vocab.txt'}",
             f"--bert_config_file={SAMPLE / 'bert_config.json'}", "--do_train=True",
             "--do_eval=True", "--max_seq_length=32", f"--output_dir={out}"]
  result = subprocess.run(command, cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode != 0 and "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert errors == [f"error: {data_dir / 'dev.tsv'}, line 2: expected 2 tab-separated columns, "
                    "found 3. A stray tab inside a sentence (or a missing one) shifts the "
                    "columns: fix or remove that line."], result.stderr[-2000:]
  assert not list(out.glob("*.tf_record")) and not list(out.glob("ckpt-*"))


def _start_classifier(output_dir, log, pack_sequences=True, **overrides):
  """Starts a tiny fine-tuning run on the bundled NSMC sample: 6 epochs of 15 steps (packed: of
  its rows, about 16 examples a step), dropout on, a checkpoint every 5 steps and the best one by
  accuracy kept at each epoch's evaluation (`overrides`: flag values that replace these; None
  drops the flag)."""
  command = [sys.executable, str(ROOT / "run_classifier.py"), "--task_name=nsmc",
             f"--pack_sequences={pack_sequences}",
             f"--data_dir={SAMPLE / 'nsmc'}", f"--vocab_file={SAMPLE / 'vocab.txt'}",
             f"--bert_config_file={SAMPLE / 'bert_config.json'}", "--max_seq_length=32",
             "--train_batch_size=16", "--eval_batch_size=16", "--learning_rate=1e-3",
             "--num_train_epochs=6", "--save_checkpoints_steps=5", "--iterations_per_loop=5",
             "--do_train", "--do_eval", "--keep_best_by=accuracy", f"--output_dir={output_dir}"]
  command = [arg for arg in command if arg.split("=")[0][2:] not in overrides] + [
      f"--{name}={value}" for name, value in overrides.items() if value is not None]
  with open(log, "w", encoding="utf-8") as stderr:
    return subprocess.Popen(command, cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                            stdout=subprocess.DEVNULL, stderr=stderr)


@pytest.mark.parametrize("pack_sequences", [True, False])
def test_killed_and_preempted_run_resumes_to_the_same_weights(tmp_path, pack_sequences):
  """Interrupted three times, a run keeping the best by accuracy ends like an uninterrupted one
  (packed rows and google-research's padded batches alike)."""
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  uninterrupted = _start_classifier(straight, tmp_path / "straight.log", pack_sequences)
  try:
    # The padded run ends at step 90; the packed one's last step depends on how its rows fill.
    processes.kill_preempt_kill(lambda log: _start_classifier(resumed, log, pack_sequences),
                                resumed, (15, 40, 65), None if pack_sequences else 90, tmp_path)
    last = _start_classifier(resumed, tmp_path / "last.log", pack_sequences)
    try:
      assert last.wait(timeout=900) == 0, (tmp_path / "last.log").read_text()[-3000:]
    finally:
      processes.stop(last)
    assert "Resumed from" in (tmp_path / "last.log").read_text()
    assert uninterrupted.wait(timeout=900) == 0, (tmp_path / "straight.log").read_text()[-3000:]
  finally:
    processes.stop(uninterrupted)
  processes.assert_same_final_checkpoint(straight, resumed)
  # The same evaluation picked the same best checkpoint, and it is complete.
  processes.assert_same_best(straight, resumed)


def test_sigterm_in_a_long_loop_exits_after_a_step_and_a_save(tmp_path):
  """With 10-minute loops of up to 100,000 steps, a SIGTERM in the middle of one saves the step
  it reached and exits (the seconds that takes are printed, shown with -s); waiting for the
  loop's end would run past the 120 s the test waits."""
  out, log = tmp_path / "out", tmp_path / "run.log"
  process = _start_classifier(out, log, num_train_epochs=10000, do_eval=None, keep_best_by=None,
                              eval_every_epoch="false", iterations_per_loop=100000,
                              save_checkpoints_steps=100000, max_seconds_per_loop=600)
  try:
    status, seconds = processes.interrupt_after(
        process, lambda: re.search(r"step 1/\d+ ", log.read_text()) is not None, 2.0,
        signal.SIGTERM)
  finally:
    processes.stop(process)
  print(f"SIGTERM to exit in a long loop: {seconds:.2f} s")
  stopped = re.search(r"Stopped by SIGTERM at step (\d+) after saving", log.read_text())
  assert status == 1 and stopped, log.read_text()[-3000:]
  assert (out / f"ckpt-{stopped.group(1)}.index").exists() and int(stopped.group(1)) > 1


def test_swapped_text_and_label_columns_stop_with_one_short_line(tmp_path):
  """google-research's column order is text, label; --text_a_column=1 --label_column=0 swaps
  them, which used to train a classifier of as many classes as reviews and exit 0."""
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  for source, name in (("ratings_train.txt", "train.tsv"), ("ratings_test.txt", "dev.tsv")):
    rows = [line.split("\t") for line in
            (SAMPLE / "nsmc" / source).read_text(encoding="utf-8").splitlines()[1:]]
    (data_dir / name).write_text("".join(f"{text}\t{label}\n" for _, text, label in rows),
                                 encoding="utf-8")
  out = tmp_path / "out"
  error = processes.user_error(
      str(ROOT / "run_classifier.py"), "--task_name=tsv", f"--data_dir={data_dir}",
      "--text_a_column=1", "--label_column=0", f"--vocab_file={SAMPLE / 'vocab.txt'}",
      f"--bert_config_file={SAMPLE / 'bert_config.json'}", "--do_train", "--do_eval",
      "--max_seq_length=32", f"--output_dir={out}")
  assert error.startswith(f"error: {data_dir / 'train.tsv'}: --label_column=0 looks like text, "
                          "not labels: ")
  assert not list(out.glob("*.tf_record")) and not list(out.glob("ckpt-*"))  # no work done
