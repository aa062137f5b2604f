# aaas-profile: `make setup` once on a fresh machine, then `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup check-deps constraints browser test test-all test-portability demo bench lint clean

setup: check-deps $(VENV)/.installed browser

# Refuse dependency lines that only install on this machine (`name @ file:///…`, absolute paths, `-e`), before
# pip sees them: standard-library Python, so it runs before the venv exists.
check-deps:
	@$(PYTHON) tools/check_dependency_specs.py

# PyPI's torch wheel is a CUDA build that also runs on CPU; constraints.txt pins the tested versions.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ".[dev]"
	touch $@

# Debian's Chromium and ChromeDriver, for the test that opens the report in a real headless browser.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	    echo "install Debian's chromium and chromium-driver (as root) for the report's browser test"; exit 0; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; \
	fi

test: check-deps setup
	$(BIN)/python -m pytest

# the tests marked numeric again with ATEN_CPU_CAPABILITY=avx2 and =default at 1 and 2 threads, and those marked
# timing beside two busy processes (docs/testing.md, "Portability"); CI runs it after `make test`
test-portability: setup
	PY=$(BIN)/python tools/test_portability.sh

# also the tests marked slow or gpu (the gpu ones skip themselves without CUDA)
test-all: setup
	$(BIN)/python -m pytest -m ""

# the main job on the bundled default (faces model: the paper's t_T axis 10-250, about 3 CPU minutes), then its
# fit and report page
demo: setup
	$(BIN)/aaas-profile sweep --out results/demo
	$(BIN)/aaas-profile fit results/demo
	$(BIN)/aaas-profile report results/demo

# throughput as ratios against baselines measured in the same run; tables printed, JSON in results/bench/
bench: setup
	$(BIN)/python bench/bench_sweep.py
	$(BIN)/python bench/bench_sweep.py --model celeba-random --images 2 --steps 5 --no-scoring \
	    --variants naive,project-batched,project-channels-last,project-bf16,project-bf16-channels-last
	$(BIN)/python bench/bench_protocol.py
	$(BIN)/python bench/bench_sim.py

lint: setup
	$(BIN)/ruff check aaas_profile tests

# Regenerate constraints.txt from the venv. `pip list --format=freeze` writes name==version for every package,
# also those installed from a local wheel, where `pip freeze` would write `name @ file:///…`, a path no other
# machine has; the check then runs on the result.
constraints: setup
	@{ sed -n '/^#/p' constraints.txt; $(BIN)/python -m pip list --format=freeze --exclude-editable --exclude pip --exclude setuptools --exclude wheel; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt
	@$(PYTHON) tools/check_dependency_specs.py && echo "constraints.txt: $$(grep -vc '^#' constraints.txt) pins"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
