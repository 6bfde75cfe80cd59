"""The torch side of a step-by-step training comparison: a Hugging Face BERT classifier's steps.

Runs in the Hugging Face venv (torch and transformers, no TensorFlow):

  python hf_train_parity.py JOB.json RESULT.json

JOB holds `model_dir` (a Hugging Face BertForSequenceClassification directory, e.g. written by
`python -m bert_tf.convert_checkpoint --to=hf` from bert_tf's initial weights), `batches` (an
.npz of input_ids, input_mask, segment_ids and label_ids, taken `batch_size` at a time in
order), `steps`, `num_train_steps`, `num_warmup_steps`, `learning_rate`, `weight_decay_rate`
and `optimizer`. Each step is a user's loop: forward (model.train(), whose dropout the config
turns off), the batch-mean cross-entropy, backward, clip_grad_norm_(1.0), then the update at
google-research's learning rate (linear warmup from 0, then linear decay measured from step 0),
with weight decay on all but biases and LayerNorm and epsilon 1e-6: `adamw` is
torch.optim.AdamW (bias-corrected), `google` google-research's AdamWeightDecayOptimizer (no
bias correction), written here from its update rule:
  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr (m / (sqrt(v) + eps) + decay p)
with b1, b2 as float32 holds them, as TensorFlow does. RESULT gets the loss of every step and
the trained weights' path (an .npz beside RESULT, under Hugging Face names).
"""

import json
import os
import sys

import numpy as np
import torch
import transformers

NO_DECAY = ("bias", "LayerNorm")
EPSILON = 1e-6


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


def main(job_path, result_path):
  with open(job_path) as f:
    job = json.load(f)
  torch.manual_seed(0)
  torch.set_num_threads(1)
  model = transformers.BertForSequenceClassification.from_pretrained(job["model_dir"])
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
    outputs = model(input_ids=torch.from_numpy(data["input_ids"][rows]).long(),
                    attention_mask=torch.from_numpy(data["input_mask"][rows]).long(),
                    token_type_ids=torch.from_numpy(data["segment_ids"][rows]).long(),
                    labels=torch.from_numpy(data["label_ids"][rows]).long())
    optimizer.zero_grad()
    outputs.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    losses.append(outputs.loss.item())
  weights_path = os.path.splitext(result_path)[0] + "_weights.npz"
  np.savez(weights_path, **{n: p.detach().numpy() for n, p in model.named_parameters()})
  with open(result_path, "w") as f:
    json.dump(dict(losses=losses, weights=weights_path), f)


if __name__ == "__main__":
  main(*sys.argv[1:])
