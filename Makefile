# flowvid: `make demo` runs the main job on built-in synthetic data, `make test` runs the tests.
# Both create the project virtual environment (.venv) from pyproject.toml first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo_synth

.PHONY: install demo test lint clean

$(BIN)/flowvid: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/flowvid

demo: install
	rm -rf $(DEMO)
	$(BIN)/flowvid synth --out $(DEMO) --videos 3 --frames 24 --size 128
	$(BIN)/flowvid validate $(DEMO)
	$(BIN)/flowvid train --config configs/debug.yaml --data $(DEMO) --run-dir $(DEMO)/run
	$(BIN)/flowvid overlay $(DEMO)/videos/vessel_000.mp4 $(DEMO)/flow/vessel_000.npy \
		--out $(DEMO)/overlay_vessel_000.mp4 --style both --um-per-px 0.8
	@echo "demo: dataset in $(DEMO)/ (look at preview.png), a tiny trained model in $(DEMO)/run/model.pt, ground-truth overlay in $(DEMO)/overlay_vessel_000.mp4"

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check flowvid tests tools

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache
