# Everything a fresh machine needs: `make demo` runs the main job on the bundled sample,
# `make test` runs the lint and the test suite. Both create .venv idempotently.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.zhtw-installed
OUT ?= build/demo

.PHONY: venv demo test lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch first: a bare `torch` requirement would pull gigabytes of CUDA packages
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[gpu,ray,trafilatura,dev]"
	touch $(STAMP)

# all four stages on the bundled sample: corpus -> tokenizer -> prepare + train -> export (HF + GGUF)
demo: venv
	$(PY) -m zhtw.pretrain.demo --output $(OUT) --overwrite

lint: venv
	$(VENV)/bin/ruff check .

test: venv lint
	$(PY) -m pytest -q

clean:
	rm -rf build
