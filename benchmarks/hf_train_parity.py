"""The torch side of a training comparison: a Hugging Face BERT classifier's or span head's steps.

Runs with torch and transformers (TensorFlow is not imported):

  python hf_train_parity.py JOB.json RESULT.json

JOB holds `task` ("cola": BertForSequenceClassification on label_ids; "squad":
BertForQuestionAnswering on start_positions and end_positions, its loss the mean of the start
and end cross-entropies as bert_tf's), `model_dir` (a Hugging Face directory, e.g. written by
`python -m bert_tf.checkpoints.convert --to=hf` from bert_tf's initial weights), `batches` (an
.npz of input_ids, input_mask, segment_ids and the labels, taken `batch_size` rows at a time in
order), `steps`, `num_train_steps`, `num_warmup_steps`, `learning_rate`, `weight_decay_rate`,
`optimizer`, `seed` (torch's, which draws the dropout masks) and optionally `eval_batches` (an
.npz of inputs). The [PAD] embedding trains as in google-research (see main). Each step is a
user's loop: forward (model.train(); dropout is what the config
says), the batch-mean loss, backward, clip_grad_norm_(1.0), then the update at google-research's
learning rate (linear warmup from 0, then linear decay measured from step 0), with weight decay
on all but biases and LayerNorm and epsilon 1e-6: `adamw` is torch.optim.AdamW (bias-corrected),
`google` google-research's AdamWeightDecayOptimizer (no bias correction), written here from its
update rule:
  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr (m / (sqrt(v) + eps) + decay p)
with b1, b2 as float32 holds them, as TensorFlow does. RESULT gets the loss of every step, the
trained weights' path (an .npz beside RESULT, under Hugging Face names) and, with eval_batches,
the path of the model's outputs on them in eval mode (logits, or start_logits and end_logits).
"""

import json
import os
import sys

import numpy as np
import torch
import transformers

NO_DECAY = ("bias", "LayerNorm")
EPSILON = 1e-6
MODELS = dict(cola=transformers.BertForSequenceClassification,
              squad=transformers.BertForQuestionAnswering)
LABELS = dict(cola=dict(labels="label_ids"),
              squad=dict(start_positions="start_positions", end_positions="end_positions"))
OUTPUTS = dict(cola=("logits",), squad=("start_logits", "end_logits"))


class GoogleAdamW(torch.optim.Optimizer):
  """google-research's AdamWeightDecayOptimizer (no bias correction), in float32."""

  def __init__(self, params, lr):
    super().__init__(params, dict(lr=lr, weight_decay=0.0))
    self.beta_1, self.beta_2 = torch.tensor(0.9), torch.tensor(0.999)

  @torch.no_grad()
  def step(self, closure=None):  # pylint: disable=unused-argument
    for group in self.param_groups:
      for p in group["params"]:
        if p.grad is None:
          continue
        state = self.state[p]
        if not state:
          state.update(m=torch.zeros_like(p), v=torch.zeros_like(p))
        m, v = state["m"], state["v"]
        m.mul_(self.beta_1).add_(p.grad * (1 - self.beta_1))
        v.mul_(self.beta_2).add_(p.grad * p.grad * (1 - self.beta_2))
        p.sub_(group["lr"] * (m / (v.sqrt() + EPSILON) + group["weight_decay"] * p))


def learning_rate_factor(step, num_train_steps, num_warmup_steps):
  """google-research's schedule as a multiple of the peak rate, at 0-based `step`."""
  if step < num_warmup_steps:
    return step / num_warmup_steps
  return max(0.0, 1.0 - step / num_train_steps)


def inputs(data, rows):
  """The model's input tensors for `rows` of an .npz of bert_tf's feature names."""
  return dict(input_ids=torch.from_numpy(data["input_ids"][rows]).long(),
              attention_mask=torch.from_numpy(data["input_mask"][rows]).long(),
              token_type_ids=torch.from_numpy(data["segment_ids"][rows]).long())


def main(job_path, result_path):
  with open(job_path) as f:
    job = json.load(f)
  task = job.get("task", "cola")
  torch.manual_seed(job.get("seed", 0))
  torch.set_num_threads(1)
  model = MODELS[task].from_pretrained(job["model_dir"])
  # transformers' word embedding has padding_idx=[PAD], so torch gives [PAD]'s row no gradient;
  # google-research's (and bert_tf's) trains it like any other. It gets one only where padded
  # positions reach the loss (SQuAD's span logits cover the padding; a classifier's [CLS] does
  # not attend to it), where it would be the one difference left: bert_tf's semantics here.
  model.bert.embeddings.word_embeddings.padding_idx = None
  model.train()
  named = list(model.named_parameters())
  groups = [
      {"params": [p for n, p in named if not any(x in n for x in NO_DECAY)],
       "weight_decay": job["weight_decay_rate"]},
      {"params": [p for n, p in named if any(x in n for x in NO_DECAY)], "weight_decay": 0.0}]
  if job["optimizer"] == "google":
    optimizer = GoogleAdamW(groups, lr=job["learning_rate"])
  else:
    optimizer = torch.optim.AdamW(groups, lr=job["learning_rate"], betas=(0.9, 0.999),
                                  eps=EPSILON)
  scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate_factor(
      step, job["num_train_steps"], job["num_warmup_steps"]))
  data = np.load(job["batches"])
  batch = job["batch_size"]
  losses = []
  for step in range(job["steps"]):
    rows = slice(step * batch, (step + 1) * batch)
    labels = {name: torch.from_numpy(data[key][rows]).long()
              for name, key in LABELS[task].items()}
    outputs = model(**inputs(data, rows), **labels)
    optimizer.zero_grad()
    outputs.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    losses.append(outputs.loss.item())
  stem = os.path.splitext(result_path)[0]
  result = dict(losses=losses, weights=stem + "_weights.npz")
  np.savez(result["weights"], **{n: p.detach().numpy() for n, p in model.named_parameters()})
  if "eval_batches" in job:
    model.eval()
    data = np.load(job["eval_batches"])
    parts = {name: [] for name in OUTPUTS[task]}
    with torch.no_grad():
      for start in range(0, len(data["input_ids"]), 64):
        outputs = model(**inputs(data, slice(start, start + 64)))
        for name in parts:
          parts[name].append(getattr(outputs, name).numpy())
    result["eval_outputs"] = stem + "_eval_outputs.npz"
    np.savez(result["eval_outputs"], **{k: np.concatenate(v) for k, v in parts.items()})
  with open(result_path, "w") as f:
    json.dump(result, f)


if __name__ == "__main__":
  main(*sys.argv[1:])
