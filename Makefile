# The two commands: `make demo` (set up, run the main job) and `make test` (set up, run every test).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export PATH := $(abspath $(BIN)):$(PATH)

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-z][a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# --compile-bytecode: the pipeline starts a fresh Python per step, and where PYTHONDONTWRITEBYTECODE
# is set nothing would ever be cached, doubling every import.
$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> installing the pinned packages into $(VENV) (about a minute the first time)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --compile-bytecode --python $(BIN)/python -c constraints.txt -e '.[platform,dev]'
	touch $@

install: $(BIN)/.installed ## Create .venv and install the pinned dependencies (constraints.txt)

# gitlab-ci-local, pinned by tests/tools/package-lock.json: the tests check .gitlab-ci.yml with it.
GITLAB_CI_LOCAL := tests/tools/node_modules/.bin/gitlab-ci-local
$(GITLAB_CI_LOCAL): tests/tools/package.json tests/tools/package-lock.json
	@echo "==> gitlab-ci-local, GitLab's rule evaluation for the CI tests (npm ci: a few minutes, once)"
	npm ci --prefix tests/tools --no-audit --no-fund --loglevel=error
	touch $@

# checkov in its own virtualenv (its dependencies conflict with the project's), pinned.
CHECKOV := .venv-checkov/bin/checkov
$(CHECKOV): tests/tools/checkov-requirements.txt | $(BIN)/.installed
	@echo "==> checkov in .venv-checkov (once)"
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	$(BIN)/uv pip install --quiet --python .venv-checkov/bin/python -r tests/tools/checkov-requirements.txt
	touch $@

# network-config-analyzer in its own virtualenv (it pins PyYAML and networkx exactly), pinned: the independent
# NetworkPolicy evaluator of tests/cluster and `mlops cluster check`.
NCA := .venv-nca/bin/nca
$(NCA): tests/tools/nca-requirements.txt | $(BIN)/.installed
	@echo "==> network-config-analyzer in .venv-nca (once)"
	test -x .venv-nca/bin/python || $(PYTHON) -m venv .venv-nca
	$(BIN)/uv pip install --quiet --python .venv-nca/bin/python -r tests/tools/nca-requirements.txt
	touch $@

# The local control plane's programs (etcd, kube-apiserver, kube-controller-manager, KServe's manager and agent per
# release), built from their Go modules at infra/controlplane.toml's versions into ~/.cache/mpg-mlops/controlplane
# when missing (about 35 minutes cold on 2 cores, nothing when cached).
controlplane: install ## Build the local control plane's programs from Go modules (once per version; make test does it)
	$(BIN)/python -c "from infra.gobuild import ensure_built; ensure_built()"

scan: install $(CHECKOV) ## checkov over the rendered trees, the Dockerfile and .gitlab-ci.yml (skips justified in place)
	$(BIN)/mlops manifests scan --checkov $(CHECKOV)

SERVE ?= 1
STAGING_PORT ?= 8000
PRODUCTION_PORT ?= 8001
MONITOR_PORT ?= 8081
demo: install ## Data, pipelines, what runs where, then staging + production following main (mlops up) (SERVE=0, STAGING_PORT=, PRODUCTION_PORT=, MONITOR_PORT=)
	scripts/system-deps.sh demo
	SERVE=$(SERVE) STAGING_PORT=$(STAGING_PORT) PRODUCTION_PORT=$(PRODUCTION_PORT) MONITOR_PORT=$(MONITOR_PORT) scripts/demo.sh

LOOP_LOAD ?= 15
loop: install ## The GitOps loop end to end here: data MR, its CI, training, staging, promotion, rollback (a timeline)
	scripts/system-deps.sh test
	$(MAKE) --no-print-directory $(GITLAB_CI_LOCAL)
	$(BIN)/python -m bench.loop --load $(LOOP_LOAD)

test: install ## System packages the tests drive (nginx, Chromium, Node), checkov, lint, compiled pipeline current, every test
	scripts/system-deps.sh test
	$(MAKE) --no-print-directory $(GITLAB_CI_LOCAL) $(CHECKOV) $(NCA)
	$(BIN)/ruff check .
	$(BIN)/mlops pipeline compile --check
	$(BIN)/python -m mlops.docs --check
	BIN=$(BIN) scripts/test.sh

# The inner loop: lint and the tests that start no server and train no full model (unit, data, the parser
# properties), under a minute. `make test` stays the whole suite, what CI runs.
CHECK_TESTS := tests/unit tests/data tests/fuzz/test_properties.py
check: install ## The fast inner loop: lint, the generated docs current, the tests that need no server
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/python -m mlops.docs --check
	$(BIN)/python -m pytest -q $(CHECK_TESTS)

docs: install ## Regenerate docs/cli.md (from the commands' --help) and the support matrix in docs/cluster.md
	$(BIN)/python -m mlops.docs

lint: install ## ruff lint and format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

BENCH_ARGS ?=
bench: install ## Every benchmark (training, pipeline, serving, manifests, monitor, load): one table, BENCHMARKS.md
	scripts/system-deps.sh bench
	$(BIN)/mlops data pull
	$(BIN)/dvc repro
	$(BIN)/python -m bench all --out BENCHMARKS.md $(BENCH_ARGS)

fuzz: install ## Long fuzzing: hypothesis on every parser, schemathesis >= 10,000 requests per service
	FUZZ_EXAMPLES=5000 FUZZ_MIN_REQUESTS=10000 $(BIN)/python -m pytest -q -s tests/fuzz

lock: ## Re-resolve constraints.txt from pyproject.toml (needs uv in .venv)
	$(BIN)/uv pip compile pyproject.toml --extra platform --extra dev --python-version 3.11 -o constraints.txt

clean: ## Remove the virtualenv, local model store and untracked outputs
	rm -rf $(VENV) .venv-checkov .venv-nca models .mlops .pytest_cache .hypothesis .schemathesis tests/tools/node_modules

.PHONY: help install demo test check lint bench lock clean fuzz scan loop controlplane docs
