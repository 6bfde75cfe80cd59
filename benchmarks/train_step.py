"""Training-step throughput on the CPU: bert_tf's Trainer against transformers + torch, same run.

  python -m benchmarks.train_step [--repeats 5] [--steps 3] [--tasks classifier,pretraining,squad]
                                  [--jit] [--batch_size N]

BERT-mini (L=4, H=256, A=4, intermediate 1024, vocab 30522), full training steps on random
int32 batches: sentence classification (seq 128, batch 32), masked-LM pretraining (seq 128,
20 predictions, batch 32) and SQuAD spans (seq 384, batch 16 to keep a step near the others).
Ours is the step users run: Trainer._train_loop (steps_per_loop steps in one tf.function, data
from tf.data, gradients clipped to global norm 1.0, AdamW with decay excluding LayerNorm/bias,
WarmupLinearDecay). Theirs is transformers' BertForSequenceClassification / BertForPreTraining /
BertForQuestionAnswering with torch.optim.AdamW on the same recipe, in benchmarks/hf_train_step.py,
a worker process (this venv's python when it has torch and transformers, else --hf_venv's); the
two take turns on the same cores, one timed round each, and each figure is the median over
rounds, the ratio also the worst round's (min). For pretraining, torch runs twice: as
BertForPreTraining does (its masked-LM head on all B * S positions) and with the head on the
masked positions only, gathered first, as ours (tf-models' MaskedLM) does: like for like. Both
use `--threads` threads (TF intra- and inter-op pools, torch.set_num_threads).

Model FLOPs utilisation is model FLOPs per second over the machine's peak: the fastest float32
matmul of `--matmul_size` squared, by TF or torch, in any round of the run. Each side's step is
also split into forward+backward and the update (clip, AdamW, schedule), each timed on its own
(see OurSide; torch's loop times both parts of each step), to show where the time goes; their
sum over the full step ("parts_over_step", about 1) checks the split. Model
FLOPs per step count each multiply-add as 2 FLOPs and a backward pass as twice the forward:
  6 * N_layers * B * S + 12 * L * H * S * B * S + 6 * N_head * positions
N_layers: parameters of the transformer blocks (embeddings are lookups, not matmuls); the second
term is attention's scores and weighted sum; N_head: the head's matmul parameters, applied at
its positions (B for the pooler and classifier, B * 20 for the masked-LM transform and vocabulary
projection plus B for next-sentence, B * S for SQuAD). torch's BertForPreTraining projects all
B * S positions onto the vocabulary; that extra work is not counted as model FLOPs.
Merges the figures into benchmarks/results.json under "train_step" ("train_step_batch_N" with
--batch_size N: every task's batch set to N, e.g. the few packed rows a fine-tuning step takes,
to see the costs a step pays whatever its size).
"""

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402  (after the log-level variable)
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from benchmarks import common  # noqa: E402
from bert_tf import modeling  # noqa: E402
from bert_tf.checkpoints import configs  # noqa: E402
from bert_tf.tasks import classifier as classifier_task
from bert_tf.tasks import pretraining as pretraining_task
from bert_tf.tasks import squad as squad_task
from bert_tf.training import trainer  # noqa: E402

BERT_MINI = configs.BertConfig(vocab_size=30522, hidden_size=256, num_hidden_layers=4,
                               num_attention_heads=4, intermediate_size=1024)
NUM_BATCHES = 8  # distinct random batches, cycled by the input pipeline
LEARNING_RATE, NUM_TRAIN_STEPS, NUM_WARMUP_STEPS = 1e-4, 10000, 100
# A timed loop runs all its steps: the trainer's time bound on a loop (20 s by default) would
# end a slow round early.
UNBOUNDED_LOOP_SECONDS = 1e9
HF_WORKER = common.ROOT / "benchmarks" / "hf_train_step.py"


@dataclasses.dataclass(frozen=True)
class Task:
  seq_length: int
  batch_size: int
  predictions: int = 0  # masked-LM predictions per sequence


TASKS = dict(classifier=Task(128, 32), pretraining=Task(128, 32, predictions=20),
             squad=Task(384, 16))


def set_threads(threads: int) -> Dict[str, int]:
  """Sets TF's intra- and inter-op pools to `threads` (if TF has not started yet); returns both."""
  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  except RuntimeError:  # already initialised in this process (e.g. by an earlier benchmark)
    pass
  return dict(intra_op=tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
              inter_op=tf.config.threading.get_inter_op_parallelism_threads() or os.cpu_count())


def model_flops(name: str, task: Task, config: configs.BertConfig) -> float:
  """Model FLOPs of one training step of task `name`, by the formula in the docstring."""
  hidden, layers, seq, batch = (config.hidden_size, config.num_hidden_layers, task.seq_length,
                                task.batch_size)
  tokens = batch * seq
  layer_params = 4 * hidden * hidden + 2 * hidden * config.intermediate_size
  pooler_and_classifier = batch * (hidden * hidden + 2 * hidden)
  head = dict(
      classifier=pooler_and_classifier,
      pretraining=(batch * task.predictions * (hidden * hidden + hidden * config.vocab_size) +
                   pooler_and_classifier),
      squad=tokens * 2 * hidden)[name]
  return float(6 * layers * layer_params * tokens + 12 * layers * hidden * seq * tokens +
               6 * head)


def _random_features(name: str, task: Task, seed: int) -> Dict[str, np.ndarray]:
  """NUM_BATCHES batches of random inputs and labels for `name`, every position real."""
  rng = np.random.default_rng(seed)
  count, seq = NUM_BATCHES * task.batch_size, task.seq_length
  features = dict(input_ids=rng.integers(0, BERT_MINI.vocab_size, (count, seq), dtype=np.int32),
                  input_mask=np.ones((count, seq), np.int32),
                  segment_ids=np.zeros((count, seq), np.int32))
  if name == "classifier":
    features["label_ids"] = rng.integers(0, 2, count, dtype=np.int32)
  elif name == "pretraining":
    positions = np.argsort(rng.random((count, seq)), axis=1)[:, :task.predictions]
    features.update(
        masked_lm_positions=positions.astype(np.int32),
        masked_lm_ids=rng.integers(0, BERT_MINI.vocab_size, positions.shape, dtype=np.int32),
        masked_lm_weights=np.ones(positions.shape, np.float32),
        next_sentence_labels=rng.integers(0, 2, count, dtype=np.int32))
  else:
    features.update(start_positions=rng.integers(0, seq, count, dtype=np.int32),
                    end_positions=rng.integers(0, seq, count, dtype=np.int32))
  return features


def make_trainer(name: str, task: Task, output_dir: str, steps_per_loop: int,
                 jit_compile: bool = False, seed: int = 1) -> trainer.Trainer:
  """The Trainer a script builds for `name`, fed endless random batches from tf.data."""
  features = _random_features(name, task, seed)
  model_class, loss_fn = dict(
      classifier=(lambda c: modeling.BertClassifier(c, num_labels=2),
                  classifier_task.classification_loss),
      pretraining=(modeling.BertPretrainer, pretraining_task.pretraining_loss),
      squad=(modeling.BertSpanLabeler, squad_task.span_loss))[name]

  def model_fn():
    tf_keras.utils.set_random_seed(seed)
    return modeling.build_model(model_class(BERT_MINI))

  def dataset_fn(context: tf.distribute.InputContext, start_batch: int) -> tf.data.Dataset:
    batch = context.get_per_replica_batch_size(task.batch_size)
    dataset = tf.data.Dataset.from_tensor_slices(features).repeat()
    return dataset.skip(start_batch * batch).batch(batch, drop_remainder=True).prefetch(2)

  config = trainer.TrainConfig(
      output_dir=output_dir, train_batch_size=task.batch_size, num_train_steps=NUM_TRAIN_STEPS,
      learning_rate=LEARNING_RATE, num_warmup_steps=NUM_WARMUP_STEPS,
      iterations_per_loop=steps_per_loop, save_checkpoints_steps=NUM_TRAIN_STEPS,
      jit_compile=jit_compile, max_seconds_per_loop=UNBOUNDED_LOOP_SECONDS)
  return trainer.Trainer(tf.distribute.get_strategy(), config, model_fn, loss_fn, dataset_fn)


class TorchWorker:
  """benchmarks/hf_train_step.py in the Hugging Face venv, driven over a pipe."""

  def __init__(self, python: str, job: Dict[str, Any]):
    self.process = subprocess.Popen([python, str(HF_WORKER)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
    self.info = self.ask(json.dumps(job))

  def ask(self, line: str) -> Dict[str, Any]:
    """Sends one command line; returns the worker's JSON answer."""
    self.process.stdin.write(line + "\n")
    self.process.stdin.flush()
    answer = self.process.stdout.readline()
    if not answer:
      raise RuntimeError(f"{HF_WORKER.name} exited with status {self.process.wait()}; its "
                         "error is printed above.")
    return json.loads(answer)

  def close(self) -> None:
    self.process.stdin.write("\n")
    self.process.stdin.close()
    self.process.wait()


def _seconds(function: Callable[[], Any]) -> float:
  started = time.perf_counter()
  function()
  return time.perf_counter() - started


def _keep(grads: Sequence[Any]) -> tf.Tensor:
  """A scalar that depends on every gradient (one element each), so none is pruned away."""
  return tf.add_n([tf.reduce_sum((g.values if isinstance(g, tf.IndexedSlices) else g)[..., :1])
                   for g in grads if g is not None])


class OurSide:
  """Our full step (Trainer._train_loop), and for the breakdown each part timed alone: forward +
  backward, and the update (the Trainer's own step on gradients computed once beforehand).

  Each is its own tf.function, traced and run once before any timing; all read batches from
  the same kind of tf.data iterator, so the parts add up to the step up to timing noise.
  """

  def __init__(self, name: str, task: Task, output_dir: str, steps: int, jit_compile: bool):
    self.run = make_trainer(name, task, os.path.join(output_dir, "step"), steps, jit_compile)
    self.iterator = self.run._distributed_dataset()  # pylint: disable=protected-access
    self.steps = tf.constant(steps)
    gradients = self.run._gradients  # pylint: disable=protected-access
    iterator = self.iterator
    # Unpacked batches: the loss is the mean over the batch's examples (Trainer._replica_step).
    num_examples = tf.constant(float(task.batch_size))

    @tf.function(jit_compile=jit_compile or None)
    def gradients_step(features):
      loss, grads = gradients(features, num_examples)
      return loss + 0.0 * _keep(grads)

    @tf.function
    def forward_backward(num_steps: tf.Tensor) -> tf.Tensor:
      total = tf.constant(0.0)
      for _ in tf.range(num_steps):
        total += gradients_step(next(iterator))
      return total
    self.forward_backward = forward_backward

    # The update alone: a second Trainer whose step gets fixed gradients (of one real batch,
    # kept in variables; the word-embedding one sparse, as the step gets it) instead of
    # computing them, so its loop is the real clip + AdamW + schedule code and nothing else.
    self.update_run = make_trainer(name, task, os.path.join(output_dir, "update"), steps,
                                   jit_compile)
    loss, grads = self.update_run._gradients(next(iter(self.run.dataset_fn(  # pylint: disable=protected-access
        tf.distribute.InputContext(), 0))), num_examples)
    self.fixed_loss = fixed_loss = tf.Variable(loss)
    fixed = [None if g is None else
             (tf.Variable(g.values), tf.Variable(g.indices), g.dense_shape)
             if isinstance(g, tf.IndexedSlices) else tf.Variable(g) for g in grads]

    def fixed_gradients(features, num_examples):  # pylint: disable=unused-argument
      return tf.identity(fixed_loss), [
          None if g is None else tf.IndexedSlices(tf.identity(g[0]), tf.identity(g[1]), g[2])
          if isinstance(g, tuple) else tf.identity(g) for g in fixed]
    self.update_run._gradients = fixed_gradients  # pylint: disable=protected-access
    self.update_iterator = self.update_run._distributed_dataset()  # pylint: disable=protected-access
    self.round()  # traces and warms up each

  def round(self) -> Dict[str, float]:
    """Seconds of `steps` full steps, forward+backward passes and updates, each timed alone."""
    run, update = self.run, self.update_run
    return dict(
        seconds=_seconds(lambda: float(run._train_loop(self.iterator, self.steps)[0])),  # pylint: disable=protected-access
        forward_backward_seconds=_seconds(lambda: float(self.forward_backward(self.steps))),
        update_seconds=_seconds(lambda: float(update._train_loop(self.update_iterator,  # pylint: disable=protected-access
                                                                 self.steps)[0])))


def _tf_matmul(size: int) -> Callable[[], float]:
  """A function returning the seconds of one float32 matmul of `size` squared (warmed up)."""
  matrix = tf.random.normal((size, size))
  multiply = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(matrix, matrix)[0, :1]))
  multiply()
  return lambda: _seconds(lambda: multiply().numpy())


def _spread(values: List[float]) -> Dict[str, float]:
  return dict(median=statistics.median(values), min=min(values), max=max(values))


def _torch_job(name: str, task: Task, args: argparse.Namespace, threads: int,
               masked_positions_only: bool = False) -> Dict[str, Any]:
  return dict(
      task=name, masked_positions_only=masked_positions_only, seed=1, threads=threads, vocab_size=BERT_MINI.vocab_size,
      hidden_size=BERT_MINI.hidden_size, num_layers=BERT_MINI.num_hidden_layers,
      num_heads=BERT_MINI.num_attention_heads, intermediate_size=BERT_MINI.intermediate_size,
      seq_length=task.seq_length, batch_size=task.batch_size, predictions=task.predictions,
      learning_rate=LEARNING_RATE, num_train_steps=NUM_TRAIN_STEPS,
      num_warmup_steps=NUM_WARMUP_STEPS, warmup_steps=args.steps, matmul_size=args.matmul_size)


def time_rounds(name: str, task: Task, args: argparse.Namespace, python: str,
                threads: Dict[str, int]) -> Dict[str, List[Any]]:
  """Interleaved rounds: our steps, torch's steps (for pretraining also with the masked-LM head
  on the masked positions only), a TF matmul and a torch matmul, in turn."""
  rounds: Dict[str, List[Any]] = dict(bert_tf=[], torch=[], tf_matmul=[], torch_matmul=[],
                                      load=[])
  jobs = {"torch": _torch_job(name, task, args, threads["intra_op"])}
  if task.predictions:
    jobs["torch_masked_positions"] = _torch_job(name, task, args, threads["intra_op"], True)
    rounds["torch_masked_positions"] = []
  with tempfile.TemporaryDirectory() as output_dir:
    ours = OurSide(name, task, output_dir, args.steps, args.jit)
    tf_matmul = _tf_matmul(args.matmul_size)
    workers = {side: TorchWorker(python, job) for side, job in jobs.items()}
    try:
      for _ in range(args.repeats):
        rounds["load"].append(os.getloadavg()[0])
        rounds["bert_tf"].append(ours.round())
        for side, worker in workers.items():
          rounds[side].append(worker.ask(str(args.steps)))
        rounds["tf_matmul"].append(tf_matmul())
        rounds["torch_matmul"].append(workers["torch"].ask("matmul")["seconds"])
    finally:
      for worker in workers.values():
        worker.close()
  rounds["torch_info"] = workers["torch"].info
  return rounds


def _side_figures(rounds: List[Dict[str, float]], task: Task, steps: int, flops: float,
                  peak: float) -> Dict[str, Any]:
  """Examples/s (median, min, max over rounds), MFU at the median, and the step's breakdown:
  forward+backward and the update (clip, AdamW, schedule) each timed on its own (medians), and
  their sum over the full step's median as a check."""
  per_second = [task.batch_size * steps / r["seconds"] for r in rounds]
  step = statistics.median(r["seconds"] for r in rounds) / steps
  forward_backward = statistics.median(r["forward_backward_seconds"] for r in rounds) / steps
  update = statistics.median(r["update_seconds"] for r in rounds) / steps
  return dict(examples_per_sec=_spread(per_second),
              mfu=statistics.median(per_second) / task.batch_size * flops / peak,
              step_seconds=step, forward_backward_seconds=forward_backward,
              update_seconds=update, parts_over_step=(forward_backward + update) / step)


def task_figures(name: str, task: Task, rounds: Dict[str, List[Any]], steps: int,
                 peak: float) -> Dict[str, Any]:
  """Both sides' figures for one task and the ratio (torch's time / ours, per round); for
  pretraining also against torch with the masked-LM head on the masked positions only."""
  flops = model_flops(name, task, BERT_MINI)
  figures = dict(seq_length=task.seq_length, batch_size=task.batch_size,
                 predictions=task.predictions or None, model_flops_per_step=flops)
  for side in ("torch", "torch_masked_positions"):
    if side in rounds:
      ratios = [t["seconds"] / o["seconds"] for o, t in zip(rounds["bert_tf"], rounds[side])]
      figures["ratio" if side == "torch" else f"ratio_vs_{side}"] = _spread(ratios)
  figures["bert_tf"] = _side_figures(rounds["bert_tf"], task, steps, flops, peak)
  for side in ("torch", "torch_masked_positions"):
    if side in rounds:
      figures[side] = _side_figures(rounds[side], task, steps, flops, peak)
  return dict(**figures, load_average_1min=rounds["load"], torch_info=rounds["torch_info"])


def _print_table(figures: Dict[str, Dict[str, Any]]) -> None:
  print(f"{'task':<12}{'seq':>4}{'batch':>6}{'ours ex/s':>10}{'torch ex/s':>11}"
        f"{'ratio (min-max)':>20}{'MFU ours':>9}{'torch':>7}"
        f"{'ours fwd+bwd/update ms':>24}{'torch':>12}")
  rows = [(name, f, "torch") for name, f in figures.items()]
  rows += [(f"{name}*", f, "torch_masked_positions") for name, f in figures.items()
           if "torch_masked_positions" in f]
  for name, f, side in rows:
    ratio = f["ratio" if side == "torch" else f"ratio_vs_{side}"]
    ours, torch = f["bert_tf"], f[side]
    print(f"{name:<12}{f['seq_length']:>4}{f['batch_size']:>6}"
          f"{ours['examples_per_sec']['median']:>10.1f}"
          f"{torch['examples_per_sec']['median']:>11.1f}"
          f"{ratio['median']:>8.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})"
          f"{ours['mfu']:>9.1%}{torch['mfu']:>7.1%}"
          f"{ours['forward_backward_seconds'] * 1000:>17.0f}/{ours['update_seconds'] * 1000:<6.0f}"
          f"{torch['forward_backward_seconds'] * 1000:>6.0f}/{torch['update_seconds'] * 1000:<6.0f}")


def torch_python(hf_venv: str) -> str:
  """This venv's python when it has torch and transformers (requirements-dev.txt), else that of
  `hf_venv` (made and filled by common.hf_python when needed)."""
  probe = subprocess.run([sys.executable, "-c", "import torch, transformers"],
                         capture_output=True, check=False)
  return sys.executable if probe.returncode == 0 else common.hf_python(common.HF_TORCH, hf_venv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--repeats", type=int, default=5, help="timed rounds per side and task")
  parser.add_argument("--steps", type=int, default=3,
                      help="training steps per round (and steps_per_loop of our loop)")
  parser.add_argument("--tasks", default=",".join(TASKS),
                      help=f"comma-separated, from {', '.join(TASKS)}")
  parser.add_argument("--threads", type=int, default=2, help="threads for each framework")
  parser.add_argument("--matmul_size", type=int, default=2048,
                      help="side of the float32 matmul that measures the peak")
  parser.add_argument("--jit", action="store_true", help="our step compiled by XLA "
                      "(--use_xla), forward+backward alone too")
  parser.add_argument("--batch_size", type=int, default=0, help="every task's batch (0: its "
                      "own, above)")
  parser.add_argument("--hf_venv", default=common.HF_VENV, help="where torch and transformers "
                      "are installed when this venv lacks them")
  args = parser.parse_args(argv)
  names = [name.strip() for name in args.tasks.split(",") if name.strip()]
  unknown = sorted(set(names) - set(TASKS))
  if unknown or not names:
    parser.error(f"--tasks={args.tasks}: expected some of {', '.join(TASKS)}.")
  if args.repeats < 1 or args.steps < 1 or args.batch_size < 0:
    parser.error("--repeats and --steps must be at least 1, --batch_size at least 0.")
  tasks = {name: dataclasses.replace(TASKS[name], batch_size=args.batch_size or
                                     TASKS[name].batch_size) for name in names}

  threads = set_threads(args.threads)
  python = torch_python(args.hf_venv)
  rounds = {name: time_rounds(name, tasks[name], args, python, threads) for name in names}
  matmul_flops = 2 * args.matmul_size ** 3
  matmul = {side: matmul_flops / min(s for r in rounds.values() for s in r[side])
            for side in ("tf_matmul", "torch_matmul")}
  peak = max(matmul.values())
  figures = {name: task_figures(name, tasks[name], r, args.steps, peak)
             for name, r in rounds.items()}
  _print_table(figures)
  if any("torch_masked_positions" in f for f in figures.values()):
    print("*: against torch computing the masked-LM head on the masked positions only, as ours.")
  print(f"Peak: {peak / 1e9:.0f} GFLOP/s (best {args.matmul_size}^2 float32 matmul: TF "
        f"{matmul['tf_matmul'] / 1e9:.0f}, torch {matmul['torch_matmul'] / 1e9:.0f}); threads: "
        f"TF intra-op {threads['intra_op']}, inter-op {threads['inter_op']}; torch "
        f"{figures[names[0]]['torch_info']['threads']}.")
  entry = dict(
      what="full training step (forward, backward, clip, AdamW) of BERT-mini on the CPU, "
           "bert_tf Trainer vs transformers + torch",
      model=dict(layers=BERT_MINI.num_hidden_layers, hidden=BERT_MINI.hidden_size,
                 heads=BERT_MINI.num_attention_heads,
                 intermediate=BERT_MINI.intermediate_size, vocab=BERT_MINI.vocab_size),
      repeats=args.repeats, steps_per_round=args.steps, threads=threads, jit_compile=args.jit,
      split_method="forward+backward and update each timed alone in their own warmed-up loops "
                   "(ours: a tf.function of Trainer._gradients over the same tf.data input, and "
                   "the Trainer's step on fixed precomputed gradients; torch: timers around "
                   "backward() and around clip+step+zero_grad in its loop); medians over rounds",
      torch_python=python,
      peak_flops_per_sec=peak, matmul_flops_per_sec=matmul,
      flops_formula="6*N_layers*B*S + 12*L*H*S*B*S + 6*N_head*positions",
      machine=common.machine_info(), tasks=figures)
  key = f"train_step_batch_{args.batch_size}" if args.batch_size else "train_step"
  common.merge_results(key, entry)
  print(f"Merged into {common.RESULTS} under '{key}'.")
  return entry


if __name__ == "__main__":
  main()
