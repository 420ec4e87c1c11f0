# Two commands on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: test demo setup bench clean browser ui

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel >/dev/null
	# Torch first, pinned: on these machines pip finds the local CPU wheel; a later plain
	# `torch` requirement would otherwise pull a CUDA build.
	$(PIP) install "torch==$(TORCH_VERSION)"
	$(PIP) install -c constraints.txt -e ".[test]"
	touch $(STAMP)

test: $(STAMP) browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# The web UI's browser tests drive Debian's chromium with Playwright (no browser download). Install it
# where apt-get runs as root (CI: about 35-55 s, 330 MB); elsewhere those tests skip and say why.
browser:
	@if [ ! -x /usr/bin/chromium ] && ! command -v chromium >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing chromium for the browser tests"; \
	    apt-get install -y chromium >/dev/null 2>&1 || \
	      (apt-get update >/dev/null 2>&1 && apt-get install -y chromium >/dev/null 2>&1) || \
	      echo "chromium could not be installed; the browser tests will skip"; \
	  else echo "no chromium (and no apt-get as root): the browser tests will skip"; fi; \
	fi

ui: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m ui

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m studio.demo
	HF_HUB_OFFLINE=1 $(PY) -m toyworld.demo outputs/demo/toyworld

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) bench/attention_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache
