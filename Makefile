# Quick start: `make demo` (the whole pipeline on embedded demo audio), `make test` (the test suite).
# Both create .venv and install ens from this checkout first. TORCH picks the PyTorch build:
# the default is the CPU wheel this project's machines carry; on a GPU box use e.g. TORCH=torch.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test install clean-demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet "$(TORCH)"
	$(VENV)/bin/pip install --quiet -e ".[audio,ray,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ens demo --out demo --force

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

clean-demo:
	rm -rf demo
