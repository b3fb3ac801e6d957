# `make demo` trains the recommended network (EfficientNet-Lite0 from ImageNet, README:
# "Your own photos") on dataset/ and classifies every image in examples/; `make
# demo-tutorial` does the same with the tutorial's SmallerVGGNet; `make test` runs the tests. Each first creates a virtualenv with the
# requirements. The venv lives in ~/.cache/pokedex/venvs/<hash of the
# requirements files>, so every clone with the same requirements reuses it
# (TensorFlow makes it ~2.6 GB) and a changed requirements file gets a new one.
PYTHON ?= python3.11
REQUIREMENTS := requirements.txt requirements-dev.txt
REQ_HASH := $(shell $(PYTHON) -c "import hashlib,sys; print(hashlib.sha256(b''.join(open(f,'rb').read() for f in sys.argv[1:])).hexdigest()[:12])" $(REQUIREMENTS) 2>/dev/null)
VENV ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/pokedex/venvs/$(REQ_HASH)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_EPOCHS ?= 20

.PHONY: demo demo-tutorial test test-all venv clean

venv: $(STAMP)
	@echo "activate with: source $(VENV)/bin/activate"

$(STAMP):  # the hash in $(VENV) already tracks the requirements
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run: make PYTHON=python3 ..."; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python train.py --dataset dataset --model pokedex.model --labelbin lb.pickle --arch efficientnet-lite0
	$(BIN)/python classify.py --model pokedex.model --labelbin lb.pickle --image examples --output output

demo-tutorial: $(STAMP)
	$(BIN)/python train.py --dataset dataset --model pokedex.model --labelbin lb.pickle --epochs $(DEMO_EPOCHS)
	$(BIN)/python classify.py --model pokedex.model --labelbin lb.pickle --image examples --output output

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

clean:
	rm -rf output pokedex.model pokedex.model.* lb.pickle plot.png
