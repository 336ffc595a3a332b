# Quick start: `make demo` (synthesise speech, train, evaluate, transcribe: no download),
# `make test` (the test suite). Each installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= exp/synth-demo

.PHONY: install install-synth demo demo-fsdd demo-yesno test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $@

# Speech engines: piper from PyPI; flite and espeak-ng from Debian's packages when we are root
# on Debian/Ubuntu (otherwise the recipe goes on with the engines that are there). Also the
# Boost and zlib headers that building KenLM for `asr lm` needs (Debian has no KenLM package).
KENLM_DEBS := libboost-program-options-dev libboost-system-dev libboost-thread-dev \
	libboost-test-dev zlib1g-dev
install-synth: $(VENV)/.installed-synth

$(VENV)/.installed-synth: $(VENV)/.installed
	$(BIN)/pip install -e ".[dev,synth]"
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		command -v flite >/dev/null && command -v espeak-ng >/dev/null && \
		dpkg -s $(KENLM_DEBS) >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq flite espeak-ng $(KENLM_DEBS); }; \
	else echo "not root on Debian/Ubuntu: install flite, espeak-ng and $(KENLM_DEBS) yourself"; fi
	touch $@

# The main job: a multi-voice synthetic corpus, a BiGRU trained for at most 9 minutes, tested
# on unseen voices and on real human digits (FSDD from ../shared or downloaded, when possible).
demo: install-synth
	PATH="$(abspath $(BIN)):$$PATH" bash recipes/synth/run.sh --exp-dir $(DEMO_DIR)

# The FSDD recipe (real human speech): the copy in ASR_DATA (default ../shared/data) when
# there, otherwise downloaded into data/fsdd.
demo-fsdd: install
	PATH="$(abspath $(BIN)):$$PATH" bash recipes/fsdd/run.sh --exp-dir exp/fsdd-demo

# The smallest recipe (Kaldi's yesno, 60 files): every stage in about a minute on a CPU.
demo-yesno: install-synth
	PATH="$(abspath $(BIN)):$$PATH" bash recipes/yesno/run.sh --exp-dir exp/yesno-demo

# One test process per core (pytest-xdist), each on one thread: the end-to-end tests are
# single-process training runs that gain little from a second torch thread.
test: install-synth
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n auto --dist worksteal

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) exp
