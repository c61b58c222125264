# Quick start: `make demo` (the whole pipeline on embedded demo audio), `make test` (the test suite;
# `make test-fast` leaves out the tests marked slow).
# Both create .venv and install ens from this checkout first. TORCH picks the PyTorch build:
# the default is the CPU wheel this project's machines carry; on a GPU box use e.g. TORCH=torch.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install clean-demo

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet "$(TORCH)"
	-$(VENV)/bin/pip uninstall --quiet -y ens 2>/dev/null  # this project's old distribution name, in an old .venv
	$(VENV)/bin/pip install --quiet -e ".[audio,ray,dev]"
	# features-dvec-lgbm reads only the speaker encoder's weights file that ships in Resemblyzer; its own
	# dependencies (librosa, webrtcvad, typing) are never imported, so they are not installed
	$(VENV)/bin/pip install --quiet --no-deps "resemblyzer==0.1.4"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ens demo --out demo --force

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

# The inner loop: everything but the tests marked slow (real training, export, Ray, faults); CI runs all.
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow"

clean-demo:
	rm -rf demo
