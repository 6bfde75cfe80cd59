"""run_classifier.py as a user runs it: bad input stops it with one line and writes nothing."""

import os
import pathlib
import subprocess
import sys

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
             f"--bert_config_file={SAMPLE / 'bert_config.json'}", "--do_eval=True",
             "--max_seq_length=32", f"--output_dir={out}"]
  result = subprocess.run(command, cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode != 0 and "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert errors == [f"error: {data_dir / 'dev.tsv'}, line 2: expected 2 tab-separated columns, "
                    "found 3. A stray tab inside a sentence (or a missing one) shifts the "
                    "columns: fix or remove that line."], result.stderr[-2000:]
  assert not out.exists() or not list(out.iterdir())
