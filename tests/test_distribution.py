"""Tests for bert_tf.distribution: flags, strategy resolution and the early checks."""

import importlib.metadata
import json
import logging
import os
import pathlib
import socket
import subprocess
import sys
import textwrap
from typing import Any, Dict, List, Optional

from absl import flags
import numpy as np
import pytest
import tensorflow as tf

from bert_tf.training import distribution
from bert_tf.training.distribution import StrategyConfig

from conftest import NUM_LOGICAL_CPUS, PROJECT_ROOT

TPU_ENV_VARS = ("COLAB_TPU_ADDR", "TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_CONFIG")


@pytest.fixture(autouse=True)
def no_tpu_env(monkeypatch: pytest.MonkeyPatch) -> None:
  """Keeps TPU variables of the machine running the tests out of every test."""
  for name in TPU_ENV_VARS:
    monkeypatch.delenv(name, raising=False)


def has_gpu() -> bool:
  return bool(tf.config.list_logical_devices("GPU"))


def messages(caplog: pytest.LogCaptureFixture, level: int) -> List[str]:
  return [r.getMessage() for r in caplog.records if r.levelno == level]


# --- flags -----------------------------------------------------------------------------------


def test_define_flags_is_idempotent_and_keeps_a_scripts_own_flag() -> None:
  flag_values = flags.FlagValues()
  flags.DEFINE_bool("use_tpu", True, "the script's own definition", flag_values=flag_values)
  distribution.define_flags(flag_values)
  distribution.define_flags(flag_values)  # a second call must not raise DuplicateFlagError
  flag_values(["prog", "--tpu_name=grpc://10.0.0.2:8470", "--num_gpus=2",
               "--distribution_strategy=tpu"])
  assert StrategyConfig.from_flags(flag_values) == StrategyConfig(
      use_tpu=True, tpu_name="grpc://10.0.0.2:8470", num_gpus=2, distribution_strategy="tpu")


def test_flag_defaults_match_google_research() -> None:
  flag_values = flags.FlagValues()
  distribution.define_flags(flag_values)
  flag_values(["prog"])
  assert StrategyConfig.from_flags(flag_values) == StrategyConfig(
      use_tpu=False, tpu_name=None, tpu_zone=None, gcp_project=None, master=None,
      num_tpu_cores=8, distribution_strategy=None, num_gpus=None)


def test_distribution_strategy_flag_rejects_unknown_names() -> None:
  flag_values = flags.FlagValues()
  distribution.define_flags(flag_values)
  with pytest.raises(flags.IllegalFlagValueError, match="multi_worker_mirrored"):
    flag_values(["prog", "--distribution_strategy=horovod"])


def test_from_flags_keeps_defaults_for_flags_a_script_does_not_define() -> None:
  flag_values = flags.FlagValues()
  flags.DEFINE_bool("use_tpu", False, "", flag_values=flag_values)
  flags.DEFINE_string("tpu_name", None, "", flag_values=flag_values)
  flag_values(["prog", "--use_tpu", "--tpu_name=local"])
  assert StrategyConfig.from_flags(flag_values) == StrategyConfig(use_tpu=True, tpu_name="local")


# --- TPU, with the Cloud TPU boundary faked ------------------------------------------------


class FakeResolver:
  """Stands in for TPUClusterResolver, which would contact the Cloud TPU API or a TPU."""

  def __init__(self, tpu: Optional[str], zone: Optional[str], project: Optional[str]) -> None:
    self.tpu, self.zone, self.project = tpu, zone, project

  def master(self) -> str:
    return "" if self.tpu == "local" else "grpc://10.9.8.7:8470"


@pytest.fixture
def fake_tpu(monkeypatch: pytest.MonkeyPatch) -> Dict[str, Any]:
  """Records what resolve_strategy passes to the TPU calls, none of which can run without a TPU.

  TPUStrategy is faked too: constructing a real one needs an initialised TPU system.
  """
  calls: Dict[str, Any] = {"connect": [], "initialize": [], "cores": 8}

  class FakeTPUStrategy(tf.distribute.TPUStrategy):

    def __init__(self, resolver: FakeResolver) -> None:  # pylint: disable=super-init-not-called
      self.resolver = resolver
      self.cores = calls["cores"]

    @property
    def num_replicas_in_sync(self) -> int:
      return self.cores

  monkeypatch.setattr(distribution, "tpu_support", lambda: True)  # as with tensorflow-tpu
  monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", FakeResolver)
  monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", calls["connect"].append)
  monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", calls["initialize"].append)
  monkeypatch.setattr(tf.distribute, "TPUStrategy", FakeTPUStrategy)
  return calls


@pytest.mark.parametrize("config, env, expected_tpu", [
    (StrategyConfig(use_tpu=True, tpu_name="my-tpu"), {}, "my-tpu"),
    (StrategyConfig(use_tpu=True, tpu_name="grpc://10.1.2.3:8470"), {}, "grpc://10.1.2.3:8470"),
    (StrategyConfig(distribution_strategy="tpu", tpu_name="my-tpu"), {}, "my-tpu"),
    (StrategyConfig(use_tpu=True, master="grpc://10.1.2.4:8470"), {}, "grpc://10.1.2.4:8470"),
    (StrategyConfig(use_tpu=True), {"COLAB_TPU_ADDR": "10.0.0.2:8470"}, "grpc://10.0.0.2:8470"),
    (StrategyConfig(use_tpu=True), {"TPU_NAME": "env-tpu"}, "env-tpu"),
    (StrategyConfig(use_tpu=True), {"COLAB_TPU_ADDR": "10.0.0.2:8470", "TPU_NAME": "env-tpu"},
     "grpc://10.0.0.2:8470"),
    (StrategyConfig(use_tpu=True, tpu_name="flag-tpu"), {"TPU_NAME": "env-tpu"}, "flag-tpu"),
], ids=["name", "grpc", "strategy_flag", "master", "colab", "tpu_name_env", "colab_first",
        "flag_first"])
def test_remote_tpu_is_resolved_connected_and_initialised(
    fake_tpu: Dict[str, Any], monkeypatch: pytest.MonkeyPatch, config: StrategyConfig,
    env: Dict[str, str], expected_tpu: str) -> None:
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  strategy = distribution.resolve_strategy(config)
  resolver = strategy.resolver
  assert resolver.tpu == expected_tpu
  assert fake_tpu["connect"] == [resolver]
  assert fake_tpu["initialize"] == [resolver]
  assert distribution.is_remote_tpu(config)


def test_local_tpu_is_initialised_without_connecting(
    fake_tpu: Dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
  config = StrategyConfig(use_tpu=True, tpu_name="local", tpu_zone="us-central2-b",
                          gcp_project="proj")
  with caplog.at_level(logging.INFO, logger="absl"):
    strategy = distribution.resolve_strategy(config)
  resolver = strategy.resolver
  assert (resolver.tpu, resolver.zone, resolver.project) == ("local", "us-central2-b", "proj")
  assert fake_tpu["connect"] == []
  assert fake_tpu["initialize"] == [resolver]
  assert not distribution.is_remote_tpu(config)
  assert any("TPU local" in m and "8 cores" in m for m in messages(caplog, logging.INFO))
  assert not messages(caplog, logging.WARNING)


def test_zone_and_project_reach_the_resolver(fake_tpu: Dict[str, Any]) -> None:
  strategy = distribution.resolve_strategy(
      StrategyConfig(use_tpu=True, tpu_name="my-tpu", tpu_zone="europe-west4-a",
                     gcp_project="my-project"))
  assert (strategy.resolver.zone, strategy.resolver.project) == ("europe-west4-a", "my-project")


def test_core_count_mismatch_warns(fake_tpu: Dict[str, Any],
                                   caplog: pytest.LogCaptureFixture) -> None:
  fake_tpu["cores"] = 32
  with caplog.at_level(logging.INFO, logger="absl"):
    strategy = distribution.resolve_strategy(
        StrategyConfig(use_tpu=True, tpu_name="my-tpu", num_tpu_cores=8))
  assert strategy.num_replicas_in_sync == 32
  assert messages(caplog, logging.WARNING) == [
      "--num_tpu_cores=8, but the TPU has 32 cores; using 32."]
  assert distribution.replica_kind(strategy) == "TPU cores"


def test_unnamed_tpu_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
  monkeypatch.setattr(distribution, "tpu_support", lambda: True)
  # The real resolver: with no name and no TPU variables it fails before any network access.
  with pytest.raises(ValueError, match="--tpu_name .*'local'"):
    distribution.resolve_strategy(StrategyConfig(use_tpu=True))


def installed(distribution_name: str) -> bool:
  try:
    importlib.metadata.distribution(distribution_name)
    return True
  except importlib.metadata.PackageNotFoundError:
    return False


@pytest.mark.skipif(installed("tensorflow-tpu"), reason="tensorflow-tpu is installed")
def test_plain_tensorflow_is_refused_for_this_machines_tpu_before_the_resolver(
    monkeypatch: pytest.MonkeyPatch) -> None:
  def no_resolver(**unused):
    raise AssertionError("the resolver must not be reached")

  monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", no_resolver)
  assert not distribution.tpu_support()
  monkeypatch.setenv("TPU_NAME", "local")
  for config in (StrategyConfig(use_tpu=True, tpu_name="local"),
                 StrategyConfig(distribution_strategy="tpu", tpu_name="local"),
                 StrategyConfig(use_tpu=True)):  # TPU_NAME=local
    with pytest.raises(ValueError) as raised:
      distribution.resolve_strategy(config)
    message = str(raised.value)
    assert "make install-tpu" in message and "python -m bert_tf.doctor" in message
    assert "\n" not in message
  # Nothing to check without a TPU, or for a remote one, whose hosts run the TPU kernels.
  distribution.check_tpu_support(StrategyConfig())
  distribution.check_tpu_support(StrategyConfig(use_tpu=True, tpu_name="my-tpu"))


@pytest.mark.parametrize("error, first_line", [
    (tf.errors.NotFoundError(None, None, "TPUs not found in the cluster.\nRegistered devices: ..."),
     "TPUs not found in the cluster."),
    (RuntimeError('TPU "my-tpu" is not yet ready; state: "CREATING"'),
     'TPU "my-tpu" is not yet ready; state: "CREATING"'),
], ids=["not_found", "not_ready"])
def test_tpu_that_cannot_be_reached_is_one_line_naming_the_fix(
    fake_tpu: Dict[str, Any], monkeypatch: pytest.MonkeyPatch, error: Exception,
    first_line: str) -> None:
  def fail(resolver: FakeResolver) -> None:
    raise error

  monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", fail)
  with pytest.raises(ValueError) as raised:
    distribution.resolve_strategy(StrategyConfig(use_tpu=True, tpu_name="local"))
  message = str(raised.value)
  assert message.startswith("No TPU found at --tpu_name=local (")
  assert f"({first_line})" in message and "\n" not in message
  assert "make install-tpu" in message and "python -m bert_tf.doctor" in message


def test_a_named_tpu_the_api_cannot_find_is_one_line_naming_the_fix(
    fake_tpu: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
  def unknown(tpu: str, zone: Optional[str], project: Optional[str]) -> None:
    raise ValueError(f"Could not lookup TPU metadata from name '{tpu}'. Please doublecheck")

  monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", unknown)
  with pytest.raises(ValueError, match=r"^--tpu_name=my-pod: Could not lookup .*make install-tpu"):
    distribution.resolve_strategy(StrategyConfig(use_tpu=True, tpu_name="my-pod"))


def test_the_tpu_client_is_the_chief_without_asking_the_cloud_tpu_api(
    fake_tpu: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
  strategy = distribution.resolve_strategy(StrategyConfig(use_tpu=True, tpu_name="my-pod"))

  def cluster_spec() -> None:
    raise AssertionError("cluster_spec() calls the Cloud TPU API")

  strategy.resolver.task_type, strategy.resolver.task_id = "worker", 0  # as TPUClusterResolver
  strategy.resolver.cluster_spec = cluster_spec
  monkeypatch.setattr(type(strategy), "cluster_resolver", property(lambda self: self.resolver),
                      raising=False)
  assert distribution.is_chief(strategy)


def test_run_squad_with_use_tpu_on_plain_tensorflow_is_one_error_line(tmp_path) -> None:
  if installed("tensorflow-tpu"):
    pytest.skip("tensorflow-tpu is installed")
  done = subprocess.run(
      [sys.executable, "run_squad.py", "--demo", "--use_tpu=True", "--tpu_name=local",
       f"--output_dir={tmp_path / 'out'}"], cwd=PROJECT_ROOT, capture_output=True, text=True,
      timeout=120)
  assert done.returncode != 0
  assert "Traceback" not in done.stderr
  errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "make install-tpu" in errors[0], done.stderr[-2000:]
  assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []  # refused before any work


# --- CPU / GPU strategies ------------------------------------------------------------------


def replicated_sum(strategy: tf.distribute.Strategy) -> float:
  """Runs one step on every replica and sums a 1 from each: proves the replicas are real."""
  per_replica = strategy.run(lambda: tf.constant(1.0))
  return float(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))


@pytest.mark.skipif(has_gpu(), reason="this machine has a GPU")
@pytest.mark.parametrize("config", [StrategyConfig(), StrategyConfig(num_gpus=0)],
                         ids=["no_gpu", "num_gpus_0"])
def test_no_accelerator_uses_the_default_strategy_and_says_so(
    config: StrategyConfig, caplog: pytest.LogCaptureFixture) -> None:
  with caplog.at_level(logging.INFO, logger="absl"):
    strategy = distribution.resolve_strategy(config)
  assert strategy is tf.distribute.get_strategy()
  assert strategy.num_replicas_in_sync == 1
  logged = " ".join(messages(caplog, logging.INFO))
  if config.num_gpus == 0:
    assert "--num_gpus=0: running on CPU with the default strategy" in logged
  else:
    assert "No GPU or TPU found: running on CPU with the default strategy" in logged


@pytest.mark.skipif(not has_gpu(), reason="needs a GPU")
def test_visible_gpus_are_used_automatically() -> None:
  strategy = distribution.resolve_strategy(StrategyConfig())
  num_gpus = len(tf.config.list_logical_devices("GPU"))
  assert strategy.num_replicas_in_sync == num_gpus
  expected = tf.distribute.MirroredStrategy if num_gpus > 1 else tf.distribute.OneDeviceStrategy
  assert isinstance(strategy, expected)


@pytest.mark.parametrize("num_gpus", [0, None] if not has_gpu() else [0])
def test_mirrored_without_gpus_mirrors_over_the_logical_cpus(num_gpus: Optional[int]) -> None:
  strategy = distribution.resolve_strategy(
      StrategyConfig(distribution_strategy="mirrored", num_gpus=num_gpus))
  assert isinstance(strategy, tf.distribute.MirroredStrategy)
  assert strategy.num_replicas_in_sync == NUM_LOGICAL_CPUS == 2
  assert [tf.DeviceSpec.from_string(d).device_index for d in strategy.extended.worker_devices
          ] == [0, 1]
  assert replicated_sum(strategy) == 2.0
  assert distribution.replica_kind(strategy) == "replicas"


def test_more_gpus_than_visible_is_an_error() -> None:
  too_many = len(tf.config.list_logical_devices("GPU")) + 1
  with pytest.raises(ValueError, match=f"--num_gpus={too_many}, but only"):
    distribution.resolve_strategy(
        StrategyConfig(distribution_strategy="mirrored", num_gpus=too_many))


def test_one_device_on_cpu() -> None:
  strategy = distribution.resolve_strategy(
      StrategyConfig(distribution_strategy="one_device", num_gpus=0))
  assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
  assert tf.DeviceSpec.from_string(strategy.extended.worker_devices[0]).device_type == "CPU"
  assert replicated_sum(strategy) == 1.0


def test_default_strategy_by_name() -> None:
  strategy = distribution.resolve_strategy(StrategyConfig(distribution_strategy="default"))
  assert strategy is tf.distribute.get_strategy()


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_multi_worker_mirrored_reads_tf_config() -> None:
  # MultiWorkerMirroredStrategy can be created once per process and changes the eager context,
  # so it runs in a child process.
  tf_config = {"cluster": {"worker": [f"localhost:{free_port()}"]},
               "task": {"type": "worker", "index": 0}}
  script = textwrap.dedent("""
      import json
      import tensorflow as tf
      from bert_tf.training import distribution
      strategy = distribution.resolve_strategy(
          distribution.StrategyConfig(distribution_strategy="multi_worker_mirrored"))
      resolver = strategy.cluster_resolver
      print("RESULT " + json.dumps({
          "multi_worker": isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy),
          "replicas": strategy.num_replicas_in_sync,
          "task": [resolver.task_type, resolver.task_id],
          "cluster": resolver.cluster_spec().as_dict(),
      }))
  """)
  env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TF_CPP_MIN_LOG_LEVEL="2")
  done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env,
                        capture_output=True, text=True, timeout=180, check=False)
  result_lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
  assert done.returncode == 0 and result_lines, done.stderr[-3000:]
  result = json.loads(result_lines[0][len("RESULT "):])
  assert result == {"multi_worker": True, "replicas": 1,
                    "task": ["worker", 0], "cluster": tf_config["cluster"]}


def test_multi_worker_mirrored_rejects_malformed_tf_config(
    monkeypatch: pytest.MonkeyPatch) -> None:
  monkeypatch.setenv("TF_CONFIG", "{cluster: worker}")
  with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
    distribution.resolve_strategy(StrategyConfig(distribution_strategy="multi_worker_mirrored"))


@pytest.mark.parametrize("config, message", [
    (StrategyConfig(distribution_strategy="horovod"),
     "--distribution_strategy='horovod' is not one of: tpu, mirrored, multi_worker_mirrored, "
     "one_device, default"),
    (StrategyConfig(use_tpu=True, distribution_strategy="mirrored"),
     "--use_tpu=true contradicts --distribution_strategy=mirrored"),
], ids=["unknown", "contradiction"])
def test_bad_strategy_names(config: StrategyConfig, message: str) -> None:
  with pytest.raises(ValueError) as error:
    distribution.resolve_strategy(config)
  assert message in str(error.value)


# --- early checks --------------------------------------------------------------------------


@pytest.mark.parametrize("config, remote", [
    (StrategyConfig(use_tpu=True, tpu_name="grpc://10.0.0.2:8470"), True),
    (StrategyConfig(use_tpu=True, tpu_name="my-tpu"), True),
    (StrategyConfig(use_tpu=True, tpu_name="local"), False),
    (StrategyConfig(tpu_name="my-tpu"), False),  # named, but --use_tpu is off
    (StrategyConfig(distribution_strategy="mirrored"), False),
])
def test_is_remote_tpu(config: StrategyConfig, remote: bool) -> None:
  assert distribution.is_remote_tpu(config) == remote


def test_remote_tpu_lists_every_local_path_flag() -> None:
  config = StrategyConfig(use_tpu=True, tpu_name="grpc://10.0.0.2:8470")
  path_flags = {
      "vocab_file": "/data/vocab.txt",
      "train_file": "gs://bucket/train.json",
      "output_dir": "out",
      "init_checkpoint": None,
      "predict_file": "",
      "input_file": "gs://bucket/a.tfrecord,/data/b.tfrecord",
  }
  with pytest.raises(ValueError) as error:
    distribution.remote_tpu_requires_gcs(config, path_flags)
  message = str(error.value)
  for offending in ("--vocab_file=/data/vocab.txt", "--output_dir=out",
                    "--input_file=gs://bucket/a.tfrecord,/data/b.tfrecord"):
    assert offending in message
  for fine in ("train_file", "init_checkpoint", "predict_file"):
    assert f"--{fine}" not in message
  assert "grpc://10.0.0.2:8470" in message
  assert "gs://" in message and "--tpu_name=local" in message


@pytest.mark.parametrize("config", [
    StrategyConfig(use_tpu=True, tpu_name="local"),
    StrategyConfig(),
    StrategyConfig(distribution_strategy="mirrored"),
])
def test_local_paths_are_fine_without_a_remote_tpu(config: StrategyConfig) -> None:
  distribution.remote_tpu_requires_gcs(config, {"output_dir": "/tmp/out"})


def test_gcs_paths_are_fine_on_a_remote_tpu() -> None:
  distribution.remote_tpu_requires_gcs(
      StrategyConfig(use_tpu=True, tpu_name="my-tpu"),
      {"output_dir": "gs://b/out", "input_file": "gs://b/x-*,gs://b/y", "init_checkpoint": None})


@pytest.mark.parametrize("batch_size, replicas, kind, message", [
    (12, 8, "TPU cores", "train_batch_size=12 is not a multiple of the 8 TPU cores; "
                         "use 8, 16 or 24"),
    (3, 8, "TPU cores", "train_batch_size=3 is not a multiple of the 8 TPU cores; "
                        "use 8, 16 or 24"),
    (100, 3, "GPUs", "train_batch_size=100 is not a multiple of the 3 GPUs; use 99, 102 or 105"),
    (0, 8, "TPU cores", "train_batch_size=0 must be positive"),
])
def test_check_global_batch_rejects(batch_size: int, replicas: int, kind: str,
                                    message: str) -> None:
  with pytest.raises(ValueError) as error:
    distribution.check_global_batch(batch_size, replicas, "train_batch_size", kind)
  assert message in str(error.value)


@pytest.mark.parametrize("batch_size, replicas", [(32, 8), (7, 1), (1024, 128)])
def test_check_global_batch_accepts_multiples(batch_size: int, replicas: int) -> None:
  distribution.check_global_batch(batch_size, replicas, "train_batch_size", "TPU cores")


# A tiny classifier trained by bert_tf.trainer.Trainer in a child process. The records are read
# unshuffled (shuffle_buffer=1), so that global batch k holds the same 16 records whether one
# process reads them all or two workers each read every other one: then the weights must match.
_TRAIN_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    import tf_keras
    from bert_tf import modeling
    from bert_tf.checkpoints import configs
    from bert_tf.training import distribution
    from bert_tf.data import pipeline as input_pipeline
    from bert_tf.training import trainer

    output_dir, records, strategy_name, weights_file = sys.argv[1:5]
    strategy = distribution.resolve_strategy(
        distribution.StrategyConfig(distribution_strategy=strategy_name))
    config = configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=32,
                                max_position_embeddings=16, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0)
    spec = input_pipeline.int_features(
        dict(input_ids=16, input_mask=16, segment_ids=16, label_ids=1))

    def model_fn():
      tf_keras.utils.set_random_seed(7)
      return modeling.build_model(modeling.BertClassifier(config, num_labels=2))

    def dataset_fn(context, start_batch):
      return input_pipeline.training_dataset(
          records, input_pipeline.example_parser(spec), context.get_per_replica_batch_size(16),
          start_batch=start_batch, shuffle_buffer=1, input_context=context)

    def loss_fn(features, outputs):
      return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=features["label_ids"],
                                                            logits=outputs["logits"])

    train_config = trainer.TrainConfig(output_dir=output_dir, train_batch_size=16,
                                       num_train_steps=6, learning_rate=1e-2,
                                       num_warmup_steps=2, iterations_per_loop=2,
                                       save_checkpoints_steps=2)
    run = trainer.Trainer(strategy, train_config, model_fn, loss_fn, dataset_fn)
    run.train()
    # 64 records in global batches of 12: the last one is padded, and each worker predicts a share.
    dataset = input_pipeline.pad_to_full_batches(
        input_pipeline.evaluation_dataset(records, input_pipeline.example_parser(spec), 12), 12)
    outputs = trainer.predict(strategy, run.model, dataset, ["logits"],
                              passthrough_keys=["label_ids", "is_real_example"])
    np.savez(weights_file, *[v.numpy() for v in run.model.trainable_variables], **outputs)
    print("RESULT " + json.dumps({"step": run.step, "chief": distribution.is_chief(strategy),
                                  "replicas": strategy.num_replicas_in_sync}))
""")


def _write_classifier_records(path: str, count: int = 64) -> None:
  """`count` random tf.Examples for the tiny classifier of _TRAIN_SCRIPT."""
  rng = np.random.default_rng(0)
  with tf.io.TFRecordWriter(path) as writer:
    for _ in range(count):
      ids = [2] + [int(i) for i in rng.integers(5, 50, 15)]
      feature = dict(input_ids=ids, input_mask=[1] * 16, segment_ids=[0] * 16,
                     label_ids=[ids[1] % 2])
      example = tf.train.Example(features=tf.train.Features(feature={
          k: tf.train.Feature(int64_list=tf.train.Int64List(value=v)) for k, v in feature.items()}))
      writer.write(example.SerializeToString())


def _start_training(output_dir: pathlib.Path, records: str, strategy_name: str,
                    weights_file: pathlib.Path, tf_config: Optional[Dict[str, Any]] = None
                    ) -> subprocess.Popen:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  env.pop("TF_CONFIG", None)
  if tf_config:
    env["TF_CONFIG"] = json.dumps(tf_config)
  return subprocess.Popen(
      [sys.executable, "-c", _TRAIN_SCRIPT, str(output_dir), records, strategy_name,
       str(weights_file)], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, timeout: float = 180) -> Dict[str, Any]:
  """Waits for a training child and returns its RESULT line (killing it if it hangs)."""
  try:
    stdout, stderr = process.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    process.kill()
    stdout, stderr = process.communicate()
  results = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
  assert process.returncode == 0 and results, stderr[-3000:]
  return json.loads(results[0][len("RESULT "):])


def test_two_workers_train_and_predict_like_one_process_and_only_the_chief_writes(tmp_path) -> None:
  records = str(tmp_path / "train.tfrecord")
  _write_classifier_records(records)
  cluster = {"worker": [f"localhost:{free_port()}", f"localhost:{free_port()}"]}
  # Each worker gets its own output_dir here (a real run shares one), to see who wrote what.
  workers = [
      _start_training(tmp_path / f"worker{index}", records, "multi_worker_mirrored",
                      tmp_path / f"worker{index}.npz",
                      {"cluster": cluster, "task": {"type": "worker", "index": index}})
      for index in range(2)]
  try:
    results = [_finish(process) for process in workers]
  finally:
    for process in workers:
      if process.poll() is None:
        process.kill()
  assert [r["chief"] for r in results] == [True, False]
  assert all(r["step"] == 6 and r["replicas"] == 2 for r in results)
  single = _start_training(tmp_path / "single", records, "default", tmp_path / "single.npz")
  assert _finish(single) == {"step": 6, "chief": True, "replicas": 1}
  weights = {name: np.load(tmp_path / f"{name}.npz")
             for name in ("worker0", "worker1", "single")}
  # Weights (arr_*) and the predictions over every record, in file order, on both workers.
  assert weights["single"]["is_real_example"].sum() == 64
  for key in weights["single"].files:
    np.testing.assert_allclose(weights["worker0"][key], weights["single"][key], atol=2e-5)
    np.testing.assert_array_equal(weights["worker0"][key], weights["worker1"][key])
  chief_dir, other_dir = tmp_path / "worker0", tmp_path / "worker1"
  assert tf.train.latest_checkpoint(str(chief_dir)).endswith("ckpt-6")
  assert tf.io.gfile.glob(str(chief_dir / "train" / "events.out.tfevents.*"))
  # The non-chief wrote its checkpoints to a scratch directory and removed it.
  assert not other_dir.exists() or not list(other_dir.iterdir()), list(other_dir.iterdir())


@pytest.mark.parametrize("kind, capabilities, expected", [
    ("TPU cores", (), "mixed_bfloat16"),
    ("GPUs", ((8, 0), (8, 0)), "mixed_bfloat16"),  # A100
    ("GPUs", ((9, 0),), "mixed_bfloat16"),  # H100
    ("GPUs", ((7, 5),), "mixed_float16"),  # T4: float16 with loss scaling
    ("GPUs", ((8, 6), (7, 0)), "mixed_float16"),  # a V100 among them decides
    ("replicas", (), "float32")])
def test_auto_mixed_precision_follows_the_devices(kind, capabilities, expected):
  assert distribution.precision_for(kind, capabilities) == expected


def test_auto_mixed_precision_reads_gpu_capabilities_at_the_device_boundary(monkeypatch,
                                                                            mirrored_cpus):
  assert distribution.auto_precision(tf.distribute.get_strategy()) == "float32"  # this CPU
  gpus = ["GPU:0", "GPU:1"]
  monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus)
  monkeypatch.setattr(tf.config.experimental, "get_device_details",
                      lambda gpu: {"compute_capability": (7, 5) if gpu == "GPU:1" else (8, 0)})
  assert distribution.auto_precision(mirrored_cpus) == "mixed_float16"
