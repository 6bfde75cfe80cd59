"""Vocab, config, lowercasing and init checkpoint resolved together, checked before any work."""

import pytest

from bert_tf import model_files
from conftest import PROJECT_ROOT

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

