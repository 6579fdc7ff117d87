# phaseshift — the two commands users need are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup tools test unit integration lint demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, the real
# node's kubelet, kube-proxy, CoreDNS and metrics-server, and the Prometheus that
# manifests/ installs, from Go modules, and resolves a Kafka broker from Maven Central,
# into ~/.cache/phaseshift (reused when present).
tools:
	tools/build.sh
	tools/build.sh node
	tools/build.sh prometheus
	tools/kafka.sh

lint: setup
	$(BIN)/ruff check operator sample_app tests bench
	$(BIN)/ruff format --check operator sample_app tests bench
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q tests/unit

test: setup tools lint
	$(BIN)/pytest -q -ra tests

demo: setup tools
	$(BIN)/phaseshift demo

clean:
	-$(BIN)/phaseshift cluster down
	rm -rf $(VENV) results
