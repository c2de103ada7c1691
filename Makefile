# reelbot: `make demo` renders examples/demo.md offline (with Piper's natural voice); `make test`
# runs every check. Both install what is missing first: Debian packages (when root) and a
# virtualenv in .venv with the project, its dev tools and the `piper` extra (GPL-3.0 Piper,
# run as a separate process; `pip install reelbot` alone speaks with espeak-ng). redis-server
# is for the tests of `[queue] backend = "arq"` (they start their own, on loopback).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
APT_PACKAGES := ffmpeg espeak-ng fonts-noto-cjk fonts-dejavu-core redis-server
STAMP  := $(VENV)/.installed
# MoviePy (the `bench` extra) for the benchmark's MoviePy row, in a venv of its own: it pins
# an older Pillow than reelbot's.
MOVIEPY := $(VENV)/moviepy

.PHONY: demo test lint bench system-deps deps clean

demo: deps
	$(BIN)/reelbot render examples/demo.md -o out/demo.mp4

test: deps lint
	$(BIN)/pytest -q

lint: deps
	$(BIN)/ruff check pipeline bot tests bench
	$(BIN)/ruff format --check pipeline bot tests bench
	$(BIN)/mypy

bench: deps $(MOVIEPY)/.installed
	$(BIN)/python -m bench

$(MOVIEPY)/.installed: pyproject.toml
	test -x $(MOVIEPY)/bin/python || $(PYTHON) -m venv $(MOVIEPY)
	$(MOVIEPY)/bin/pip install -q $$($(BIN)/python -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['bench']))")
	touch $@

deps: system-deps $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "please install:$$missing (e.g. sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

# Quiet: one line, then only pip's warnings and errors. setuptools' "Editable installation"
# note (an informational warning it prints on every editable install) is not one of them.
$(STAMP): pyproject.toml
	@echo "setting up $(VENV): reelbot, its dev tools and Piper (a few minutes, the first time)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip
	@PYTHONWARNINGS="ignore:Editable installation:UserWarning" $(BIN)/pip install -q -e '.[dev,piper]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) out data .pytest_cache .mypy_cache .ruff_cache
