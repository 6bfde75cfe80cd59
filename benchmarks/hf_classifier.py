"""The Hugging Face side of cola_minilm.py: fine-tunes a BERT directory with transformers + torch.

Runs in a separate virtual environment (torch and transformers, no TensorFlow), so it takes its
examples from a JSON file that cola_minilm.py wrote with bert_tf's CoLA reader, and writes the dev
logits of every epoch back; the metrics are computed by bert_tf.classifier_metrics, so both sides
are scored by the same code. The recipe mirrors bert_tf's: AdamW (eps 1e-6, weight decay 0.01 except
biases and LayerNorm), linear warmup then linear decay to 0, gradients clipped to norm 1, padding
to max_seq_length, dropout from the config, epochs of whole batches.

Usage: python hf_classifier.py INPUT.json OUTPUT.json
"""

import json
import random
import sys
import time

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def _encode(tokenizer, examples, max_seq_length):
  texts = [text for text, _ in examples]
  encoded = tokenizer(texts, max_length=max_seq_length, truncation=True, padding="max_length",
                      return_tensors="pt")
  labels = torch.tensor([label for _, label in examples])
  return encoded["input_ids"], encoded["attention_mask"], encoded["token_type_ids"], labels


def adamw(model, num_train_steps, num_warmup_steps, learning_rate):
  """bert_tf's recipe in torch: AdamW (eps 1e-6, decay 0.01 except bias/LayerNorm), warmup+decay."""
  no_decay = ("bias", "LayerNorm")
  groups = [
      {"params": [p for n, p in model.named_parameters() if not any(x in n for x in no_decay)],
       "weight_decay": 0.01},
      {"params": [p for n, p in model.named_parameters() if any(x in n for x in no_decay)],
       "weight_decay": 0.0}]
  optimizer = torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.999), eps=1e-6)

  def factor(step):
    if step < num_warmup_steps:
      return step / max(num_warmup_steps, 1)
    return max(0.0, (num_train_steps - step) / max(num_train_steps - num_warmup_steps, 1))

  return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def main(input_path, output_path):
  with open(input_path, encoding="utf-8") as f:
    job = json.load(f)
  started = time.time()
  seed = job["seed"]
  random.seed(seed)
  torch.manual_seed(seed)
  tokenizer = AutoTokenizer.from_pretrained(job["model_dir"])
  model = AutoModelForSequenceClassification.from_pretrained(job["model_dir"],
                                                             num_labels=job["num_labels"])
  train = _encode(tokenizer, job["train"], job["max_seq_length"])
  dev = _encode(tokenizer, job["dev"], job["max_seq_length"])
  batch_size = job["train_batch_size"]
  steps_per_epoch = len(job["train"]) // batch_size
  num_epochs = int(job["num_train_epochs"])
  num_train_steps = steps_per_epoch * num_epochs
  optimizer, scheduler = adamw(model, num_train_steps,
                               int(num_train_steps * job["warmup_proportion"]),
                               job["learning_rate"])
  generator = torch.Generator().manual_seed(seed)
  epochs = []
  for epoch in range(1, num_epochs + 1):
    epoch_started = time.time()
    model.train()
    order = torch.randperm(len(job["train"]), generator=generator)
    total_loss = 0.0
    for step in range(steps_per_epoch):
      index = order[step * batch_size:(step + 1) * batch_size]
      output = model(input_ids=train[0][index], attention_mask=train[1][index],
                     token_type_ids=train[2][index], labels=train[3][index])
      output.loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
      optimizer.step()
      scheduler.step()
      optimizer.zero_grad()
      total_loss += output.loss.item()
    train_time = time.time() - epoch_started
    eval_started = time.time()
    model.eval()
    logits = []
    with torch.no_grad():
      for start in range(0, len(job["dev"]), job["eval_batch_size"]):
        part = slice(start, start + job["eval_batch_size"])
        logits.append(model(input_ids=dev[0][part], attention_mask=dev[1][part],
                            token_type_ids=dev[2][part]).logits)
    epochs.append(dict(epoch=epoch, train_loss=total_loss / steps_per_epoch,
                       training_time=train_time, validation_time=time.time() - eval_started,
                       dev_logits=torch.cat(logits).tolist()))
    print(f"epoch {epoch}: train loss {epochs[-1]['train_loss']:.4f} "
          f"({train_time:.0f} s)", flush=True)
  result = dict(epochs=epochs, wall_time=time.time() - started, steps=num_train_steps,
                torch=torch.__version__, threads=torch.get_num_threads())
  with open(output_path, "w", encoding="utf-8") as f:
    json.dump(result, f)


if __name__ == "__main__":
  main(*sys.argv[1:])
