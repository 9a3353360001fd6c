# sidelog — make help lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

GO        ?= go
BIN       := $(CURDIR)/bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# Static, stripped, reproducible: what the images copy.
BUILD     := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'

# Envtest binaries (kube-apiserver, etcd) for the e2e tests: CI sets KUBEBUILDER_ASSETS from
# ../shared/k8s-tools; anywhere else setup-envtest downloads them, once, into bin/k8s.
ENVTEST_K8S_VERSION ?= 1.37.x
SETUP_ENVTEST := $(GO) run sigs.k8s.io/controller-runtime/tools/setup-envtest@latest
# The chart tests need helm: $KUBEBUILDER_ASSETS/helm (CI), one on PATH, or else one built here.
HELM_VERSION ?= v3.22.0
E2E_SETUP = assets="$${KUBEBUILDER_ASSETS:-$$($(SETUP_ENVTEST) use $(ENVTEST_K8S_VERSION) --bin-dir $(BIN)/k8s -p path)}"; \
	if [ ! -x "$$assets/helm" ] && ! command -v helm >/dev/null; then \
	  GOBIN=$(BIN) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); fi; \
	export KUBEBUILDER_ASSETS="$$assets" PATH="$$PATH:$(BIN)" SIDELOG_BIN=$(BIN)

# A count, not a duration: with a duration, Go 1.26's fuzz coordinator can report a spurious
# "context deadline exceeded" failure when -fuzztime expires (go.dev/issue/75804, fixed in 1.27).
FUZZTIME ?= 20000x

# Where `make images` tags them: the names the chart (image.repository) and the cluster policy
# (agentImage) use by default.
REGISTRY ?= ghcr.io/sidelog

.PHONY: help build demo test unit e2e reliability fuzz bench lint images clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/sidelog and bin/sidelog-agent (static, stripped)
	$(BUILD) -o $(BIN)/sidelog ./cmd/sidelog
	$(BUILD) -o $(BIN)/sidelog-agent ./cmd/sidelog-agent
	@ls -l $(BIN)/sidelog $(BIN)/sidelog-agent

demo: build ## inject the example Deployment, run its agent against a forward receiver (PROTOCOL=otlp: an OTLP endpoint)
	$(GO) run ./demo --sidelog $(BIN)/sidelog --agent $(BIN)/sidelog-agent --workload examples/deployment.yaml --protocol $(or $(PROTOCOL),forward)

test: lint unit fuzz e2e ## everything CI runs

lint: ## gofmt and go vet, both modules
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd e2e && $(GO) vet ./...

unit: ## unit tests of the product module, with the race detector
	$(GO) test -race -count=1 ./...

fuzz: ## run each fuzz target briefly (FUZZTIME=20000x executions)
	@$(GO) test -list '^Fuzz' ./... | awk '/^Fuzz/ {f[n++] = $$1} /^ok/ {for (i = 0; i < n; i++) print $$2, f[i]; n = 0}' | \
	while read -r pkg target; do \
	  echo "fuzz $$pkg $$target"; \
	  $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) "$$pkg" || exit 1; \
	done

e2e: build ## tests against a real kube-apiserver, helm and the OpenTelemetry forward receiver
	$(E2E_SETUP); cd e2e && $(GO) test -count=1 -timeout 30m ./...

reliability: build ## fault, load and bad-input tests at full length (~10 min); table in bin/reliability.md
	$(E2E_SETUP); cd e2e && SIDELOG_RELIABILITY=full SIDELOG_RELIABILITY_REPORT=$(BIN)/reliability.md \
	  $(GO) test -count=1 -timeout 20m -run 'Reliability' -v ./...

bench: build ## benchmarks and the agent's throughput harness, beside the OpenTelemetry Collector
	$(GO) test -run '^$$' -bench . -benchmem ./sidecar/...
	@otelcol="$${OTELCOL:-}"; \
	if [ -z "$$otelcol" ] && [ -x ../shared/tools/otelcol/install.sh ]; then \
	  dest=$$(../shared/tools/otelcol/install.sh | tail -n 1) && otelcol="$$dest/otelcol" || \
	  echo "bench: building the OpenTelemetry Collector failed; it is skipped"; fi; \
	[ -n "$$otelcol" ] || echo "bench: no OpenTelemetry Collector (set OTELCOL, or see ../shared/tools/otelcol): it is skipped"; \
	$(GO) run ./bench --agent $(BIN)/sidelog-agent $${otelcol:+--otelcol "$$otelcol"}

images: ## build the webhook and agent images (needs a Docker engine)
	docker build --target webhook --build-arg VERSION=$(VERSION) -t $(REGISTRY)/sidelog:$(VERSION) .
	docker build --target agent --build-arg VERSION=$(VERSION) -t $(REGISTRY)/sidelog-agent:$(VERSION) .

clean:
	rm -rf $(BIN)
