# Two commands set everything up on a fresh machine (Python 3.11 or 3.12):
#   make demo   - install, start the embedded broker, the job, a synthetic replay and the dashboard
#   make test   - install, then run the whole test suite (end-to-end tests use a real broker)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo browser screenshot bench soak clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium drives the dashboard's browser test; installed once, as root.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: install Debian's chromium (the browser test will skip)"; fi; }

# Two workers: most tests wait on a broker or a child process, so two halve the suite's time on two
# cores; each worker starts its own embedded broker. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: install browser
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# Refresh the README's screenshot from the browser test.
screenshot: install browser
	DASHBOARD_SCREENSHOT=docs/dashboard.png $(PY) -m pytest tests/dashboard/test_browser.py -q

# Speed and detection-quality measurements on the shared NVDA days (make bench NVDA_DATA=dir elsewhere).
NVDA_DATA ?= ../shared/data/nvda
bench: install
	@test -d $(NVDA_DATA) || { echo "make bench: no NVDA trade days in $(NVDA_DATA) (set NVDA_DATA=dir)"; exit 2; }
	$(PY) -m benchmarks.backtest_speed $(NVDA_DATA)/xnas-itch-20250509.trades.csv.zst
	$(PY) -m benchmarks.streaming $(NVDA_DATA)/xnas-itch-20250509.trades.csv.zst
	$(PY) -m benchmarks.evaluate $(NVDA_DATA)/xnas-itch-20250509.trades.csv.zst $(NVDA_DATA)/xnas-itch-20240923.trades.csv.zst --seed 0

# Hundreds of thousands of paced real trades through the embedded broker and the job (a few minutes).
soak: install
	$(PY) -m benchmarks.soak

demo: install
	$(PY) -m connectors.demo

clean:
	rm -rf $(VENV) .pytest_cache
