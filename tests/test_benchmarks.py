"""Logic inside the benchmarks (no timings asserted): results file, GPU peaks, trainer set-up."""

import dataclasses
import importlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import common, gpu_squad, pretraining_scale, train_step
from bert_tf.checkpoints import configs
from bert_tf.corpus import clean_text
from conftest import PROJECT_ROOT, shared_path

TINY = configs.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
                          num_attention_heads=2, intermediate_size=16,
                          max_position_embeddings=gpu_squad.SEQ_LENGTH)


def test_merge_results_keeps_other_entries(tmp_path):
  path = str(tmp_path / "results.json")
  common.merge_results("a", {"x": 1}, path)
  common.merge_results("b", {"y": "한국어"}, path)
  common.merge_results("a", {"x": 2}, path)
  assert json.loads(open(path, encoding="utf-8").read()) == {"a": {"x": 2}, "b": {"y": "한국어"}}
  assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_gpu_peaks():
  assert gpu_squad.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
  assert gpu_squad.peak_tflops("NVIDIA H100 PCIe") == 756.0
  assert gpu_squad.peak_tflops("NVIDIA L40S") == 362.0
  assert gpu_squad.peak_tflops("NVIDIA L4") == 121.0
  assert gpu_squad.peak_tflops("Tesla T4") == 65.0
  assert gpu_squad.peak_tflops("NVIDIA GeForce RTX 4090") is None


def test_gpu_trainer_runs_timed_steps_on_cpu(tmp_path):
  run = gpu_squad.make_trainer(TINY, tf.distribute.get_strategy(), global_batch=2, steps=2,
                               xla=False, policy="float32", output_dir=str(tmp_path))
  timing = common.time_training_steps(run, steps=2)
  assert run.step == 3  # One compiling step, then the two timed ones.
  assert timing["seconds_per_step"] > 0 and timing["checkpoint_seconds"] > 0


def test_recombined_corpus_is_new_lines_of_real_sentences(tmp_path):
  """Each line joins two different given sentences, so de-duplication keeps (nearly) all."""
  sentences = [f"문장 번호 {i} 입니다" for i in range(60)]
  files = pretraining_scale.write_recombined(str(tmp_path), sentences, lines=250,
                                             lines_per_file=100)
  assert [os.path.basename(f) for f in files] == ["raw-00000.txt", "raw-00001.txt",
                                                  "raw-00002.txt"]
  texts = [open(f, encoding="utf-8").read() for f in files]
  (tmp_path / "again").mkdir()
  again = pretraining_scale.write_recombined(str(tmp_path / "again"), sentences, 250, 100)
  assert [open(f, encoding="utf-8").read() for f in again] == texts  # seeded
  documents = [d for text in texts for d in text.split("\n\n") if d.strip()]
  assert len(documents) == 25 and all(len(d.split("\n")) == 10 for d in documents)
  lines = [line for text in texts for line in text.splitlines() if line]
  assert len(lines) == 250
  known = set(sentences)
  for line in lines:
    words = line.split()
    first, second = " ".join(words[:4]), " ".join(words[4:])
    assert first in known and second in known and first != second, line
  assert pretraining_scale.count_lines(files[0]) == dict(lines=100, documents=10)
  counts = clean_text.clean_files(str(tmp_path / "raw-*.txt"), str(tmp_path / "clean.txt"))
  assert counts["kept"] == len(set(lines)) and counts["kept"] > 240


def test_pretraining_scale_smoke_run(tmp_path):
  """The benchmark end to end at a tiny scale (its figures are not asserted, only their shape)."""
  shared_path("corpus_ko")
  shared_path("vocabs", "kcbert-base-vocab.txt")
  results = tmp_path / "results.json"
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.pretraining_scale", "--scales", "0.02,0.04",
       "--num_workers", "1"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", common.RESULTS_VARIABLE: str(results)})
  assert result.returncode == 0, result.stderr[-3000:]
  entry = json.loads(results.read_text(encoding="utf-8"))["pretraining_scale"]
  assert list(entry["scales"]) == ["x0.02", "x0.04"]
  for scale, factor in (("x0.02", 0.02), ("x0.04", 0.04)):
    run = entry["scales"][scale]
    assert run["lines"] == round(factor * entry["corpus_ko_sentences"])
    assert 0 < run["clean_text"]["lines_kept"] <= run["lines"]
    assert run["create_pretraining_data"]["instances"] > 0
  ratios = entry["ratio_largest_vs_smallest"]
  assert set(ratios) == {"clean_text", "create_pretraining_data"}
  assert all({"speed", "speed_per_cpu_second", "peak_rss"} <= set(r) for r in ratios.values())


def test_train_step_split_times_each_part_alone(tmp_path, monkeypatch):
  """The forward+backward loop leaves the weights alone; the update loop is the Trainer's real
  step (weights and step counter move) on fixed gradients, so neither part is derived by
  subtraction."""
  monkeypatch.setattr(train_step, "BERT_MINI", dataclasses.replace(TINY, vocab_size=50))
  task = train_step.Task(seq_length=16, batch_size=4, predictions=3)
  ours = train_step.OurSide("pretraining", task, str(tmp_path), steps=2, jit_compile=False)
  weights = [v.numpy() for v in ours.run.model.trainable_variables]
  updated = [v.numpy() for v in ours.update_run.model.trainable_variables]
  steps, update_steps = ours.run.step, ours.update_run.step
  ours.forward_backward(ours.steps)
  assert all((w == v.numpy()).all() for w, v in zip(weights, ours.run.model.trainable_variables))
  times = ours.round()
  assert set(times) == {"seconds", "forward_backward_seconds", "update_seconds"}
  assert all(value > 0 for value in times.values())
  assert ours.run.step == steps + 2 and ours.update_run.step == update_steps + 2
  assert any((w != v.numpy()).any()
             for w, v in zip(updated, ours.update_run.model.trainable_variables))
  # Its loss is the fixed one whatever the batch: no forward pass runs in it.
  total, done, _ = ours.update_run._train_loop(ours.update_iterator, ours.steps)  # pylint: disable=protected-access
  assert int(done) == int(ours.steps) and float(total) / int(done) == float(ours.fixed_loss)


def test_quick_runs_write_inside_the_repository_and_say_where(capsys):
  """`python -m benchmarks --quick` keeps its smoke figures apart from results.json, in a file of
  the repository that git ignores, and its last line names that file."""
  if tf.config.list_physical_devices("GPU"):
    pytest.skip("gpu_squad runs on a GPU; this test needs a figure that is skipped at once")
  suite = importlib.import_module("benchmarks.__main__")
  summary = suite.main(["--quick", "--only", "gpu_squad"])
  assert summary["rows"][0]["ours"] == "skipped: no GPU on this machine"
  results = pathlib.Path(suite.QUICK_RESULTS)
  assert results.parent == PROJECT_ROOT / "benchmarks" and results != common.RESULTS
  assert json.loads(results.read_text())["summary_partial"]["command"] == (
      "python -m benchmarks --quick --only gpu_squad")
  ignored = subprocess.run(["git", "check-ignore", "-q", str(results)], cwd=PROJECT_ROOT,
                           check=False)
  assert ignored.returncode == 0, f"git does not ignore {results}"
  assert capsys.readouterr().out.rstrip().endswith(
      f"Results written to {results} (a smoke run: not benchmarks/results.json).")


def test_hf_dynamic_padding_pads_each_batch_to_its_longest(tmp_path):
  """The PyTorch user's run, a whole process: one batch holding every example is padded to the
  longest of them (not to --max_seq_length), so its useful share is tokens / (n x longest)."""
  pytest.importorskip("torch")
  pytest.importorskip("transformers")
  words = ["good", "bad", "movie", "very", "not"]
  (tmp_path / "vocab.txt").write_text(
      "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n", encoding="utf-8")
  reviews = ["good movie", "very very bad movie not good", "bad", "not bad"]
  (tmp_path / "ratings_train.txt").write_text(
      "id\tdocument\tlabel\n" + "".join(f"{i}\t{text}\t{i % 2}\n" for i, text in
                                        enumerate(reviews)), encoding="utf-8")
  (tmp_path / "config.json").write_text(TINY.to_json_string(), encoding="utf-8")
  result = subprocess.run(
      [sys.executable, str(PROJECT_ROOT / "benchmarks" / "hf_dynamic_padding.py"),
       "--task", "nsmc", "--data_dir", str(tmp_path), "--vocab_file", str(tmp_path / "vocab.txt"),
       "--config", str(tmp_path / "config.json"), "--train_batch_size", "4",
       "--max_seq_length", "64", "--num_train_epochs", "2", "--threads", "1"],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  figures = json.loads(result.stdout.strip().splitlines()[-1])
  lengths = [len(text.split()) + 2 for text in reviews]  # [CLS] words [SEP]
  assert figures["examples"] == 8 and figures["steps"] == 2 and figures["threads"] == 1
  assert figures["useful_token_share"] == round(sum(lengths) / (4 * max(lengths)), 4)
  assert figures["examples_per_sec"] > 0 and figures["seconds_since_process_start"] > 0


def test_useful_token_shares_padded_bucketed_and_packed():
  from benchmarks import useful_tokens  # pylint: disable=import-outside-toplevel
  figures = useful_tokens.shares(np.array([10, 20, 30, 100]), 128)
  assert figures["padded"] == round(160 / (4 * 128), 4)
  assert figures["bucket_lengths"] == [16, 32, 112]
  assert figures["buckets"] == round(160 / (16 + 32 + 32 + 112), 4)
  # Best fit: 100 + 20 in one row, 30 + 10 in another.
  assert figures["packed"] == round(160 / (2 * 128), 4) and figures["examples_per_packed_row"] == 2


def test_packed_quality_reads_the_packed_log_line_and_compares_sides():
  from benchmarks import packed_quality  # pylint: disable=import-outside-toplevel
  log = ("I1207 02:40:01 task.py:211] Packed training: 7 rows a step hold 32.4 examples on "
         "average (--train_batch_size=32); 263.9 steps an epoch.\n")
  assert packed_quality.packed_rows(log) == dict(rows_per_step=7, examples_per_step=32.4)
  assert packed_quality.packed_rows("I1207 task.py] Training 534 steps.") is None
  runs = dict(packed=[dict(mcc=0.30, steps=520, seconds=10.0), dict(mcc=0.34, steps=520,
                                                                    seconds=12.0)],
              unpacked=[dict(mcc=0.20, steps=534, seconds=20.0), dict(mcc=0.22, steps=534,
                                                                      seconds=22.0)])
  summary = packed_quality.compare(runs, ["mcc"])
  assert summary["packed"]["mcc"] == pytest.approx([0.32, 0.04 / 2 ** 0.5])
  assert summary["unpacked"]["steps"] == [534, 0.0]
  difference = summary["difference"]["mcc"]
  assert difference["packed_minus_unpacked"] == pytest.approx(0.11)
  assert difference["standard_error"] == pytest.approx((0.0008 / 2 + 0.0002 / 2) ** 0.5)
  assert not difference["within_2_standard_errors"]  # 0.11 > 2 x 0.022
  assert "difference" not in packed_quality.compare(dict(packed=runs["packed"]), ["mcc"])


def test_packed_quality_merges_seeds_run_apart_on_the_same_settings():
  from benchmarks import packed_quality  # pylint: disable=import-outside-toplevel

  def entry(seed, mcc, settings=("--num_train_epochs=2.0",)):
    runs = {side: [dict(seed=seed, mcc=mcc, steps=10, seconds=1.0)]
            for side in packed_quality.SIDES}
    return dict(command=f"--seeds {seed}", machine_before=dict(seed=seed), seeds=[seed],
                data="cola", settings=list(settings), runs=runs)

  merged = packed_quality.merge_task(entry(1, 0.2), entry(2, 0.3), ["mcc"])
  assert merged["seeds"] == [1, 2] and merged["machine_before"] == dict(seed=1)
  assert [r["seed"] for r in merged["runs"]["packed"]] == [1, 2]
  assert merged["summary"]["unpacked"]["mcc"][0] == pytest.approx(0.25)
  assert merged["commands"] == ["--seeds 1", "--seeds 2"]
  rerun = packed_quality.merge_task(merged, entry(2, 0.4), ["mcc"])  # seed 2 again: replaced
  assert [r["mcc"] for r in rerun["runs"]["packed"]] == [0.2, 0.4]
  other = entry(3, 0.5, settings=("--num_train_epochs=1.0",))
  assert packed_quality.merge_task(merged, other, ["mcc"]) is other  # other settings: not mixed
