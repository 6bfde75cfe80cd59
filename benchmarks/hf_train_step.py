"""The torch side of train_step.py: times full training steps of a Hugging Face BERT on the CPU.

Runs in a separate virtual environment (torch and transformers, no TensorFlow) as a worker that
train_step.py drives over stdin/stdout, so the two frameworks take turns on the same cores:
the first input line is the job (JSON: task, model sizes, batch, threads, steps), answered by
one JSON line once the model is built and warmed up; then each line "N" runs N steps and is
answered by {"seconds": ..., "forward_backward_seconds": ..., "update_seconds": ...}, and
"matmul" times one float32 matmul; an empty line ends the worker. A step is what a user's loop runs:
forward, loss, backward, clip_grad_norm_(1.0), AdamW (eps 1e-6, weight decay 0.01 except biases
and LayerNorm) and a linear warmup/decay schedule step, on random integer batches. With
"masked_positions_only" (pretraining), the loss is BertForPreTraining's but its masked-LM head
(transform and vocabulary projection) runs on the masked positions only, gathered from the
encoder's output first, as bert_tf's (tf-models' MaskedLM) does: the same work as ours.

Usage: python hf_train_step.py < commands
"""

import json
import sys
import time

import torch
import transformers

import hf_classifier  # beside this file: the same optimizer recipe

MODELS = dict(classifier=transformers.BertForSequenceClassification,
              pretraining=transformers.BertForPreTraining,
              squad=transformers.BertForQuestionAnswering)
NUM_BATCHES = 8  # distinct random batches, cycled, as the TF side's pipeline does


def _batches(job, generator):
  """Random batches with the task's inputs and labels (all positions real, as on the TF side)."""
  batch, seq, vocab = job["batch_size"], job["seq_length"], job["vocab_size"]
  batches = []
  for _ in range(NUM_BATCHES):
    inputs = dict(input_ids=torch.randint(0, vocab, (batch, seq), generator=generator),
                  attention_mask=torch.ones(batch, seq, dtype=torch.long),
                  token_type_ids=torch.zeros(batch, seq, dtype=torch.long))
    if job["task"] == "classifier":
      inputs["labels"] = torch.randint(0, 2, (batch,), generator=generator)
    elif job["task"] == "pretraining":
      labels = torch.full((batch, seq), -100)
      positions = torch.stack([torch.randperm(seq, generator=generator)[:job["predictions"]]
                               for _ in range(batch)])
      labels.scatter_(1, positions, torch.randint(0, vocab, positions.shape, generator=generator))
      inputs.update(labels=labels,
                    next_sentence_label=torch.randint(0, 2, (batch,), generator=generator))
    else:
      inputs.update(start_positions=torch.randint(0, seq, (batch,), generator=generator),
                    end_positions=torch.randint(0, seq, (batch,), generator=generator))
    batches.append(inputs)
  return batches


def masked_positions_loss(model, inputs):
  """BertForPreTraining's loss with its masked-LM head applied to the masked positions only."""
  sequence, pooled = model.bert(input_ids=inputs["input_ids"],
                                attention_mask=inputs["attention_mask"],
                                token_type_ids=inputs["token_type_ids"], return_dict=False)[:2]
  labels = inputs["labels"]
  masked = labels != -100
  logits = model.cls.predictions(sequence[masked])  # [masked positions, vocab]
  loss = torch.nn.functional.cross_entropy(logits, labels[masked])
  next_sentence = model.cls.seq_relationship(pooled)
  return loss + torch.nn.functional.cross_entropy(next_sentence, inputs["next_sentence_label"])


def main():
  job = json.loads(sys.stdin.readline())
  torch.set_num_threads(job["threads"])
  torch.manual_seed(job["seed"])
  config = transformers.BertConfig(
      vocab_size=job["vocab_size"], hidden_size=job["hidden_size"],
      num_hidden_layers=job["num_layers"], num_attention_heads=job["num_heads"],
      intermediate_size=job["intermediate_size"], max_position_embeddings=512, num_labels=2)
  model = MODELS[job["task"]](config)
  model.train()
  optimizer, scheduler = hf_classifier.adamw(model, job["num_train_steps"],
                                             job["num_warmup_steps"], job["learning_rate"])
  batches = _batches(job, torch.Generator().manual_seed(job["seed"]))
  masked_only = job.get("masked_positions_only", False)
  step = 0

  def run(num_steps):
    """Runs `num_steps` steps; returns the seconds of forward+backward and of the update."""
    nonlocal step
    forward_backward = update = 0.0
    for _ in range(num_steps):
      started = time.perf_counter()
      batch = batches[step % NUM_BATCHES]
      loss = masked_positions_loss(model, batch) if masked_only else model(**batch).loss
      loss.backward()
      middle = time.perf_counter()
      torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
      optimizer.step()
      scheduler.step()
      optimizer.zero_grad()
      forward_backward += middle - started
      update += time.perf_counter() - middle
      step += 1
    return dict(forward_backward_seconds=forward_backward, update_seconds=update)

  run(job["warmup_steps"])
  matmul = torch.randn(job["matmul_size"], job["matmul_size"])
  torch.mm(matmul, matmul)  # warms up
  print(json.dumps(dict(torch=torch.__version__, transformers=transformers.__version__,
                        threads=torch.get_num_threads(),
                        attention=model.config._attn_implementation,  # pylint: disable=protected-access
                        parameters=sum(p.numel() for p in model.parameters()))), flush=True)
  for line in sys.stdin:
    command = line.split()
    if not command:
      break
    if command[0] == "matmul":
      started = time.perf_counter()
      torch.mm(matmul, matmul)
      print(json.dumps(dict(seconds=time.perf_counter() - started)), flush=True)
      continue
    started = time.perf_counter()
    parts = run(int(command[0]))
    print(json.dumps(dict(seconds=time.perf_counter() - started, **parts)), flush=True)


if __name__ == "__main__":
  main()
