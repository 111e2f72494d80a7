# mcp-connector: the two commands that matter are `make demo` and `make test`.
SHELL := bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/.dev/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help venv tools examples image dev-up dev-down demo test lint unit e2e bench clean

help:
	@echo "make demo     local clusters + connector + pulumi up + a claim through the app cluster"
	@echo "              (IN_CLUSTER=1: the connector runs in-cluster from make image's image)"
	@echo "make test     lint, unit, component and e2e tests (builds the tools if needed)"
	@echo "make tools    build and cache kube-apiserver, etcd, crossplane, pulumi, pulumi-resource-kubernetes, pulumi-language-yaml, pulumi-sdkgen"
	@echo "make examples the TypeScript and Go examples: McpConnector SDKs generated, npm ci, tsc --noEmit, go vet"
	@echo "make image    build the connector image (Containerfile) with no registry: .dev/image/*.oci.tar"
	@echo "make dev-up   start the local control plane and app cluster; make dev-down stops them"
	@echo "make bench    reads and watches through the aggregator vs the app cluster's own CRD and the control plane"

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml components/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

tools: venv
	bash testbed/build-tools.sh
	ln -sf $(CURDIR)/$(VENV)/bin/kubectl .dev/bin/kubectl
	ln -sf $(CURDIR)/testbed/plugins/pulumi-resource-mcp-connector .dev/bin/pulumi-resource-mcp-connector

# The TypeScript and Go examples, as `pulumi package add ../../provider` prepares them (testbed/sdks.py).
examples: tools
	$(PY) -m testbed.sdks

# The connector image: a Debian base from Debian's packages (mmdebstrap), buildah, no registry.
image: venv
	bash scripts/install-image-tools.sh
	bash scripts/image.sh

dev-up: tools
	$(PY) -m testbed.cluster up

dev-down: venv
	bash scripts/demo.sh down

# make demo IN_CLUSTER=1: the connector in-cluster, from the image, run by the test bed's pod runner.
demo: tools
	IN_CLUSTER="$(IN_CLUSTER)" bash scripts/demo.sh

lint: venv
	$(VENV)/bin/ruff check src components tests testbed provider scripts bench __main__.py
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: venv
	$(PY) -m pytest tests/unit tests/component -q

# Issue 12's side-by-side benchmark against the running test bed (make dev-up first).
bench: venv
	$(PY) bench/bench_cache.py

# The e2e suite gets a test bed of its own, started fresh: never a running demo's clusters.
E2E_ENV := MCP_TESTBED_DIR=$(CURDIR)/.dev/test-bed MCP_TESTBED_FRESH=1

e2e: tools examples image
	$(E2E_ENV) $(PY) -m pytest tests/e2e -q -ra --durations=15

test: venv tools examples image
	@scripts/phase lint 10m $(MAKE) --no-print-directory lint
	@scripts/phase unit 15m $(PY) -m pytest tests/unit tests/component -q -ra
	@scripts/phase e2e 55m env $(E2E_ENV) $(PY) -m pytest tests/e2e -q -ra --durations=15 --session-timeout=3000

clean:
	$(PY) -m testbed.cluster down || true
	rm -rf .dev
