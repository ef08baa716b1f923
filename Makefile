# telco-intent: every entry point a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := bin
KUBECONFIG_LOCAL := .local/kubeconfig
PYTEST_ARGS ?=


.PHONY: test-argocd-engine help setup bin crds lint test test-unit demo status cluster-up cluster-down clean argocd chart-lint image kind-up kind-down bench-devicesim bench bench-quick bench-replicas bench-startup reliability

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@hack/ensure-python.sh $(PYTHON) $(VENV)
	@echo "==> installing the project and its test/dev tools into $(VENV) (first run: 1-3 minutes)"
	@$(PY) -m pip install --progress-bar on -q --upgrade pip
	@$(PY) -m pip install --progress-bar on -q -e '.[test,dev]'
	@touch $@

setup: $(VENV)/.installed bin ## create the virtualenv and build the control plane

bin: ## build kube-apiserver, etcd, kubectl and helm from their Go modules (only when missing or outdated)
	@hack/localcluster/build.sh
	@hack/helm/build.sh

crds: $(VENV)/.installed ## regenerate crds/ from the pydantic models in controller/api, and the chart's copies
	@$(PY) -m controller crds --write crds/ --reference docs/api-reference.md
	@hack/sync-chart-crds.sh
	@$(PY) deploy/argocd/render.py

argocd: $(VENV)/.installed ## regenerate deploy/argocd/argocd-cm-health.yaml and deploy/argocd/quickstart/
	@$(PY) deploy/argocd/render.py

chart-lint: bin ## helm lint the chart
	@$(BIN)/helm lint --strict charts/telco-intent

image: ## build the controller image (needs Docker)
	docker build -t telco-intent/controller:0.1.0 .

kind-up: ## kind cluster with the controller installed by the chart (needs Docker and kind)
	@hack/kind-up.sh

kind-down: ## delete that kind cluster
	@hack/kind-up.sh down

PACKAGES := $(wildcard controller devicesim localcluster)

lint: $(VENV)/.installed ## ruff and mypy
	@echo "==> ruff and mypy on $(PACKAGES)"
	@$(VENV)/bin/ruff check $(PACKAGES) tests
	@$(VENV)/bin/ruff format --check controller localcluster
	@$(VENV)/bin/mypy $(PACKAGES)

$(BIN)/kstatus: hack/kstatus/go.mod hack/kstatus/go.sum hack/kstatus/main.go ## kstatus of live objects with sigs.k8s.io/cli-utils (tests/integration/test_gitops_tools.py)
	@hack/localcluster/ensure-go.sh
	@mkdir -p $(BIN)
	@echo "==> building kstatus (sigs.k8s.io/cli-utils) for the GitOps health tests"
	@cd hack/kstatus && $(CURDIR)/hack/progress.sh "go build kstatus" \
	  env GOTOOLCHAIN=$${GOTOOLCHAIN:-auto} CGO_ENABLED=0 go build -v -trimpath -o $(CURDIR)/$(BIN)/kstatus .

$(BIN)/argocd-health: hack/argocd-health/go.mod hack/argocd-health/go.sum hack/argocd-health/main.go
	@hack/localcluster/ensure-go.sh
	@mkdir -p $(BIN)
	@echo "==> building Argo CD's Lua health engine (argo-cd v3 util/lua + gitops-engine): about 11 minutes cold"
	@echo "    on 2 cores, 1-3 minutes with the Go caches warm; a progress line follows every 15 s"
	@cd hack/argocd-health && $(CURDIR)/hack/progress.sh "go build argocd-health" \
	  env GOTOOLCHAIN=$${GOTOOLCHAIN:-auto} CGO_ENABLED=0 go build -v -trimpath -o $(CURDIR)/$(BIN)/argocd-health .

test-argocd-engine: $(VENV)/.installed $(BIN)/kstatus $(BIN)/argocd-health ## the health table in Argo CD's own Lua engine and in kstatus (heavy cold build, not in make test)
	@TELCO_ARGOCD_ENGINE=$(CURDIR)/$(BIN)/argocd-health $(VENV)/bin/pytest tests/integration/test_gitops_tools.py $(PYTEST_ARGS)

test: setup $(BIN)/kstatus ## the whole suite: unit tests and integration tests against a real local control plane
	@hack/ensure-chromium.sh
	@echo "==> running the test suite (starts its own kube-apiserver and etcd on loopback)"
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(VENV)/bin/pytest $(PYTEST_ARGS)

test-unit: $(VENV)/.installed ## only the fast tests without I/O
	@$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

cluster-up: setup ## start a detached local control plane; writes .local/kubeconfig
	@$(PY) -m localcluster up

cluster-down: $(VENV)/.installed ## stop it; no process, port or directory is left behind
	@$(PY) -m localcluster down

demo: setup ## the quick start: local control plane, CRDs and the examples (ONCE=1 exits after the checks; AT=TIME fakes the clock)
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(PY) -m controller demo $(if $(ONCE),--once,) $(if $(AT),--at $(AT),)

status: $(VENV)/.installed ## the dashboard tables (KUBECONFIG, else the running demo's .local/demo/kubeconfig)
	@KUBECONFIG="$${KUBECONFIG:-$(CURDIR)/.local/demo/kubeconfig}" $(PY) -m controller status

bench: setup ## controller benchmarks side by side with baselines (~16 min; not part of make test)
	@$(PY) -m pip install -q -r bench/requirements.txt
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(PY) bench/controller_bench.py

bench-quick: setup ## the same scenarios, smaller (~4.5 min)
	@$(PY) -m pip install -q -r bench/requirements.txt
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(PY) bench/controller_bench.py --quick

reliability: setup ## fault matrix, chaos with billing integrity, hostile input and RBAC (long; a subset runs in make test)
	@PATH="$(CURDIR)/$(BIN):$$PATH" TELCO_RELIABILITY=full $(VENV)/bin/pytest tests/reliability tests/integration/test_hostile_input.py tests/integration/test_rbac.py $(PYTEST_ARGS)

bench-replicas: setup ## sharded replicas: 10,000 services with 1, 2 and 4 replicas, SIGKILL during a rollout (docs/sharding.md)
	@$(PY) -m pip install -q -r bench/requirements.txt
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(PY) bench/replicas_bench.py $(REPLICAS_ARGS)

bench-startup: setup ## controller restart after SIGKILL: start-up timeline and order change in force (docs/reliability.md; ~5 min; STARTUP_ARGS="--subscriptions 500")
	@$(PY) -m pip install -q -r bench/requirements.txt
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(PY) bench/startup_bench.py $(STARTUP_ARGS)

bench-devicesim: $(VENV)/.installed ## devicesim throughput, latency and memory (QUICK=1 for a short run)
	@$(PY) bench/devicesim_bench.py $(if $(QUICK),--quick,)

clean: cluster-down ## remove build outputs and local state (keeps the Go caches)
	rm -rf $(BIN) .local $(VENV) *.egg-info
