# Two commands: `make run` (the app) and `make test` (the whole suite). Both create or refresh the
# virtual environment when it is missing or a requirements file changed (stamp files in .venv/).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test test-fp32 lint unit bench bench-stored clean-cache chromium mutation
CHROMIUM ?= $(or $(CNN_LAB_CHROMIUM),/usr/bin/chromium)

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

# The browser tests drive Debian's Chromium: installed here when missing and we are root, else a stop with the command.
chromium:
	@test -x "$(CHROMIUM)" || { \
	  if [ "$$(id -u)" = 0 ] && [ "$(CHROMIUM)" = /usr/bin/chromium ]; then \
	    echo "$(CHROMIUM) is missing: installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "error: $(CHROMIUM) is missing; the browser tests need it. Run:  sudo apt-get install -y chromium" >&2; exit 1; \
	  fi; }

# The float32 path of a CPU without bf16 (AMD Zen 2/3, older Intel), forced on any x86 CPU: auto precision never
# picks bf16, and PyTorch's own kernels and oneDNN's use AVX2 at most. An AVX-512 machine then sums in the orders an
# AVX2 machine does (checked: it reproduced an AMD machine's universal-perturbation numbers digit for digit). Not
# MKL_ENABLE_INSTRUCTIONS=AVX2: on the AMX machine it made a batch's input gradient differ from each image's by 1%,
# which the AMD machine did not show (it passed a 1e-5 check).
FLOAT32_PATH := CNN_LAB_BF16=0 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2

# The whole suite on this machine's path, then the tests that compare computed floats (marker `numeric`) on the
# float32 AVX2 path too: CI alternates CPU kinds, and each run checks both. A CPU without AVX-512 has no bf16 and
# computes on that path already, so the second pass would repeat the first.
test: lint chromium
	$(PY) -m pytest
	@if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then $(MAKE) --no-print-directory test-fp32; \
	else echo "test-fp32 skipped: this CPU has no AVX-512, so the tests above ran on the float32 AVX2 path"; fi

test-fp32: $(VENV)/.stamp-dev
	$(FLOAT32_PATH) $(PY) -m pytest -m numeric -q tests/unit

unit: $(VENV)/.stamp-dev
	$(PY) -m pytest tests/unit

bench: $(VENV)/.stamp-run
	$(PY) -m cnn_core.bench

# Stored results of the shipped runs against live ones, on this machine's path and on the forced float32 AVX2 path.
bench-stored: $(VENV)/.stamp-run
	$(PY) -m bench.stored
	$(FLOAT32_PATH) $(PY) -m bench.stored

clean-cache:
	rm -rf data/.cache

# Mutation testing of cnn_core's formula modules against tests/unit (config: [tool.mutmut] in pyproject.toml).
# Not part of `make test`: it takes hours on 2 cores. Results are kept in mutants/ and a rerun resumes;
# `make mutation MUTANTS='cnn_core.model.*'` runs one module (a mutmut glob over mutant names). Runs at nice 19.
MUTANTS ?=
$(VENV)/.stamp-mutation: $(VENV)/.stamp-dev requirements-mutation.txt
	$(PY) -m pip install -q -r requirements-mutation.txt
	touch $@

mutation: $(VENV)/.stamp-mutation
	@# One intra-op thread per test process: with torch's default two, a tiny training run took 1.5 s instead of 0.1 s.
	@# tests/mutmut_plugin.py orders a mutant's tests cheapest first and counts shared fixtures' calls (only here).
	OMP_NUM_THREADS=1 PYTHONPATH=. PYTEST_ADDOPTS="-p tests.mutmut_plugin" nice -n 19 $(PY) -m mutmut run $(foreach m,$(MUTANTS),'$(m)')
	@echo "Per module (killed / survived / timeout / ...):"
	@$(PY) -m mutmut results --all true | sed -E 's/^ *(cnn_core\.[a-z_]+)\.[^:]*: /\1 /' | sort | uniq -c
	@echo "Not killed (inspect one with: $(PY) -m mutmut show NAME):"
	@$(PY) -m mutmut results | grep -v ': not checked$$' || true
