# Two commands on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: test demo setup bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel >/dev/null
	# Torch first, pinned: on these machines pip finds the local CPU wheel; a later plain
	# `torch` requirement would otherwise pull a CUDA build.
	$(PIP) install "torch==$(TORCH_VERSION)"
	$(PIP) install -c constraints.txt -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m studio.demo
	HF_HUB_OFFLINE=1 $(PY) -m toyworld.demo outputs/demo/toyworld

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) bench/attention_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache
