# Two entry points for a fresh clone: `make demo` and `make test`. Each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3.11
UV := .tools/bin/uv
VENV := .venv
SYNCED := $(VENV)/.synced
DEMO := data/demo
PORT ?= 3000

export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export PYTHONDONTWRITEBYTECODE := 1
export NO_MKDOCS_2_WARNING := 1

.PHONY: setup browser java postgres demo serve docs test lint bench clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

$(SYNCED): uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --compile-bytecode --python $(PYTHON)
	touch $@

setup: $(SYNCED)

demo: setup
	$(VENV)/bin/churn generate --customers 4000 --seed 7 --out $(DEMO)
	$(VENV)/bin/churn train --customers $(DEMO)/customers.parquet \
		--events $(DEMO)/events.parquet --label explicit --horizon 30 --cadence 30
	$(VENV)/bin/churn promote
	$(VENV)/bin/churn score --customers $(DEMO)/customers.parquet \
		--events $(DEMO)/events.parquet --as-of 2026-06-30 --out $(DEMO)/scores.parquet
# a retention campaign planned on the batch of 1 May, its calls simulated with the
# generator's treatment effect, and its report once the 30-day horizon has passed
	$(VENV)/bin/churn score --customers $(DEMO)/customers.parquet \
		--events $(DEMO)/events.parquet --as-of 2026-05-01 --out $(DEMO)/campaign/scores.parquet
	$(VENV)/bin/churn campaign plan --scores $(DEMO)/campaign/scores.parquet --budget 120 \
		--control-share 0.3 --seed 7 --name "May save" --out $(DEMO)/campaign/contacts.csv
	$(VENV)/bin/churn campaign simulate --campaign latest --customers $(DEMO)/customers.parquet \
		--events $(DEMO)/events.parquet --out $(DEMO)/campaign/world --effect complaints=0.5 \
		--effect payment=0.5 --effect cancel_intent=0.5 --effect contact_drop=0.7
	$(VENV)/bin/churn campaign outcomes --campaign latest --file $(DEMO)/campaign/world/calls.csv
	$(VENV)/bin/churn campaign outcomes --campaign latest \
		--customers $(DEMO)/campaign/world/customers.parquet \
		--events $(DEMO)/campaign/world/events.parquet
	$(VENV)/bin/churn campaign report --campaign latest
	$(VENV)/bin/churn compare
	PORT=$(PORT) $(VENV)/bin/python scripts/serve_once.py

# the service with the reviewer page over the demo's data, in the foreground (Ctrl+C stops it)
serve: setup
	CHURN_REVIEW_SCORES=$(DEMO)/scores.parquet CHURN_REVIEW_CUSTOMERS=$(DEMO)/customers.parquet \
	CHURN_REVIEW_EVENTS=$(DEMO)/events.parquet $(VENV)/bin/churn serve --port $(PORT)

# the browser test drives Debian's chromium (Playwright never downloads a browser here)
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "the browser test needs Debian's chromium: sudo apt-get install chromium"; exit 1; fi; }

# --engine spark runs on a Java 17 runtime from Debian's packages (pyspark itself is in the lock)
java:
	@command -v java >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; \
	  else echo "--engine spark needs Java 17: sudo apt-get install openjdk-17-jre-headless"; exit 1; fi; }

# the PostgreSQL tests start a throwaway server with Debian's initdb and pg_ctl
# (/usr/lib/postgresql/<version>/bin; as root it runs as the package's postgres user)
postgres:
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "the PostgreSQL tests need Debian's postgresql: sudo apt-get install postgresql"; exit 1; fi; }

# the manual (docs/, mkdocs.yml) into site/; --strict turns a dead link, a missing page or a
# broken anchor into an error, so `make test` (and CI) fails on one
docs: setup
	$(VENV)/bin/mkdocs build --strict --site-dir site

test: setup browser java postgres docs
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(VENV)/bin/python benchmarks/bench_features.py

clean:
	rm -rf $(VENV) .tools data site
