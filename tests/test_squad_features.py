"""Tests for bert_tf.data.squad_features: examples to doc-stride window features.

The reference is tf-models-official's squad_lib, a port of google-research's run_squad.py, run on
the same inputs: the features must match it field for field, with worker processes too.
"""

from typing import Any, Dict, List, Sequence

from official.nlp.data import squad_lib
import pytest

from bert_tf.data import squad_examples, squad_features
from bert_tf import tokenization

from conftest import shared_path
from tests.squad_data import files, our_features, tokenizer


def reference_features(examples: Sequence[Any], tokenizer: Any, max_seq_length: int,
                       doc_stride: int, max_query_length: int, is_training: bool) -> List[Any]:
  """tf-models' features (it calls output_fn(feature, is_padding) when not training)."""
  features = []
  if is_training:
    squad_lib.convert_examples_to_features(examples, tokenizer, max_seq_length, doc_stride,
                                           max_query_length, True, features.append)
  else:
    squad_lib.convert_examples_to_features(
        examples, tokenizer, max_seq_length, doc_stride, max_query_length, False,
        lambda feature, is_padding: features.append(feature), batch_size=1)
  return features


COMMON_FIELDS = ("unique_id", "example_index", "doc_span_index", "tokens", "token_to_orig_map",
                 "token_is_max_context", "input_ids", "input_mask", "segment_ids")


def assert_same_features(ours: Sequence[squad_features.InputFeatures], theirs: Sequence[Any],
                         examples: Sequence[squad_examples.SquadExample],
                         is_training: bool) -> None:
  assert len(ours) == len(theirs)
  for mine, reference in zip(ours, theirs):
    for field in COMMON_FIELDS + (("start_position", "end_position") if is_training else ()):
      assert getattr(mine, field) == getattr(reference, field), (field, mine.unique_id)
    # google-research: is_impossible is the example's; tf-models sets it for every window that
    # lacks the answer. Evaluation features carry no labels in google-research (None).
    assert mine.is_impossible == examples[mine.example_index].is_impossible
    if not is_training:
      assert mine.start_position is None and mine.end_position is None


@pytest.mark.parametrize("is_training", [True, False])
@pytest.mark.parametrize("max_seq_length, doc_stride, max_query_length", [
    (32, 5, 8), (40, 13, 12), (64, 128, 16), (384, 128, 64)])
def test_features_match_tf_models(files: Dict[str, str], is_training: bool, max_seq_length: int,
                                  doc_stride: int, max_query_length: int) -> None:
  examples = squad_examples.read_squad_examples(files["data"], is_training,
                                                version_2_with_negative=True)
  # Each side with its own tokenizer (ours is compared token for token in test_tokenization).
  reference_tokenizer = squad_lib.tokenization.FullTokenizer(files["vocab"], do_lower_case=True)
  theirs = reference_features(examples, reference_tokenizer, max_seq_length, doc_stride,
                              max_query_length, is_training)
  ours = our_features(examples, tokenization.FullTokenizer(files["vocab"], do_lower_case=True),
                      max_seq_length, doc_stride, max_query_length, is_training)
  assert_same_features(ours, theirs, examples, is_training)
  if max_seq_length == 32:
    assert max(f.doc_span_index for f in ours) >= 10  # Many windows: edges and max context.
    if is_training:  # Windows without the answer point at [CLS]; others at the answer.
      assert {(f.start_position, f.end_position) for f in ours if f.start_position} and any(
          f.start_position == 0 and not examples[f.example_index].is_impossible for f in ours)


@pytest.mark.parametrize("num_workers", [1, 2])
def test_workers_give_the_serial_features(files: Dict[str, str], tokenizer: Any,
                                          num_workers: int) -> None:
  examples = squad_examples.read_squad_examples(files["data"], True,
                                                version_2_with_negative=True) * 20
  serial = our_features(examples, tokenizer, 32, 7, 8, True)
  assert our_features(examples, tokenizer, 32, 7, 8, True, num_workers=num_workers) == serial
  assert [f.unique_id for f in serial] == list(range(squad_features.FIRST_UNIQUE_ID,
                                                     squad_features.FIRST_UNIQUE_ID + len(serial)))


def test_worker_failure_is_raised(files: Dict[str, str], tokenizer: Any) -> None:
  examples = squad_examples.read_squad_examples(files["data"], False) * 20
  examples[-1] = squad_examples.SquadExample("broken", None, examples[-1].doc_tokens)
  with pytest.raises(RuntimeError, match="worker failed"):
    our_features(examples, tokenizer, 32, 7, 8, False, num_workers=2)


def test_bad_flags_fail_early(tokenizer: Any) -> None:
  with pytest.raises(ValueError, match="must exceed max_query_length"):
    our_features([], tokenizer, 64, 16, 61, False)
  with pytest.raises(ValueError, match="doc_stride"):
    our_features([], tokenizer, 64, 0, 8, False)


def test_features_match_tf_models_on_squad_dev() -> None:
  dev = str(shared_path("squad", "dev-v1.1.json"))
  vocab = str(shared_path("vocabs", "bert-base-uncased-vocab.txt"))
  examples = squad_examples.read_squad_examples(dev, is_training=False)[:400]
  theirs = reference_features(
      squad_lib.read_squad_examples(dev, False, False)[:400],
      squad_lib.tokenization.FullTokenizer(vocab, do_lower_case=True), 384, 128, 64, False)
  ours = our_features(examples, tokenization.FullTokenizer(vocab, do_lower_case=True), 384, 128,
                      64, False, num_workers=1)
  assert_same_features(ours, theirs, examples, False)
