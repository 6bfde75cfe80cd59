"""A PyTorch user's fine-tuning run: transformers + torch, each batch padded to its own longest example.

The reference for packed fine-tuning (issue 22), written as the transformers documentation teaches:
the task's TSV read with csv, a BertTokenizer on its vocab.txt that tokenizes every example once
without padding, a shuffled DataLoader whose DataCollatorWithPadding pads each batch to its longest
example, BertForSequenceClassification built from a BertConfig (configs/bert_mini.json by default:
random weights, as a from-scratch run of ours), and bert_tf's optimizer recipe
(hf_classifier.adamw: AdamW, warmup then linear decay, gradients clipped to norm 1). torch uses
--threads threads (default: every core this process may use, as TensorFlow does).

Time it as a whole process, start to exit (interpreter, imports, reading, tokenizing, training);
it also prints its own figures as one JSON line: the training loop's examples/s, the seconds
since the process started and the share of the padded batches' positions that hold a token.
Runs in any venv with torch and transformers (the project's dev venv has both); imports no
TensorFlow.

Usage (from the project root):
  .venv/bin/python benchmarks/hf_dynamic_padding.py --task nsmc \
      --data_dir ../shared/data/nsmc_like --vocab_file ../shared/data/vocabs/kcbert-base-vocab.txt \
      --cased --num_train_examples 4000
  .venv/bin/python benchmarks/hf_dynamic_padding.py --task cola --data_dir ../shared/data/cola \
      --vocab_file ../shared/data/vocabs/bert-base-uncased-vocab.txt --num_train_examples 4000
"""

import argparse
import csv
import json
import os
import pathlib
import sys
import time
from typing import List, Optional, Sequence, Tuple

import torch
import transformers

import hf_classifier  # beside this file: bert_tf's optimizer recipe in torch

CONFIG = pathlib.Path(__file__).resolve().parent.parent / "configs" / "bert_mini.json"
# task -> (training file names, first found wins; header row?; text column; label column),
# the files and columns bert_tf's processors read (bert_tf/data/classifier.py).
TASKS = dict(nsmc=(("ratings_train.txt",), True, 1, 2),
             cola=(("train.tsv", "in_domain_train.tsv"), False, 3, 1))


def seconds_since_process_start() -> float:
  """Wall seconds since this process was started (Linux /proc), interpreter start included."""
  with open("/proc/self/stat", encoding="ascii") as f:
    start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
  with open("/proc/uptime", encoding="ascii") as f:
    uptime = float(f.read().split()[0])
  return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def read_examples(task: str, data_dir: str, limit: Optional[int]) -> List[Tuple[str, int]]:
  """The first `limit` (text, label) pairs of the task's training file."""
  names, header, text, label = TASKS[task]
  path = next((os.path.join(data_dir, n) for n in names
               if os.path.exists(os.path.join(data_dir, n))), None)
  if path is None:
    raise SystemExit(f"error: --data_dir={data_dir} holds none of {', '.join(names)}.")
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
  rows = rows[1:] if header else rows
  return [(row[text], int(row[label])) for row in rows[:limit]]


def main(argv: Optional[Sequence[str]] = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--task", choices=sorted(TASKS), required=True)
  parser.add_argument("--data_dir", required=True, help="the task's directory, as run_classifier's")
  parser.add_argument("--vocab_file", required=True)
  parser.add_argument("--cased", action="store_true", help="keep case (KcBERT's vocab)")
  parser.add_argument("--config", default=str(CONFIG), help="a bert_config.json (model sizes)")
  parser.add_argument("--num_train_examples", type=int, default=None,
                      help="the first N of the training file (default: all)")
  parser.add_argument("--max_seq_length", type=int, default=128)
  parser.add_argument("--train_batch_size", type=int, default=32)
  parser.add_argument("--num_train_epochs", type=int, default=1)
  parser.add_argument("--learning_rate", type=float, default=5e-5)
  parser.add_argument("--warmup_proportion", type=float, default=0.1)
  parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
  parser.add_argument("--seed", type=int, default=12345)
  args = parser.parse_args(argv)
  torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)

  examples = read_examples(args.task, args.data_dir, args.num_train_examples)
  tokenizer = transformers.BertTokenizer(args.vocab_file, do_lower_case=not args.cased)
  encoded = tokenizer([text for text, _ in examples], truncation=True,
                      max_length=args.max_seq_length)
  dataset = [dict(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=label)
             for ids, types, mask, (_, label) in zip(encoded["input_ids"],
                                                    encoded["token_type_ids"],
                                                    encoded["attention_mask"], examples)]
  loader = torch.utils.data.DataLoader(
      dataset, batch_size=args.train_batch_size, shuffle=True,
      collate_fn=transformers.DataCollatorWithPadding(tokenizer),
      generator=torch.Generator().manual_seed(args.seed))
  config = transformers.BertConfig.from_json_file(args.config)
  config.vocab_size, config.num_labels = len(tokenizer), 2
  model = transformers.BertForSequenceClassification(config)
  num_steps = len(loader) * args.num_train_epochs
  optimizer, scheduler = hf_classifier.adamw(model, num_steps,
                                             int(num_steps * args.warmup_proportion),
                                             args.learning_rate)

  model.train()
  started = time.perf_counter()
  positions = tokens = 0
  for _ in range(args.num_train_epochs):
    for batch in loader:
      loss = model(**batch).loss
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
      optimizer.step()
      scheduler.step()
      optimizer.zero_grad()
      positions += batch["attention_mask"].numel()
      tokens += int(batch["attention_mask"].sum())
  seconds = time.perf_counter() - started
  trained = len(dataset) * args.num_train_epochs
  result = dict(task=args.task, examples=trained, steps=num_steps,
                train_seconds=round(seconds, 3), examples_per_sec=round(trained / seconds, 1),
                useful_token_share=round(tokens / positions, 4), final_loss=round(loss.item(), 4),
                seconds_since_process_start=round(seconds_since_process_start(), 2),
                threads=torch.get_num_threads(), torch=torch.__version__,
                transformers=transformers.__version__)
  print(json.dumps(result), flush=True)
  return result


if __name__ == "__main__":
  main(sys.argv[1:])
