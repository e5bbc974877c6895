# Thin wrappers. Each target first makes sure .venv exists with the pinned requirements.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# So that `celery`, `honcho` and `jupyter` below are the virtualenv's.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test redis workers lab slides figures bench-03 bench-04 bench clean

demo: $(VENV)/.installed        ## Redis + 3 workers + the producer tour, then stop it all
	$(BIN)/python -m labkit.demo

test: $(VENV)/.installed        ## the whole test suite (private Redis, real workers)
	$(BIN)/python -m pytest -n 4 --dist worksteal -rs

redis: $(VENV)/.installed       ## a real Redis in the foreground on 6379, for the terminals walkthrough
	$(BIN)/python -m labkit.redis_server --port 6379

workers: $(VENV)/.installed     ## worker1..3 and Flower (FLOWER_PORT, default 5555) in one terminal (Procfile)
	$(BIN)/honcho start

lab: $(VENV)/.installed         ## JupyterLab on the notebooks
	$(BIN)/jupyter lab notebooks/

slides: $(VENV)/.installed      ## every notebook executed → slides/NN_*.slides.html, offline decks (npm once)
	$(BIN)/python scripts/slides.py
	@# the talk's title slide, as README shows it, and the deck checked offline: needs Chromium
	@if [ -n "$$CHROMIUM" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then \
	  $(BIN)/python scripts/deck_browser.py slides/00_brown_bag_talk.slides.html --screenshot img/00_talk_title.png; \
	else echo "decks built; no Chromium here, so img/00_talk_title.png was not redrawn (apt-get install chromium)"; fi

figures: $(VENV)/.installed     ## regenerate every img/NN_*.png from real runs (private Redis, real workers)
	$(BIN)/python scripts/figures.py

figures-%: $(VENV)/.installed   ## one lesson's figures, e.g. `make figures-02`
	$(BIN)/python scripts/figures.py $*

bench-03: $(VENV)/.installed    ## lock acquire+release cycles/s, as ratios to raw SET NX PX + DEL
	$(BIN)/python bench/locks.py

bench-04: $(VENV)/.installed    ## progress reporting overhead and round trips per update
	$(BIN)/python bench/progress_fft.py

bench: $(VENV)/.installed       ## every benchmark, one table of ratios (brokers, pools, tuning: lesson 07)
	$(BIN)/python bench/all.py

$(VENV)/.installed: requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "error: Python 3.10 or newer is needed — run with PYTHON=/path/to/python3.x" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@# the repository itself, editable: importable from notebooks/ and scripts/ without sys.path edits
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

clean:                          ## remove the virtualenv, run-time files and decks
	rm -rf $(VENV) .run slides
