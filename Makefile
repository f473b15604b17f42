# Two commands: `make run` (the app) and `make test` (the whole suite). Both create or refresh the
# virtual environment when it is missing or a requirements file changed (stamp files in .venv/).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test lint unit bench clean-cache

$(VENV)/.stamp-run: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	@# torchvision's wheels need the CUDA build of torch; a '+cpu' torch breaks `import torchvision`.
	$(PY) -c "import torch, torchvision; assert '+cpu' not in torch.__version__, torch.__version__; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $@

$(VENV)/.stamp-dev: $(VENV)/.stamp-run requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.stamp-run
	$(PY) -m streamlit run app.py --server.headless true --server.port $(PORT)

lint: $(VENV)/.stamp-dev
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest

unit: $(VENV)/.stamp-dev
	$(PY) -m pytest tests/unit

bench: $(VENV)/.stamp-run
	$(PY) -m cnn_core.bench

clean-cache:
	rm -rf data/.cache
