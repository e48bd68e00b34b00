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
	$(BIN)/flowvid predict $(DEMO)/videos/vessel_002.mp4 --checkpoint $(DEMO)/run/model.pt \
		--out $(DEMO)/pred_vessel_002.npy --um-per-px 0.8
	$(BIN)/flowvid overlay $(DEMO)/videos/vessel_002.mp4 $(DEMO)/pred_vessel_002.npy \
		--gt $(DEMO)/flow/vessel_002.npy --out $(DEMO)/overlay_vessel_002.mp4 --um-per-px 0.8
	$(BIN)/flowvid eval --data $(DEMO) --split test --checkpoint $(DEMO)/run/model.pt \
		--baselines --out $(DEMO)/eval
	@echo "demo: data and preview.png, model ($(DEMO)/run/model.pt), prediction, overlay and eval report in $(DEMO)/"

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check flowvid tests tools

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache
