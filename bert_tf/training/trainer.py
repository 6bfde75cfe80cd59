"""One custom training loop for every script: distributed, resumable, observable.

Steps run `steps_per_loop` at a time inside one tf.function (what TPUs need to stay busy);
gradients are summed across replicas, clipped by global norm (1.0) and applied, so N replicas
compute exactly what one device computes on the same global batch. Checkpoints hold the model,
the optimizer and the step; the step is also the data position (see input_pipeline.py), so a
restarted run continues where the last checkpoint left off.

Gradient accumulation (`gradient_accumulation_steps` K) keeps the dataset as it is: it yields
one global batch of train_batch_size per optimizer step (so the step is still the data position),
and each replica splits its share into K micro-batches inside the compiled step, summing their
gradients in a while loop before the one cross-replica sum, clip and update. Activations are
held for one micro-batch at a time; checkpoints, SIGTERM saves and resumes fall on step
boundaries, where no partial sum exists. A loss normalised within its batch (pretraining's MLM
loss, by the batch's masked-token count) is then normalised per micro-batch, as it already is
per replica (and per TPU core in google-research).
"""

import atexit
import contextlib
import dataclasses
import gc
import math
import os
import signal
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from bert_tf.data import packing
from bert_tf.io import run_directory
from bert_tf.training import distribution, optimization, partial_saves

Features = Dict[str, tf.Tensor]
ModelFn = Callable[[], tf_keras.Model]
# Per-example losses, shape [per_replica_batch] (packed rows: [rows, E], weighted by
# example_weights, see data/packing.py); averaged over the global batch's examples by the trainer.
LossFn = Callable[[Features, Dict[str, tf.Tensor]], tf.Tensor]
# Builds this input pipeline's dataset of per-replica batches, starting at a given batch index.
DatasetFn = Callable[[tf.distribute.InputContext, int], tf.data.Dataset]

GRADIENT_CLIP_NORM = 1.0  # google-research's clip_by_global_norm
# TensorBoard summary directories in output_dir: training scalars, and evaluations.
TRAIN_DIR = "train"
EVAL_DIR = "eval"


@dataclasses.dataclass
class TrainConfig:
  """How to train; field names follow google-research flags where one exists."""
  output_dir: str
  train_batch_size: int
  num_train_steps: int
  learning_rate: float
  num_warmup_steps: int = 0
  optimizer: str = "adamw"
  weight_decay_rate: float = 0.01
  max_grad_norm: float = GRADIENT_CLIP_NORM  # the global-norm clip; 0 turns clipping off
  decay_from_warmup_end: bool = False
  iterations_per_loop: int = 1000
  save_checkpoints_steps: int = 1000
  keep_checkpoint_max: int = 5
  jit_compile: bool = False
  mixed_precision: Optional[str] = None
  # Micro-batches per optimizer step; train_batch_size is the effective (summed) batch.
  gradient_accumulation_steps: int = 1
  # The standard bias-corrected AdamW (torch's) instead of google-research's (optimization.py).
  adam_bias_correction: bool = False
  # A loop (one tf.function call) also ends after about this many seconds, measured from the
  # loops so far, so progress shows at least that often. (A SIGTERM or Ctrl-C does not wait for
  # it: the loop ends after the step in flight.)
  max_seconds_per_loop: float = 20.0
  # Training files interleaved at once (data.pipeline.training_dataset's files_in_parallel).
  input_files_in_parallel: int = 16


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or Inf loss."""


class TrainingPreempted(SystemExit):
  """SIGTERM arrived (Cloud TPU preemption, Colab shutdown); a checkpoint was saved first.

  A SystemExit, so a script ends with the message and a non-zero status instead of a traceback,
  and a scheduler that restarts failed jobs restarts it.
  """


def write_checkpoint(strategy: tf.distribute.Strategy, checkpoint: tf.train.Checkpoint,
                     prefix: str) -> None:
  """Writes `checkpoint` at `prefix` on the chief; other workers write a scratch copy and delete it.

  Under MultiWorkerMirroredStrategy every worker must take part in a save (it may run
  collectives), but only the chief's may land in the output directory (TF's multi-worker guide).
  """
  if distribution.is_chief(strategy):
    with partial_saves.saving(prefix):
      checkpoint.write(prefix)
    return
  directory, name = os.path.split(prefix)
  scratch = os.path.join(directory, f".worker_tmp_{strategy.cluster_resolver.task_id}")
  try:
    with partial_saves.saving(os.path.join(scratch, name)):
      checkpoint.write(os.path.join(scratch, name))
  finally:
    if tf.io.gfile.exists(scratch):
      tf.io.gfile.rmtree(scratch)


def _compiles_update(strategy: tf.distribute.Strategy) -> bool:
  """Whether the cross-replica sum and optimizer update can join the XLA-compiled step.

  Applying gradients synchronises the replicas. A MirroredStrategy (or multi-worker one) does
  that with a merge_call, which cannot run inside a function compiled within strategy.run,
  unless all its devices are GPUs: then, under XLA, it all-reduces in replica context instead
  (MirroredExtended._use_merge_call in TF 2.20's mirrored_strategy.py). Other strategies apply
  the update in place.
  """
  if isinstance(strategy, (tf.distribute.MirroredStrategy,
                           tf.distribute.MultiWorkerMirroredStrategy)):
    return all(tf.DeviceSpec.from_string(device).device_type == "GPU"
               for device in strategy.extended.worker_devices)
  return True


def _dropout_generators(model: tf_keras.Model) -> List[tf.random.Generator]:
  """Creates (they are lazy) and returns the random generators of the model's dropout layers."""
  generators = []
  for layer in model.submodules:
    rng = getattr(layer, "_random_generator", None)
    if hasattr(rng, "_maybe_init"):  # tf_keras.backend.RandomGenerator (not exported)
      rng._maybe_init()  # pylint: disable=protected-access
      if rng._generator is not None:  # pylint: disable=protected-access
        generators.append(rng._generator)  # pylint: disable=protected-access
  return generators


class StopRequest(threading.Event):
  """Set by SIGTERM or the first Ctrl-C (SIGINT); `signal_name` says which.

  Setting it also raises every attached flag, a tf.Variable the compiled training loop reads
  before each step, so a loop running when the signal arrives ends after its current step.
  """
  signal_name = "SIGTERM"

  def __init__(self):
    super().__init__()
    # Reentrant: the Python-level signal handler may run in the main thread while it holds it.
    self._lock = threading.RLock()
    self._flags: List[tf.Variable] = []

  def set(self, signum: int = signal.SIGTERM) -> None:
    """Requests the stop (the first call logs and acts; later ones do nothing)."""
    with self._lock:
      if self.is_set():
        return
      self.signal_name = signal.Signals(signum).name
      logging.warning("%s received: stopping after the current step, saving a checkpoint, then "
                      "exiting%s.", self.signal_name,
                      " (press Ctrl-C again to stop at once)" if signum == signal.SIGINT else "")
      super().set()
      for flag in self._flags:
        flag.assign(True)

  @contextlib.contextmanager
  def attached(self, flag: tf.Variable) -> Iterator[None]:
    """Keeps `flag` equal to this request (False until it is set) for the duration of the block."""
    with self._lock:
      self._flags.append(flag)
      flag.assign(self.is_set())
    try:
      yield
    finally:
      with self._lock:
        self._flags.remove(flag)


_stop_request: Optional[StopRequest] = None  # the open sigterm_requests block's
# Exit status after a second Ctrl-C: 128 + SIGINT, what a shell reports for a Ctrl-C.
SECOND_CTRL_C_STATUS = 128 + signal.SIGINT


def _stop_at_once() -> None:
  """Ends the process now, after a second Ctrl-C: one line, no traceback, no save."""
  logging.flush()
  os.write(2, b"Stopped at once by a second Ctrl-C, without saving: run the same command again "
              b"to resume from the last checkpoint.\n")
  os._exit(SECOND_CTRL_C_STATUS)  # pylint: disable=protected-access


def _watch_signals(read_fd: int, requested: StopRequest) -> None:
  """Turns the signal numbers written to `read_fd` (Python's wakeup fd) into `requested`.

  Python runs a signal handler only when the main thread is between bytecodes, i.e. after the
  TensorFlow call it is in (a whole training loop) returns; the wakeup fd is written by the C
  handler at once, so this thread sees the signal while the loop still runs.
  """
  stopping = False  # a signal came before the one being read
  while True:
    data = os.read(read_fd, 64)
    if not data:  # the block ended and closed the write end
      return
    for signum in data:
      if signum not in (signal.SIGTERM, signal.SIGINT):  # another library's handled signal
        continue
      if signum == signal.SIGINT and stopping:
        _stop_at_once()
      stopping = True
      requested.set(signum)


@contextlib.contextmanager
def sigterm_requests() -> Iterator[StopRequest]:
  """Turns SIGTERM and a first Ctrl-C into a set StopRequest for the duration of the block (a
  training loop ends after its current step, saves and stops), then restores the old handlers.

  A Ctrl-C after that stops the process at once (_stop_at_once). Nested blocks share the
  outermost one's request: a task that trains in segments wraps them all in one, so a signal
  during an evaluation between segments stops the next one before it trains instead of killing
  the process. Only the main thread may install signal handlers; elsewhere the request is never
  set.
  """
  global _stop_request
  if _stop_request is not None:
    yield _stop_request
    return
  requested = StopRequest()
  if threading.current_thread() is not threading.main_thread():
    yield requested
    return
  read_fd, write_fd = os.pipe()
  os.set_blocking(write_fd, False)  # as set_wakeup_fd requires
  watcher = threading.Thread(target=_watch_signals, args=(read_fd, requested),
                             name="stop-request-watcher", daemon=True)
  watcher.start()
  # The Python-level handler (run late, when the main thread is back in Python) sets the request
  # too, so a signal sent from Python code is acted on before its next line.
  previous = {sig: signal.signal(sig, lambda signum, frame: requested.set(signum))
              for sig in (signal.SIGTERM, signal.SIGINT)}
  previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
  _stop_request = requested
  try:
    yield requested
  finally:
    _stop_request = None
    signal.set_wakeup_fd(previous_fd)
    for sig, old in previous.items():
      signal.signal(sig, old)
    os.close(write_fd)
    watcher.join()
    os.close(read_fd)


class StopRequested(Exception):
  """Raised by check_stop_request in work between training loops; Trainer.stop_for_request ends
  the run."""


def check_stop_request(strategy: tf.distribute.Strategy) -> None:
  """Raises StopRequested if SIGTERM or Ctrl-C came in the open sigterm_requests block: long work
  between training segments (an evaluation) calls it between batches, so it stops too.

  Not with other workers: one that stopped alone would leave them waiting in a collective, so
  they finish the evaluation and agree on the stop in the next training loop.
  """
  if (_stop_request is not None and _stop_request.is_set()
      and not distribution.has_other_workers(strategy)):
    raise StopRequested()


class Progress:
  """A progress line with steps/s, examples/s and ETA.

  The ETA counts from the end of the first loop: that loop also traces and compiles the step
  (seconds to minutes), so until a second loop is timed the ETA is unknown (NaN: "estimating").
  """

  def __init__(self, start_step: int, total_steps: int, batch_size: int):
    self.total_steps = total_steps
    self.batch_size = batch_size
    self.last_time = time.time()
    self.last_step = start_step
    self.timed_from: Optional[Tuple[int, float]] = None  # (step, time) at the first loop's end

  def update(self, step: int) -> Dict[str, float]:
    now = time.time()
    steps_per_sec = (step - self.last_step) / max(now - self.last_time, 1e-9)
    eta = float("nan")
    if self.timed_from is None:
      self.timed_from = (step, now)
    elif step > self.timed_from[0]:
      overall = (step - self.timed_from[0]) / max(now - self.timed_from[1], 1e-9)
      eta = (self.total_steps - step) / overall
    self.last_time, self.last_step = now, step
    return dict(steps_per_sec=steps_per_sec, examples_per_sec=steps_per_sec * self.batch_size,
                eta_sec=eta)


def _format_duration(seconds: float) -> str:
  if math.isnan(seconds):
    return "estimating"
  if not math.isfinite(seconds):
    return "?"
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{seconds:02d}"


class Trainer:
  """Builds model and optimizer under a strategy, restores or initialises, and trains."""

  def __init__(self, strategy: tf.distribute.Strategy, config: TrainConfig, model_fn: ModelFn,
               loss_fn: LossFn, dataset_fn: DatasetFn,
               init_fn: Optional[Callable[[tf_keras.Model], None]] = None):
    accumulation = config.gradient_accumulation_steps
    if accumulation < 1:
      raise ValueError(f"gradient_accumulation_steps={accumulation}: expected 1 or more.")
    if config.train_batch_size % (strategy.num_replicas_in_sync * accumulation):
      raise ValueError(f"train_batch_size={config.train_batch_size} is not a multiple of the "
                       f"{strategy.num_replicas_in_sync} replicas times "
                       f"gradient_accumulation_steps={accumulation}.")
    self.strategy = strategy
    self.config = config
    self.loss_fn = loss_fn
    self.dataset_fn = dataset_fn
    # Dropout draws from tf.random.Generator states (variables), which we checkpoint so that a
    # resumed run draws the same masks as an uninterrupted one.
    tf_keras.backend.experimental.enable_tf_random_generator()
    with strategy.scope():
      self.model = model_fn()
      dropout_generators = _dropout_generators(self.model)
      optimizer = optimization.create_optimizer(
          config.learning_rate, config.num_train_steps, config.num_warmup_steps,
          config.optimizer, config.weight_decay_rate, config.decay_from_warmup_end,
          config.adam_bias_correction)
      logging.info("Gradients clipped to global norm %g after the cross-replica sum%s.",
                   config.max_grad_norm, " (no: --max_grad_norm=0)" if not config.max_grad_norm
                   else "")
      if config.mixed_precision == "mixed_float16":
        optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
      self.optimizer = optimizer
      # Creates the slot variables now, so a checkpoint restores them instead of deferring.
      self.optimizer._create_all_weights(self.model.trainable_variables)  # pylint: disable=protected-access
    # The sum of the training losses of every step so far, checkpointed with the step, so the
    # mean loss of a stretch of steps is exact even when a restart cut it in two.
    self._loss_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="loss_sum")
    self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                          dropout_generators=dropout_generators,
                                          loss_sum=self._loss_sum)
    if distribution.is_chief(strategy):  # a copied run directory resumes from its own files
      run_directory.make_checkpoint_state_relative(config.output_dir)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, config.output_dir, max_to_keep=config.keep_checkpoint_max,
        step_counter=self.optimizer.iterations)
    if distribution.is_chief(strategy):
      partial_saves.remove_temporaries(config.output_dir)  # of saves a full disk or kill cut
    restored = self._restore_latest()
    if not restored and init_fn is not None:
      init_fn(self.model)
    self._saved_step = self.step if restored else None  # the step of the last checkpoint
    self._train_loop = tf.function(self._train_loop_fn)
    # Raised by SIGTERM or Ctrl-C while train() runs (StopRequest.attached); a host variable
    # outside the strategy's scope, not checkpointed.
    self._stop_flag = tf.Variable(False, trainable=False, name="stop_requested")
    self._other_workers = distribution.has_other_workers(strategy)  # then stops are agreed
    self._looped = False  # whether a training loop has run (the first one is one step)
    # Mean loss over the steps the last train() call ran (None if it ran none), for per-epoch stats.
    self.mean_loss: Optional[float] = None
    # XLA compiles the whole replica step (forward, backward, accumulation, cross-replica sum,
    # clip, update) where the strategy allows it, else forward and backward. A TPU compiles
    # the replica step itself, so nothing is marked for it.
    jit = config.jit_compile and not isinstance(strategy, tf.distribute.TPUStrategy)
    whole_step = jit and _compiles_update(strategy)
    if jit and not whole_step:
      logging.info("XLA compiles forward and backward; the update runs uncompiled (replicas on "
                   "non-GPU devices synchronise outside XLA).")
    self._gradients = (tf.function(self._gradients_fn, jit_compile=True) if jit and not whole_step
                       else self._gradients_fn)
    self._train_step = (tf.function(self._replica_step, jit_compile=True) if whole_step
                       else self._replica_step)

  def _restore_latest(self) -> bool:
    """Restores the newest readable checkpoint in output_dir; False when there is none.

    A checkpoint whose files are damaged (a disk that filled up, a copy cut short: TF reports
    an OpError, or IndexError "Read less bytes than requested") is skipped
    with a warning for the one before it, so a run never continues from a half-read state;
    if every checkpoint is damaged, the error says which files to remove.
    """
    errors = []
    for path in reversed(self.manager.checkpoints):
      try:
        self.checkpoint.restore(path).assert_existing_objects_matched()
      except (tf.errors.OpError, ValueError, AssertionError, IndexError) as e:
        logging.warning("Checkpoint %s cannot be read (%s); trying the one before.", path,
                        str(e).splitlines()[0])
        errors.append(path)
        continue
      logging.info("Resumed from %s at step %d.", path, self.step)
      return True
    if errors:
      raise ValueError(f"No checkpoint in {self.config.output_dir} can be read: "
                       f"{', '.join(errors)}. Remove them (or use a new --output_dir) to train "
                       "from the start.")
    return False

  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  @property
  def loss_sum(self) -> float:
    """The sum of the losses of all steps trained so far (restored from checkpoints)."""
    return float(self._loss_sum.numpy())

  def _gradients_fn(self, features: Features, num_examples: tf.Tensor):
    """This replica's loss and gradients, summed over its micro-batches (None: not reached).

    `num_examples` is the step's example count over every replica, the loss's denominator.
    """
    accumulation = self.config.gradient_accumulation_steps
    if accumulation == 1:
      return self._micro_batch_gradients(features, num_examples)
    micro_batches = {name: tf.reshape(t, [accumulation, -1, *t.shape[1:]])
                     for name, t in features.items()}
    variables = self.model.trainable_variables
    reached = []  # which variables get a gradient, recorded when the body is traced

    def accumulate(index, loss_sum, grad_sums):
      loss, grads = self._micro_batch_gradients({name: t[index]
                                                 for name, t in micro_batches.items()},
                                                num_examples)
      reached[:] = [g is not None for g in grads]
      # Dense sums: the word-embedding gradient arrives sparse, with new indices each time.
      grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
               for g, v in zip(grads, variables)]
      return index + 1, loss_sum + loss, [s + g for s, g in zip(grad_sums, grads)]

    _, loss, grads = tf.while_loop(
        lambda index, *_: index < accumulation, accumulate,
        (tf.constant(0), tf.constant(0.0), [tf.zeros_like(v) for v in variables]))
    return loss, [g if r else None for g, r in zip(grads, reached)]

  def _micro_batch_gradients(self, features: Features, num_examples: tf.Tensor):
    """Loss and gradients of one (micro-)batch, the loss a share of the global batch's mean."""
    with tf.GradientTape() as tape:
      outputs = self.model(features, training=True)
      per_example = self.loss_fn(features, outputs)
      if packing.is_packed(features):  # per example slot [rows, E]; empty slots weigh 0
        loss = tf.reduce_sum(per_example * features[packing.EXAMPLE_WEIGHTS]) / num_examples
      else:
        loss = tf.nn.compute_average_loss(per_example,
                                          global_batch_size=self.config.train_batch_size)
      scaled = self.optimizer.get_scaled_loss(loss) if self._loss_scaled else loss
    variables = self.model.trainable_variables
    grads = tape.gradient(scaled, variables)
    if self._loss_scaled:
      grads = self.optimizer.get_unscaled_gradients(grads)
    return loss, grads

  @property
  def _loss_scaled(self) -> bool:
    return isinstance(self.optimizer, tf_keras.mixed_precision.LossScaleOptimizer)

  def _replica_step(self, features: Features) -> tf.Tensor:
    context = tf.distribute.get_replica_context()
    if packing.is_packed(features):
      # Rows hold a varying number of examples: the loss is the mean over the step's examples
      # on every replica, so each replica divides its sum by the global count.
      num_examples = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                        tf.reduce_sum(features[packing.EXAMPLE_WEIGHTS]))
    else:
      num_examples = tf.constant(float(self.config.train_batch_size))
    loss, grads = self._gradients(features, num_examples)
    # Variables the loss does not reach (the pooler, for SQuAD) have no gradient, as in TF1.
    pairs = [(g, v) for g, v in zip(grads, self.model.trainable_variables) if g is not None]
    grads = context.all_reduce(tf.distribute.ReduceOp.SUM, [g for g, _ in pairs])
    # The word-embedding gradient arrives sparse (IndexedSlices); Adam's sparse path updates
    # the whole table anyway, in several unfused passes. Summed into a dense tensor, it takes
    # the fused kernel: same result, and clip + update take 44 instead of 70 CPU-ms (46 instead
    # of 119 ms wall) per BERT-mini step on 2 cores (issue 7). Summed before the clip: the norm
    # of IndexedSlices is that of its rows, a repeated token's rows unsummed, not the gradient's
    # (torch's clip_grad_norm_ and gradient accumulation here take the summed one; issue 14).
    grads = [tf.convert_to_tensor(g) for g in grads]
    if self.config.max_grad_norm > 0:
      grads, _ = tf.clip_by_global_norm(grads, self.config.max_grad_norm)
    self.optimizer.apply_gradients(zip(grads, [v for _, v in pairs]),
                                   experimental_aggregate_gradients=False)
    return loss

  def _train_loop_fn(self, iterator: Iterator, num_steps: tf.Tensor
                     ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Runs `num_steps` steps, or fewer; returns the sum of their losses, how many ran and
    whether a stop was requested.

    The loop stays one call to the accelerator (the step inside is what XLA or the TPU
    compiles), yet ends within a step of a SIGTERM, and after about max_seconds_per_loop. Every
    worker must run the same steps in each call (a step's collectives wait for all of them), so
    both ends are agreed: each step's all-reduce of the loss also sums every worker's stop flag
    and whether its loop has run max_seconds_per_loop, and the loop ends after a step in which
    one had. One process also reads its flag before the first step, so a stop between loops
    runs no further step.
    """
    total, done = tf.constant(0.0), tf.constant(0)
    stop = tf.constant(False) if self._other_workers else self._stop_flag.read_value()
    over_time = tf.constant(False)
    started = tf.timestamp()
    while tf.logical_and(done < num_steps, tf.logical_not(tf.logical_or(stop, over_time))):
      votes = tf.cast(tf.stack([self._stop_flag.read_value(),
                                tf.timestamp() - started >= self.config.max_seconds_per_loop]),
                      tf.float32)
      sums = self.strategy.reduce(
          tf.distribute.ReduceOp.SUM,
          self.strategy.run(self._step_and_votes, args=(next(iterator), votes)), axis=None)
      total += sums[0]
      stop, over_time = sums[1] > 0, sums[2] > 0
      done += 1
    return total, done, stop

  def _step_and_votes(self, features: Dict[str, tf.Tensor], votes: tf.Tensor) -> tf.Tensor:
    """One replica's step; returns [loss, *votes], for one all-reduce of both."""
    loss = tf.cast(self._train_step(features), tf.float32)
    return tf.concat([loss[tf.newaxis], votes], axis=0)

  def _distributed_dataset(self) -> Iterator:
    start = self.step
    return iter(self.strategy.distribute_datasets_from_function(
        lambda context: self.dataset_fn(context, start)))

  def train(self, stop_at_step: Optional[int] = None) -> tf_keras.Model:
    """Trains to num_train_steps, checkpointing every save_checkpoints_steps and at the end.

    `stop_at_step` ends the run early, with a checkpoint, as a time budget would; running
    again resumes from there.
    """
    config = self.config
    last_step = min(stop_at_step or config.num_train_steps, config.num_train_steps)
    if self.step >= last_step:
      self.mean_loss = None
      logging.info("Already trained to step %d; nothing to do.", self.step)
      return self.model
    iterator = self._distributed_dataset()
    chief = distribution.is_chief(self.strategy)
    writer = (tf.summary.create_file_writer(os.path.join(config.output_dir, TRAIN_DIR))
              if chief else tf.summary.create_noop_writer())
    progress = Progress(self.step, config.num_train_steps, config.train_batch_size)
    logging.info("Training from step %d to %d, global batch %d on %d replica(s).", self.step,
                 config.num_train_steps, config.train_batch_size,
                 self.strategy.num_replicas_in_sync)
    loss_sum, steps_run = 0.0, 0
    with sigterm_requests() as sigterm, sigterm.attached(self._stop_flag):
      stopped = False
      while self.step < last_step and not stopped:
        steps = self._steps_to_next_stop(last_step)
        loss_total, ran, stop = self._train_loop(iterator, tf.constant(steps))
        steps, stopped = int(ran), bool(stop)
        if not steps:  # the stop came before the loop's first step
          continue
        loss = float(loss_total) / steps
        loss_sum, steps_run = loss_sum + loss * steps, steps_run + steps
        self._loss_sum.assign_add(loss * steps)
        step = self.step
        if not math.isfinite(loss):
          raise NonFiniteLossError(
              f"Loss became {loss} in the steps ending at step {step}; stopping. The last good "
              f"checkpoint is {self.manager.latest_checkpoint or 'none (no checkpoint yet)'}. "
              "Check the learning rate, the vocab_size in bert_config.json against vocab.txt, "
              "and the input data.")
        stats = progress.update(step)
        learning_rate = float(self._current_learning_rate())
        logging.info("step %d/%d  loss %.4f  lr %.3g  %.2f steps/s  %.1f examples/s  ETA %s",
                     step, config.num_train_steps, loss, learning_rate, stats["steps_per_sec"],
                     stats["examples_per_sec"], _format_duration(stats["eta_sec"]))
        with writer.as_default(step=step):
          tf.summary.scalar("loss", loss)
          tf.summary.scalar("learning_rate", learning_rate)
          tf.summary.scalar("examples_per_sec", stats["examples_per_sec"])
          tf.summary.scalar("steps_per_sec", stats["steps_per_sec"])
        if step % config.save_checkpoints_steps == 0 or step >= last_step:
          self.save()
      # One process also stops for a signal that came after its last loop; workers stop only
      # when they agree (a later loop, or the next segment's, takes a late signal).
      if stopped or (sigterm.is_set() and not self._other_workers):
        self._stop_for_sigterm(writer, sigterm)
    writer.flush()
    self.mean_loss = loss_sum / steps_run if steps_run else None
    return self.model

  def stop_for_request(self) -> None:
    """Ends the run for a stop that came between training segments (see check_stop_request)."""
    self._stop_for_sigterm(tf.summary.create_noop_writer(), _stop_request)

  def _stop_for_sigterm(self, writer: tf.summary.SummaryWriter, request: StopRequest) -> None:
    """Ends the run after SIGTERM or Ctrl-C, saving the current step first unless it is saved."""
    path = self._checkpoint_path() if self._saved_step == self.step else self.save()
    writer.flush()
    # Python's last garbage collection at exit walks TensorFlow's whole object graph: 13 of
    # the 14 s from SIGTERM to exit of a tiny run_classifier on 2 busy cores (1.8 s without it),
    # out of a spot TPU's 30 s. Everything is saved and flushed, so the exit skips it.
    atexit.register(gc.freeze)
    cause = request.signal_name if request.is_set() else "a signal to another worker"
    raise TrainingPreempted(
        f"Stopped by {cause} at step {self.step} after saving {path}; run the same "
        "command again to resume from it.")

  def save(self) -> str:
    """Saves a checkpoint in output_dir and returns its path (on every worker).

    Under MultiWorkerMirroredStrategy every worker must take part in a save (it may run
    collectives), but only the chief's lands in output_dir: the others write to a temporary
    directory of their own and delete it, as TF's multi-worker guide prescribes.
    """
    if distribution.is_chief(self.strategy):
      with partial_saves.saving(self._checkpoint_path()):
        path = self.manager.save(checkpoint_number=self.step)
      logging.info("Saved checkpoint %s", path)
    else:
      path = self._checkpoint_path()
      write_checkpoint(self.strategy, self.checkpoint, path)
    self._saved_step = self.step
    return path

  def _checkpoint_path(self) -> str:
    """The path save() gives the current step's checkpoint (the CheckpointManager's naming)."""
    return os.path.join(self.config.output_dir, f"ckpt-{self.step}")

  def _steps_to_next_stop(self, last_step: int) -> int:
    """Steps until the next loop end, checkpoint or `last_step`, whichever comes first (a loop
    also ends after about max_seconds_per_loop: see _train_loop_fn).

    The trainer's first loop is one step: it also traces and compiles, so its line shows as
    soon as that is done, and the ETA counts from its end.
    """
    if not self._looped:
      self._looped = True
      return 1
    step, config = self.step, self.config
    to_save = config.save_checkpoints_steps - step % config.save_checkpoints_steps
    return min(config.iterations_per_loop, to_save, last_step - step)

  def _current_learning_rate(self) -> tf.Tensor:
    optimizer = self.optimizer
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    schedule = inner.learning_rate
    if callable(schedule):
      return schedule(optimizer.iterations)
    return schedule


def predict(strategy: tf.distribute.Strategy, model: tf_keras.Model,
            dataset: tf.data.Dataset, output_keys: List[str],
            passthrough_keys: List[str] = ()) -> Dict[str, np.ndarray]:
  """Runs `model` over `dataset` (global batches) and returns the outputs, in order, as arrays.

  `passthrough_keys` are input features (e.g. unique_ids) returned beside the outputs.
  """
  @tf.function
  def step(features):
    outputs = model(features, training=False)
    result = {k: outputs[k] for k in output_keys}
    result.update({k: features[k] for k in passthrough_keys})
    return result

  collected: Dict[str, List[np.ndarray]] = {k: [] for k in [*output_keys, *passthrough_keys]}
  for features in strategy.experimental_distribute_dataset(dataset):
    check_stop_request(strategy)  # an evaluation between training segments stops within a batch
    # Every replica's share of the batch, in order, on every worker: with several workers each
    # one computes a share, and the chief, which writes the outputs, needs all of them.
    per_replica = strategy.run(step, args=(features,))
    for key in collected:
      collected[key].append(strategy.gather(per_replica[key], axis=0).numpy())
  return {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in collected.items()}
