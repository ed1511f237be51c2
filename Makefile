# cdr-stream developer entry points. Everything installs itself: a virtualenv, the packages, the Kafka jars.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: help venv lint typecheck ops-check image engine-down kube-tools-background test test-unit demo kafka-up kafka-down cluster-up cluster-down bench bench-parse bench-peers bench-venv clean

help:
	@echo "make demo       broker + live simulated feed + connector, progress until Ctrl-C"
	@echo "make test       lint, type check, the deployment checks and the whole test suite (starts the broker)"
	@echo "make ops-check  Helm chart, alert rules and tests, dashboard, Dockerfile and lock checks (dev/ops/check)"
	@echo "make test-unit  the tests that need no broker and no ops tools"
	@echo "make image      build the Dockerfile in a private Docker Engine on a local Debian base (dev/container)"
	@echo "make engine-down  stop that private Docker Engine"
	@echo "make bench      catch-up benchmark: 1,000,000 records into the local broker"
	@echo "make bench-parse  parse rows/s and peak memory of each answer format (json, csv, txt, pipe)"
	@echo "make bench-peers  cdr-stream beside plain confluent-kafka and aiokafka scripts and Kafka's producer benchmark"
	@echo "make kafka-up / kafka-down   the local Kafka broker"
	@echo "make cluster-up / cluster-down   the three-broker Kafka cluster of the cluster and network fault tests"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The C extensions, rebuilt in place when a source changes (the editable install builds them the first time).
EXT_SUFFIX := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
NATIVE := cdr_stream/records/_native$(EXT_SUFFIX) cdr_stream/kafka/_batches$(EXT_SUFFIX)
$(NATIVE) &: $(wildcard cdr_stream/records/_native*.[ch] cdr_stream/kafka/_batches*.[ch]) hatch_build.py $(STAMP)
	$(BIN)/python hatch_build.py

venv: $(STAMP) $(NATIVE)

# The benchmarks' own extras (confluent-kafka for a peer script, py-spy), on top of the dev venv.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench-venv: $(BENCH_STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

# The chart, alerts and Dockerfile checks; they install helm and promtool themselves on the first run.
ops-check: venv
	dev/ops/check

# The Dockerfile as users build it, in the private engine, on a base made locally (no registry needed).
image:
	dev/container/build

engine-down:
	dev/container/engine stop

# The Kubernetes binaries of the chart install test build in the background (once per version) meanwhile.
kube-tools-background:
	dev/kube/tools --background

test: kube-tools-background lint typecheck ops-check
	dev/kafka/broker fetch
	dev/sshd/install
	dev/toxiproxy/install
	$(BIN)/pytest

test-unit: venv
	$(BIN)/pytest -m "not kafka and not tools"

demo: venv
	$(BIN)/python dev/demo.py

bench: venv
	$(BIN)/python dev/bench/catchup.py

bench-parse: venv
	$(BIN)/python dev/bench/parse_formats.py

bench-peers: bench-venv
	dev/kafka/broker fetch
	$(BIN)/python dev/bench/peers.py

kafka-up: venv
	dev/kafka/broker start

kafka-down:
	dev/kafka/broker stop

cluster-up: venv
	dev/kafka/cluster start

cluster-down:
	dev/kafka/cluster stop

clean:
	dev/kafka/broker stop || true
	dev/kafka/cluster stop || true
	dev/container/engine stop || true
	dev/kube/cluster stop || true
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
