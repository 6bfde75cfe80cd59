"""bert_tf/__init__.py: TensorFlow's C++ start-up lines are hidden unless the user asks for them;
tf.keras is tf_keras unless the user says otherwise."""

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


_KERAS_PROGRAM = ("import sys, bert_tf, tensorflow as tf, tf_keras; "
                  "print(tf.keras is tf_keras or tf.keras.Model is tf_keras.Model, "
                  "any(m == 'keras' or m.startswith('keras.') for m in sys.modules))")


def _keras_in_a_fresh_process(**env: str) -> str:
  base = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  return subprocess.run([sys.executable, "-c", _KERAS_PROGRAM], cwd=PROJECT_ROOT,
                        env={**base, **env}, capture_output=True, text=True, timeout=120,
                        check=True).stdout.strip()


def test_tf_keras_is_tf_keras_and_keras_3_is_not_imported_unless_the_user_says():
  """TensorFlow imports Keras 3 as it starts (about a second) for a tf.keras nothing here uses;
  importing bert_tf first makes tf.keras tf_keras instead, unless the user set the variable."""
  assert _keras_in_a_fresh_process() == "True False"
  assert _keras_in_a_fresh_process(TF_USE_LEGACY_KERAS="0") == "False True"
