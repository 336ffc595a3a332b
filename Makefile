# Quick start: `make demo` (synthesise speech, train, evaluate, transcribe: no download),
# `make test` (the test suite). Each installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= exp/synth-demo

.PHONY: install install-synth demo demo-fsdd demo-yesno test lint clean

# apt_install PACKAGES,PURPOSE: as root on Debian/Ubuntu, install the Debian PACKAGES unless all
# are there; otherwise (or when apt-get fails) say what PURPOSE needs. Never fails.
apt_install = if dpkg -s $(1) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -qq && apt-get install -y -qq $(1); } || \
		echo "warning: apt-get could not install $(1) (for $(2))"; \
	else echo "note: for $(2), install the Debian/Ubuntu packages $(1) as root"; fi

# The toolkit with its test and development extras; then, as root on Debian/Ubuntu, what
# building KenLM for the language-model stages needs (cmake, make, g++, the Boost and zlib
# headers: asr.lm.KENLM_DEBS; Debian has no KenLM package).
# LM_BUILD is made once those packages are all there (until then, each run tries again).
LM_BUILD := $(VENV)/.installed-lm-build
install: $(VENV)/.installed $(LM_BUILD)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $@

$(LM_BUILD): $(VENV)/.installed asr/lm.py
	@debs="$$($(BIN)/python -c 'from asr.lm import KENLM_DEBS; print(*KENLM_DEBS)')" && \
		$(call apt_install,$$debs,building KenLM (asr lm)) && \
		if dpkg -s $$debs >/dev/null 2>&1; then touch $@; fi

# Speech engines: piper from PyPI; flite and espeak-ng from Debian's packages when we are root
# on Debian/Ubuntu (otherwise the recipe goes on with the engines that are there); Chromium and
# its driver for the page's browser tests (skipped, saying so, where they are absent).
install-synth: $(VENV)/.installed-synth $(LM_BUILD)

$(VENV)/.installed-synth: $(VENV)/.installed
	$(BIN)/pip install -e ".[dev,synth]"
	@$(call apt_install,flite espeak-ng,the synthetic-speech recipe's voices)
	@$(call apt_install,chromium chromium-driver,the browser tests of asr serve's page)
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
