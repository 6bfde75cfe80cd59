"""Vocab, config, lowercasing and init checkpoint resolved together, checked before any work."""

import shutil

import pytest

from bert_tf.checkpoints import model_files
from conftest import PROJECT_ROOT, shared_path

SAMPLE = PROJECT_ROOT / "sample_data"


def test_resolves_and_infers_lowercasing_from_the_vocab():
  files = model_files.resolve(None, str(SAMPLE / "vocab.txt"), str(SAMPLE / "bert_config.json"),
                              None)
  assert files.do_lower_case is False  # the sample vocab has capitals and Hangul
  settings = files.settings()
  assert settings["vocab_file"].startswith("sha256:") and settings["do_lower_case"] is False
  assert settings["bert_config_file[vocab_size]"] == files.config.vocab_size


def test_a_vocab_is_optional_only_where_asked():
  files = model_files.resolve(None, None, str(SAMPLE / "bert_config.json"), None,
                              vocab_required=False)
  assert files.vocab_file is None and "vocab_file" not in files.settings()
  with pytest.raises(ValueError, match="--vocab_file is required"):
    model_files.resolve(None, None, str(SAMPLE / "bert_config.json"), None)



def _checkpoint_without_vocab(tmp_path):
  """The tiny Google TF1 checkpoint and its config, without the vocab.txt beside them."""
  directory = shared_path("tf1_checkpoint_tiny")
  copy = tmp_path / "ckpt"
  copy.mkdir()
  for name in ("bert_config.json", "bert_model.ckpt.index",
               "bert_model.ckpt.data-00000-of-00001"):
    shutil.copy(directory / name, copy / name)
  return directory, copy


def test_a_vocab_that_is_not_the_checkpoints_is_refused_before_any_work(tmp_path):
  directory, copy = _checkpoint_without_vocab(tmp_path)
  prefix = str(directory / "bert_model.ckpt")
  own = model_files.resolve(prefix, None, None, None)  # its own vocab, found beside it
  assert own.vocab_file == str(directory / "vocab.txt")
  other = tmp_path / "other_vocab.txt"
  other.write_text("".join(f"{t}\n" for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]))
  with pytest.raises(ValueError, match=r"is not the vocab of --init_checkpoint=.*has its own "
                                       r".*vocab.txt.*Pass --vocab_file="):
    model_files.resolve(prefix, str(other), None, None)
  # No vocab beside the checkpoint: one smaller than its embedding table is refused ...
  with pytest.raises(ValueError, match=r"has 6 tokens but --init_checkpoint=.* was trained with "
                                       r"vocab_size=15.*--allow_smaller_vocab"):
    model_files.resolve(str(copy / "bert_model.ckpt"), str(other), None, None)
  # ... unless it is meant.
  files = model_files.resolve(str(copy / "bert_model.ckpt"), str(other), None, None,
                              allow_smaller_vocab=True)
  assert files.vocab_file == str(other)
