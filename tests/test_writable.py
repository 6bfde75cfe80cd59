"""An output directory that cannot be written fails before any work, naming the flag."""

import pytest

from bert_tf.io import writable


def test_check_writable_creates_nothing_and_names_the_flag(tmp_path, unwritable_dir):
  parent = tmp_path / "writable"
  parent.mkdir()
  writable.check_writable(str(parent / "new" / "deeper"), "output_dir", "VALUE")
  assert list(parent.iterdir()) == []  # probed in `parent`, and the probe is gone
  with pytest.raises(ValueError, match=r"^--output_file=VALUE: nothing can be written in "):
    writable.check_writable(str(unwritable_dir / "sub"), "output_file", "VALUE")
