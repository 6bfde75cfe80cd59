"""google-research's input packing for one sentence or a pair: [CLS] a [SEP] (b [SEP]).

Shared by the classifier features and extract_features: segment ids 0 for a (with [CLS] and its
[SEP]) and 1 for b (with its [SEP]), a pair truncated by popping from the end of the longer side
(of b on a tie), zero padding to the sequence length.
"""

import dataclasses
from typing import List, Optional

from bert_tf import tokenization


@dataclasses.dataclass
class PackedInput:
  """The model inputs of one example, padded to the sequence length (`tokens` unpadded)."""
  tokens: List[str]
  input_ids: List[int]
  input_mask: List[int]
  segment_ids: List[int]


def truncate_seq_pair(tokens_a: List[str], tokens_b: List[str], max_length: int) -> None:
  """Pops tokens from the end of the longer list (of `tokens_b` on a tie) until both fit."""
  while len(tokens_a) + len(tokens_b) > max_length:
    (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()


def pack(tokenizer: tokenization.FullTokenizer, text_a: str, text_b: Optional[str],
         seq_length: int) -> PackedInput:
  """Tokenizes, truncates, adds [CLS]/[SEP], converts to ids and pads to `seq_length`."""
  tokens_a = tokenizer.tokenize(text_a)
  tokens_b = tokenizer.tokenize(text_b) if text_b else []
  if tokens_b:
    truncate_seq_pair(tokens_a, tokens_b, seq_length - 3)
  else:
    tokens_a = tokens_a[:seq_length - 2]
  tokens = ["[CLS]", *tokens_a, "[SEP]"]
  segment_ids = [0] * len(tokens)
  if tokens_b:
    tokens += [*tokens_b, "[SEP]"]
    segment_ids += [1] * (len(tokens_b) + 1)
  input_ids = tokenizer.convert_tokens_to_ids(tokens)
  padding = [0] * (seq_length - len(input_ids))
  return PackedInput(tokens, input_ids + padding, [1] * len(input_ids) + padding,
                     segment_ids + padding)
