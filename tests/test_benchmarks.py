"""Logic inside the benchmarks (no timings asserted): results file, GPU peaks, trainer set-up."""

import json

import tensorflow as tf

from benchmarks import common, gpu_squad
from bert_tf import configs

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
