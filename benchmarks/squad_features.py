"""SQuAD feature conversion: bert_tf.squad against tf-models-official's squad_lib, same run.

  python -m benchmarks.squad_features [--limit N] [--repeats 3] [--num_workers W]

Converts SQuAD 1.1 dev (../shared/data) with the bert-base-uncased vocab at max_seq_length 384,
doc_stride 128, max_query_length 64 for prediction, checks that both give the same features, prints
the median seconds of each and merges them into benchmarks/results.json under "squad_features".
Each side uses its own FullTokenizer; reading the JSON is not timed. `compare` is the measurement,
which korquad_features.py runs on Korean data.
"""

import argparse
import gc
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from official.nlp.data import squad_lib  # noqa: E402  (after the log-level variable)

from benchmarks import common  # noqa: E402
from bert_tf.data import squad_examples, squad_features  # noqa: E402
from bert_tf import tokenization  # noqa: E402

DATA = common.DATA
MAX_SEQ_LENGTH, DOC_STRIDE, MAX_QUERY_LENGTH = 384, 128, 64
FIELDS = ("unique_id", "example_index", "doc_span_index", "tokens", "token_to_orig_map",
          "token_is_max_context", "input_ids", "input_mask", "segment_ids")
TRAINING_FIELDS = ("start_position", "end_position")
REFERENCE = "tf-models squad_lib"


def time_once(convert: Callable[[Callable[..., None]], Any]) -> Dict[str, Any]:
  """Seconds for one conversion, and the features it produced."""
  features: List[Any] = []
  started = time.perf_counter()
  convert(lambda feature, is_padding=False: features.append(feature))
  return {"seconds": time.perf_counter() - started, "features": features}


def check_same(ours: Sequence[squad_features.InputFeatures], theirs: Sequence[Any],
               fields: Sequence[str] = FIELDS) -> None:
  """Raises if the two conversions differ in any of `fields` (google-research's features)."""
  if len(ours) != len(theirs):
    raise AssertionError(f"{len(ours)} features from bert_tf, {len(theirs)} from tf-models.")
  for mine, reference in zip(ours, theirs):
    for field in fields:
      if getattr(mine, field) != getattr(reference, field):
        raise AssertionError(f"Feature {mine.unique_id} differs in {field}.")


def compare(data: str, vocab: str, do_lower_case: bool, is_training: bool = False,
            limit: Optional[int] = None, repeats: int = 3, num_workers: int = 0
            ) -> Dict[str, Any]:
  """Median seconds of bert_tf's and tf-models' conversion of `data`; raises if they differ.

  The rounds are interleaved, so that machine load affects both alike. Each conversion starts
  with a fresh tokenizer, built outside the timing, so that no cache carries over between rounds.
  """
  ours_examples = squad_examples.read_squad_examples(data, is_training=is_training)[:limit]
  their_examples = squad_lib.read_squad_examples(data, is_training, False)[:limit]
  if len(ours_examples) != len(their_examples):
    raise AssertionError(f"{len(ours_examples)} examples read by bert_tf, "
                         f"{len(their_examples)} by tf-models.")
  settings = (MAX_SEQ_LENGTH, DOC_STRIDE, MAX_QUERY_LENGTH, is_training)
  their_tokenizer = squad_lib.tokenization.FullTokenizer(vocab, do_lower_case=do_lower_case)

  def ours(workers: int) -> Callable[[Callable[..., None]], Any]:
    tokenizers = [tokenization.FullTokenizer(vocab, do_lower_case=do_lower_case)
                  for _ in range(repeats)]
    return lambda out: squad_features.convert_examples_to_features(
        ours_examples, tokenizers.pop(), *settings, out, num_workers=workers)

  runs = {
      REFERENCE: lambda out: squad_lib.convert_examples_to_features(
          their_examples, their_tokenizer, *settings, out, batch_size=1),
      "bert_tf, no workers": ours(0),
  }
  if num_workers:
    runs[f"bert_tf, {num_workers} worker(s)"] = ours(num_workers)

  seconds: Dict[str, List[float]] = {name: [] for name in runs}
  last: Dict[str, List[Any]] = {}
  for _ in range(repeats):
    for name, convert in runs.items():
      run = time_once(convert)
      seconds[name].append(run["seconds"])
      last[name] = run["features"]
      del run
      gc.collect()  # The last round's features, so that no conversion pays for another's.
  reference = last.pop(REFERENCE)
  for features in last.values():
    check_same(features, reference, FIELDS + (TRAINING_FIELDS if is_training else ()))

  medians = {name: statistics.median(values) for name, values in seconds.items()}
  baseline = medians[REFERENCE]
  print(f"{'conversion':<24}{'examples':>10}{'features':>10}{'median s':>10}{'min s':>8}"
        f"{'speed-up':>10}")
  for name, median in medians.items():
    print(f"{name:<24}{len(ours_examples):>10}{len(reference):>10}{median:>10.2f}"
          f"{min(seconds[name]):>8.2f}{baseline / median:>9.1f}x")
  fastest = min((m, n) for n, m in medians.items() if n != REFERENCE)
  tokenizer = tokenization.FullTokenizer(vocab, do_lower_case=do_lower_case)
  profile = common.profile_shares(lambda: squad_features.convert_examples_to_features(
      ours_examples, tokenizer, *settings, [].append))  # Keeps the features, as the timed runs.
  return {
      "data": os.path.basename(data), "vocab": os.path.basename(vocab),
      "do_lower_case": do_lower_case, "is_training": is_training, "limit": limit,
      "examples": len(ours_examples), "features": len(reference),
      "max_seq_length": MAX_SEQ_LENGTH, "doc_stride": DOC_STRIDE,
      "max_query_length": MAX_QUERY_LENGTH, "repeats": repeats,
      "median_seconds": medians, "speedup": baseline / fastest[0], "fastest": fastest[1],
      "identical_features": True, "cpus": os.cpu_count(), "python": platform.python_version(),
      "date": time.strftime("%Y-%m-%d"), "machine": common.machine_info(),
      "profile_bert_tf_no_workers": profile,
  }


def arguments(description: str) -> argparse.ArgumentParser:
  """The flags squad_features.py and korquad_features.py share."""
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument("--limit", type=int, help="convert only the first N questions")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--num_workers", type=int, default=squad_features.default_num_workers(),
                      help="bert_tf worker processes (default: usable cores - 1)")
  return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = arguments(__doc__.split("\n\n")[0])
  parser.add_argument("--data", default=str(DATA / "squad" / "dev-v1.1.json"))
  parser.add_argument("--vocab", default=str(DATA / "vocabs" / "bert-base-uncased-vocab.txt"))
  args = parser.parse_args(argv)
  for path in (args.data, args.vocab):
    if not os.path.exists(path):
      parser.error(f"{path} does not exist (the shared data folder is needed).")
  entry = {"what": "SQuAD feature conversion for prediction, bert_tf.squad vs tf-models squad_lib",
           **compare(args.data, args.vocab, True, False, args.limit, args.repeats,
                     args.num_workers)}
  common.merge_results("squad_features", entry)
  print(f"speed-up {entry['speedup']:.1f}x ({entry['fastest']}); merged into {common.RESULTS}")
  return entry


if __name__ == "__main__":
  main()
