"""Picks the tf.distribute strategy from the flags google-research/bert users already know.

All scripts (run_squad.py, run_classifier.py, run_pretraining.py) call `define_flags()`, build a
`StrategyConfig.from_flags(flags.FLAGS)`, run the cheap checks here (`remote_tpu_requires_gcs`,
`check_global_batch`) before any expensive work, and then `resolve_strategy(config)`.

TPU addresses: `--tpu_name` may be a Cloud TPU node name, `grpc://host:8470`, or `local` (a TPU VM,
including today's Colab TPU runtime, where the TPU is attached to this machine). A remote TPU
(node name or grpc://) runs the input pipeline and writes checkpoints itself, so it can only reach
gs:// paths. A TPU pod slice is one of these: TensorFlow drives it from a single client, the one
process started on worker 0 with the slice's name (TPU_NAME), and the TPU hosts' TensorFlow
servers read the data and write the checkpoints (docs/installation-and-hardware.md).

Using this machine's TPU needs TensorFlow's TPU build (the tensorflow-tpu wheel, `make
install-tpu`); `check_tpu_support` refuses `--tpu_name=local` on any other build before any
work, and a TPU that cannot be reached is one `ValueError` naming the fix, never a traceback
from deep inside TensorFlow.
"""

import contextlib
import dataclasses
import json
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from absl import flags
from absl import logging
import tensorflow as tf
# No public API lists the kernels a TensorFlow build registered.
from tensorflow.python.framework import kernels

from bert_tf import tf_stacks

STRATEGY_NAMES = ("tpu", "mirrored", "multi_worker_mirrored", "one_device", "default")
LOCAL_TPU = "local"
_GRPC_PREFIX = "grpc://"
GCS_PREFIX = "gs://"
# Only TPU builds register a kernel for this op: tensorflow-tpu 2.20.0 has a CPU one, the plain
# tensorflow 2.20.0 wheel none (both wheels checked on a CPU machine, with libtpu not loaded).
_TPU_ONLY_OP = "TPUCompile"
# The TPU install of the installed TensorFlow's stack: `make install-tpu` for 2.20, `make
# install-tpu-tf219` for 2.19.
TPU_FIX = (f"run `make {(tf_stacks.installed() or tf_stacks.DEFAULT).install_tpu}` (or the pip "
           "commands in docs/installation-and-hardware.md), then `python -m "
           "bert_tf.doctor` to see what this machine can run")


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the strategy flags, skipping any a script has already defined itself."""
  definitions = (
      (flags.DEFINE_bool, "use_tpu", False,
       "Run on a TPU (google-research/bert flag). Same as --distribution_strategy=tpu."),
      (flags.DEFINE_string, "tpu_name", None,
       "The TPU: a Cloud TPU node name, a grpc://host:8470 address, or 'local' on a TPU VM or "
       "the Colab TPU runtime. Defaults to $COLAB_TPU_ADDR, then $TPU_NAME."),
      (flags.DEFINE_string, "tpu_zone", None,
       "GCE zone of a named Cloud TPU node; detected from GCE metadata when unset."),
      (flags.DEFINE_string, "gcp_project", None,
       "GCP project of a named Cloud TPU node; detected from GCE metadata when unset."),
      (flags.DEFINE_string, "master", None,
       "TensorFlow master URL; used as the TPU address when --tpu_name is unset."),
      (flags.DEFINE_integer, "num_tpu_cores", 8,
       "Expected number of TPU cores; a warning is logged if the TPU has another number."),
      (flags.DEFINE_integer, "num_gpus", None,
       "GPUs to use for mirrored/automatic strategies; all visible GPUs when unset."),
  )
  for define, name, default, help_text in definitions:
    if name not in flag_values:
      define(name, default, help_text, flag_values=flag_values)
  if "distribution_strategy" not in flag_values:
    flags.DEFINE_enum(
        "distribution_strategy", None, STRATEGY_NAMES,
        "tf.distribute strategy. Unset: TPU if --use_tpu, else mirrored over the visible GPUs "
        "(one_device for a single GPU), else the default strategy on CPU.",
        flag_values=flag_values)


@dataclasses.dataclass
class StrategyConfig:
  """The strategy flags as plain values, so code and tests need no absl flag parsing."""
  use_tpu: bool = False
  tpu_name: Optional[str] = None
  tpu_zone: Optional[str] = None
  gcp_project: Optional[str] = None
  master: Optional[str] = None
  num_tpu_cores: int = 8
  distribution_strategy: Optional[str] = None
  num_gpus: Optional[int] = None

  @classmethod
  def from_flags(cls, flag_values: flags.FlagValues) -> "StrategyConfig":
    """Reads the parsed flags; a flag the script does not define keeps its default here."""
    values = {
        field.name: flag_values[field.name].value
        for field in dataclasses.fields(cls) if field.name in flag_values
    }
    return cls(**values)


def strategy_name(config: StrategyConfig) -> Optional[str]:
  """The requested strategy ('tpu' when --use_tpu), or None for automatic choice.

  Raises:
    ValueError: for an unknown --distribution_strategy, or one that contradicts --use_tpu.
  """
  name = config.distribution_strategy
  if name is not None and name not in STRATEGY_NAMES:
    raise ValueError(f"--distribution_strategy={name!r} is not one of: "
                     f"{', '.join(STRATEGY_NAMES)}.")
  if config.use_tpu:
    if name not in (None, "tpu"):
      raise ValueError(f"--use_tpu=true contradicts --distribution_strategy={name}; drop one "
                       "of them (or use --distribution_strategy=tpu).")
    return "tpu"
  return name


def tpu_address(config: StrategyConfig) -> Optional[str]:
  """The TPU to resolve: --tpu_name, else --master, else $COLAB_TPU_ADDR, else $TPU_NAME.

  Old Colab runtimes give COLAB_TPU_ADDR as host:port, so it gets the grpc:// prefix. None
  means nothing was named and TPUClusterResolver must detect the TPU itself (e.g. on GKE).
  """
  if config.tpu_name:
    return config.tpu_name
  if config.master:
    return config.master
  colab_address = os.environ.get("COLAB_TPU_ADDR")
  if colab_address:
    if colab_address.startswith(_GRPC_PREFIX):
      return colab_address
    return _GRPC_PREFIX + colab_address
  return os.environ.get("TPU_NAME") or None


def is_remote_tpu(config: StrategyConfig) -> bool:
  """Whether training runs on a TPU reached over the network (every TPU except `local`)."""
  return strategy_name(config) == "tpu" and tpu_address(config) != LOCAL_TPU


def comma_parts(value: str) -> List[str]:
  """The comma-separated parts of a path flag (input_file accepts several files or globs)."""
  return [part.strip() for part in value.split(",") if part.strip()]


def remote_tpu_requires_gcs(config: StrategyConfig,
                            path_flags: Dict[str, Optional[str]]) -> None:
  """Rejects local paths when a remote TPU would have to read or write them.

  A remote TPU host runs the input pipeline and saves checkpoints itself; it cannot see this
  machine's disk, so a local path fails only after the TPU is up, or silently writes nowhere.

  Args:
    config: the strategy flags.
    path_flags: flag name -> value for every input and output path flag; unset ones (None or
      empty) are skipped, and a comma-separated value must be gs:// in every part.

  Raises:
    ValueError: listing every offending flag with its value, and how to fix it.
  """
  if not is_remote_tpu(config):
    return
  offending = {
      name: value for name, value in path_flags.items()
      if value and not all(part.startswith(GCS_PREFIX) for part in comma_parts(value))
  }
  if not offending:
    return
  listing = "\n".join(f"  --{name}={value}" for name, value in offending.items())
  tpu = tpu_address(config) or "auto-detected"
  raise ValueError(
      f"The remote TPU ({tpu}) reads inputs and writes outputs itself and cannot see this "
      f"machine's files, so these flags must be gs:// paths:\n{listing}\n"
      "Copy the files to a gs:// bucket (e.g. `gcloud storage cp -r LOCAL gs://BUCKET/DIR`) and "
      "point the flags there, pass --stage_to=gs://BUCKET/PREFIX to have inputs uploaded for you, "
      "or run on a TPU VM with --tpu_name=local.")


def _nearby_multiples(value: int, step: int, count: int = 3) -> List[int]:
  """`count` positive multiples of `step` starting from the one at or below `value`."""
  first = max(1, value // step)
  return [step * k for k in range(first, first + count)]


def check_global_batch(batch_size: int, num_replicas: int, flag_name: str,
                       device_kind: str) -> None:
  """Checks that a global batch splits evenly over the replicas, before any expensive work.

  Args:
    batch_size: the global batch size from the flag.
    num_replicas: strategy.num_replicas_in_sync.
    flag_name: the flag the batch size came from, e.g. 'train_batch_size'.
    device_kind: what a replica is, plural, e.g. 'TPU cores' (see `replica_kind`).

  Raises:
    ValueError: e.g. "train_batch_size=12 is not a multiple of the 8 TPU cores; use 8, 16 or 24".
  """
  if batch_size <= 0:
    raise ValueError(f"{flag_name}={batch_size} must be positive.")
  if batch_size % num_replicas:
    *smaller, largest = (str(m) for m in _nearby_multiples(batch_size, num_replicas))
    raise ValueError(f"{flag_name}={batch_size} is not a multiple of the {num_replicas} "
                     f"{device_kind}; use {', '.join(smaller)} or {largest}.")


def replica_kind(strategy: tf.distribute.Strategy) -> str:
  """What one replica of `strategy` is, plural, for messages: 'TPU cores', 'GPUs' or 'replicas'."""
  if isinstance(strategy, tf.distribute.TPUStrategy):
    return "TPU cores"
  # A single replica never splits a batch (and the default strategy lists no worker devices).
  if strategy.num_replicas_in_sync > 1 and all(
      tf.DeviceSpec.from_string(d).device_type == "GPU" for d in strategy.extended.worker_devices):
    return "GPUs"
  return "replicas"


def precision_for(device_kind: str, compute_capabilities: Sequence[Tuple[int, int]] = ()) -> str:
  """The dtype policy --mixed_precision=auto picks on "TPU cores", "GPUs" or the CPU: bfloat16
  on TPUs and on GPUs of compute capability 8.0 or more (A100, L4, H100: no loss scaling
  needed), float16 with loss scaling on older GPUs (V100, T4), float32 on CPUs."""
  if device_kind == "TPU cores":
    return "mixed_bfloat16"
  if device_kind == "GPUs":
    if compute_capabilities and min(compute_capabilities) >= (8, 0):
      return "mixed_bfloat16"
    return "mixed_float16"
  return "float32"


def auto_precision(strategy: tf.distribute.Strategy) -> str:
  """precision_for the devices `strategy` runs on (GPU compute capabilities from TF's device
  details)."""
  kind = replica_kind(strategy)
  gpus = tf.config.list_physical_devices("GPU")  # one GPU runs on it without being "GPUs"
  if kind == "TPU cores" or not gpus:
    return precision_for(kind)
  capabilities = [tuple(tf.config.experimental.get_device_details(gpu)["compute_capability"])
                  for gpu in gpus]
  return precision_for("GPUs", capabilities)


def check_batches(strategy: tf.distribute.Strategy, batch_sizes: Dict[str, int]) -> None:
  """check_global_batch for each flag name -> global batch size, against `strategy`'s replicas."""
  kind = replica_kind(strategy)
  for flag_name, batch_size in batch_sizes.items():
    check_global_batch(batch_size, strategy.num_replicas_in_sync, flag_name, kind)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True unless this process is a non-chief worker of a multi-worker strategy."""
  if isinstance(strategy, tf.distribute.TPUStrategy):
    # One client drives every TPU host (worker 0 of a pod slice). Asking its resolver would
    # call the Cloud TPU API at each checkpoint: cluster_spec() fetches the endpoints anew and
    # raises while the TPU is not READY.
    return True
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  return resolver.task_type == "chief" or (
      resolver.task_type == "worker" and resolver.task_id == 0
      and "chief" not in resolver.cluster_spec().as_dict())


def has_other_workers(strategy: tf.distribute.Strategy) -> bool:
  """True when other processes drive some of the replicas (MultiWorkerMirroredStrategy over
  several workers): each worker then decides only what all of them agree on, or collectives
  wait forever. One TPU client drives all its cores, so a TPUStrategy has none."""
  return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
          and strategy.num_replicas_in_sync > len(strategy.extended.worker_devices))


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Returns once every worker has got here (a one-number all-reduce; instant on one worker).

  For a file that the chief writes and every worker then reads.
  """
  strategy.reduce(tf.distribute.ReduceOp.SUM,
                  strategy.run(tf.function(lambda: tf.constant(1.0))), axis=None)


@contextlib.contextmanager
def chief_writes_first(strategy: tf.distribute.Strategy) -> Iterator[None]:
  """Runs the block on the chief first; other workers run it once the chief has finished.

  For files the chief writes and the others reuse (feature caches): every worker computes what
  the block returns, but only the chief finds the files missing and writes them. The two
  barriers pair up: the others wait before the block, the chief after it.
  """
  chief = is_chief(strategy)
  if not chief:
    barrier(strategy)
  yield
  if chief:
    barrier(strategy)


def _gpu_devices(num_gpus: Optional[int]) -> List[str]:
  """The first `num_gpus` visible GPUs (all when None)."""
  gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
  if num_gpus is None:
    return gpus
  if num_gpus > len(gpus):
    raise ValueError(f"--num_gpus={num_gpus}, but only {len(gpus)} GPU(s) are visible.")
  return gpus[:num_gpus]


def tpu_support() -> bool:
  """Whether this TensorFlow build can drive a TPU at all (needs neither a TPU nor libtpu)."""
  return bool(kernels.get_registered_kernels_for_op(_TPU_ONLY_OP).kernel)


def check_tpu_support(config: StrategyConfig) -> None:
  """Refuses a run on this machine's TPU with a TensorFlow build without TPU support, early.

  The plain `tensorflow` wheel (what requirements.txt installs) fails only inside
  initialize_tpu_system, with "No OpKernel was registered to support Op 'ConfigureDistributedTPU'".
  A remote TPU (a node name, grpc://) runs its kernels in its hosts' TensorFlow servers, so a
  client is not held to this; it fails, if at all, when connecting (see `connect_tpu`).

  Raises:
    ValueError: naming `make install-tpu` and `python -m bert_tf.doctor`.
  """
  if (strategy_name(config) != "tpu" or tpu_address(config) != LOCAL_TPU
      or tpu_support()):
    return
  raise ValueError(f"--use_tpu: this TensorFlow {tf.__version__} is not TensorFlow's TPU build "
                   f"(the tensorflow-tpu wheel), so it cannot use a TPU; {TPU_FIX}.")


def _first_line(error: Exception) -> str:
  """The first line of an error's message (TensorFlow appends kernel listings and stack traces)."""
  message = getattr(error, "message", None) or str(error)
  return message.strip().splitlines()[0] if message.strip() else type(error).__name__


def connect_tpu(config: StrategyConfig) -> Tuple[
    tf.distribute.cluster_resolver.TPUClusterResolver, tf.tpu.experimental.Topology]:
  """Resolves, connects to (remote TPUs only) and initialises the TPU the flags name.

  Returns:
    The resolver and what initialize_tpu_system returns (a tf.tpu.experimental.Topology).

  Raises:
    ValueError: for no TPU support, an unnamed TPU, or a TPU that cannot be found or reached.
  """
  check_tpu_support(config)
  address = tpu_address(config)
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=address, zone=config.tpu_zone, project=config.gcp_project)
  except ValueError as e:
    if address is not None:
      raise ValueError(f"--tpu_name={address}: {_first_line(e)}; {TPU_FIX}.") from e
    raise ValueError(
        "A TPU was requested but none was named: pass --tpu_name (a Cloud TPU node name, "
        "grpc://host:8470, or 'local' on a TPU VM or the Colab TPU runtime), or set TPU_NAME."
    ) from e
  try:
    if address != LOCAL_TPU:
      # A TPU VM's TPU is already this process's device; only remote TPUs join a cluster.
      tf.config.experimental_connect_to_cluster(resolver)
    topology = tf.tpu.experimental.initialize_tpu_system(resolver)
  except (tf.errors.OpError, RuntimeError) as e:
    raise ValueError(f"No TPU found at --tpu_name={address or '(auto-detected)'} "
                     f"({_first_line(e)}); {TPU_FIX}.") from e
  return resolver, topology


def _tpu_strategy(config: StrategyConfig) -> tf.distribute.Strategy:
  """Connects to and initialises the TPU, and returns a TPUStrategy over its cores."""
  resolver, _ = connect_tpu(config)
  strategy = tf.distribute.TPUStrategy(resolver)
  cores = strategy.num_replicas_in_sync
  logging.info("Using TPU %s (master %r) with %d cores.", tpu_address(config) or "auto-detected",
               resolver.master(), cores)
  if cores != config.num_tpu_cores:
    logging.warning("--num_tpu_cores=%d, but the TPU has %d cores; using %d.",
                    config.num_tpu_cores, cores, cores)
  return strategy


def _mirrored_strategy(num_gpus: Optional[int]) -> tf.distribute.Strategy:
  """MirroredStrategy over the chosen GPUs, or over the logical CPUs when no GPU is chosen."""
  devices = _gpu_devices(num_gpus)
  if not devices:
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    logging.info("mirrored: no GPU visible or chosen; mirroring over the %d CPU device(s).",
                 len(devices))
  strategy = tf.distribute.MirroredStrategy(devices=devices)
  logging.info("Using MirroredStrategy over %s.", ", ".join(devices))
  return strategy


def _multi_worker_strategy() -> tf.distribute.Strategy:
  """MultiWorkerMirroredStrategy; the cluster comes from TF_CONFIG (checked to be JSON first)."""
  tf_config = os.environ.get("TF_CONFIG")
  if tf_config:
    try:
      json.loads(tf_config)
    except json.JSONDecodeError as e:
      raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {tf_config!r}") from e
  else:
    logging.warning("multi_worker_mirrored: TF_CONFIG is not set, so this runs as one worker.")
  strategy = tf.distribute.MultiWorkerMirroredStrategy()
  logging.info("Using MultiWorkerMirroredStrategy: %d replicas in sync.",
               strategy.num_replicas_in_sync)
  return strategy


def _one_device_strategy(num_gpus: Optional[int]) -> tf.distribute.Strategy:
  """OneDeviceStrategy on the first GPU, or on the CPU when there is none (or --num_gpus=0)."""
  gpus = _gpu_devices(None if num_gpus is None else min(num_gpus, 1))
  device = gpus[0] if gpus else "/cpu:0"
  logging.info("Using OneDeviceStrategy on %s.", device)
  return tf.distribute.OneDeviceStrategy(device)


def _automatic_strategy(num_gpus: Optional[int]) -> tf.distribute.Strategy:
  """Mirrored over several GPUs, one_device for one GPU, else the default strategy on CPU."""
  gpus = _gpu_devices(num_gpus)
  if len(gpus) > 1:
    return _mirrored_strategy(len(gpus))
  if len(gpus) == 1:
    return _one_device_strategy(1)
  if num_gpus == 0:
    logging.info("--num_gpus=0: running on CPU with the default strategy.")
  else:
    logging.info("No GPU or TPU found: running on CPU with the default strategy "
                 "(pass --use_tpu to train on a TPU).")
  return tf.distribute.get_strategy()


def resolve_strategy(config: StrategyConfig) -> tf.distribute.Strategy:
  """Builds the tf.distribute strategy the flags ask for (see the module docstring).

  Raises:
    ValueError: for an unknown or contradictory strategy, more GPUs than are visible, a TPU
      run on a TensorFlow without TPU support, an unnamed or unreachable TPU, or a TF_CONFIG
      that is not JSON.
  """
  name = strategy_name(config)
  if name == "tpu":
    return _tpu_strategy(config)
  if name == "mirrored":
    return _mirrored_strategy(config.num_gpus)
  if name == "multi_worker_mirrored":
    return _multi_worker_strategy()
  if name == "one_device":
    return _one_device_strategy(config.num_gpus)
  if name == "default":
    logging.info("Using the default strategy.")
    return tf.distribute.get_strategy()
  return _automatic_strategy(config.num_gpus)

