"""bert_tf/__init__.py: TensorFlow's C++ start-up lines are hidden unless the user asks for them."""

import os
import re
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT

# A TensorFlow C++ log line: "2026-12-01 12:00:42.142097: E external/.../cuda_platform.cc:51] ..."
_TF_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+: [IWEF] \S+:\d+\]", re.MULTILINE)
# Imports bert_tf, then TensorFlow, and lists the devices (where CPU-only machines say cuInit).
_PROGRAM = "import bert_tf; import tensorflow as tf; tf.config.list_physical_devices()"


def _stderr(**env: str) -> str:
  base = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  result = subprocess.run([sys.executable, "-c", _PROGRAM], cwd=PROJECT_ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=120, check=True)
  return result.stderr


def test_tensorflow_start_up_lines_hidden_unless_the_user_sets_the_level():
  loud = _stderr(TF_CPP_MIN_LOG_LEVEL="0")
  if not _TF_LOG_LINE.search(loud):
    pytest.skip("TensorFlow prints no start-up lines on this machine")
  quiet = _stderr()
  assert not _TF_LOG_LINE.search(quiet), quiet
  assert "cuInit" not in quiet
