"""The C tokenizer (bert_tf/_wordpiece.c) under AddressSanitizer and UndefinedBehaviorSanitizer.

A short run of tests/wordpiece_fuzz.py (`make sanitize-tokenizer` runs it for 10 minutes): the
sanitizers abort on a memory error or undefined behaviour, and any token that differs from the
Python tokenizer fails the fuzz.
"""

import shutil
import subprocess
import sys

import pytest

import wordpiece_fuzz
from conftest import PROJECT_ROOT



def sanitizer_runtimes_missing() -> bool:
  """Whether gcc or its ASan/UBSan runtimes are absent (gcc prints the bare name when so)."""
  if shutil.which("gcc") is None:
    return True
  return any(subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True,
                            check=True).stdout.strip() == name
             for name in ("libasan.so", "libubsan.so"))


@pytest.mark.skipif(sanitizer_runtimes_missing(), reason="needs gcc with libasan and libubsan")
def test_c_tokenizer_fuzzed_under_sanitizers_matches_python():
  result = subprocess.run([sys.executable, wordpiece_fuzz.__file__, "--sanitize", "--seconds", "60"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900,
                          check=False)
  assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
  assert "C == Python" in result.stdout


@pytest.mark.skipif(sanitizer_runtimes_missing(), reason="needs gcc with libasan and libubsan")
def test_the_fuzz_environment_reports_a_heap_overflow():
  """Native code run the fuzz's way aborts on an overflow with AddressSanitizer's report, so the
  clean run above means no finding, not a sanitizer that was not there."""
  overflow = ("import ctypes\n"
              "libc = ctypes.CDLL(None)\n"
              "libc.malloc.restype = ctypes.c_void_p\n"
              "ctypes.memset(libc.malloc(8), 0, 16)\n")
  result = subprocess.run([sys.executable, "-c", overflow], capture_output=True, text=True,
                          env=wordpiece_fuzz.sanitizer_environment(), timeout=300, check=False)
  assert result.returncode != 0
  assert "AddressSanitizer: heap-buffer-overflow" in result.stderr, result.stderr[-3000:]
