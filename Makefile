# One command each: `make demo` trains and classifies the examples, `make test`
# runs the tests. Both create .venv and install the requirements first, and
# reinstall only when a requirements file changes.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_EPOCHS ?= 25

.PHONY: demo test test-all clean

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=python3"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python train.py --dataset dataset --model pokedex.model --labelbin lb.pickle --epochs $(DEMO_EPOCHS)
	@for image in examples/*; do \
		$(BIN)/python classify.py --model pokedex.model --labelbin lb.pickle --image "$$image" || exit 1; \
	done

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

clean:
	rm -rf output pokedex.model pokedex.model.*.json lb.pickle plot.png
