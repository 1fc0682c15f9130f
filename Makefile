# assistlog — the two commands are `make demo` and `make test` (see README).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
STACK := $(GO) run ./stack/cmd/stack
export GOFLAGS ?= -buildvcs=false

.PHONY: demo test test-long bench up down status check help images loki-tenants

help:
	@echo "make demo    bring the real stack up and run assistlog on demo conversations"
	@echo "make test    bring the stack up, run every test against it, bring it down"
	@echo "make test-long    the long fault tests (200 kill -9 restarts of the collector)"
	@echo "make bench   every benchmark row against its peer on the stack (under 20 min warm) → bench/RESULTS.md"
	@echo "make images  build the container images (no Docker daemon) into build/images: OCI layout + tarballs"
	@echo "make loki-tenants    Grafana data sources + Loki ruler rules per tenant (TENANTS=, LOKI_URL=, OUT=; docs/loki-tenants.md)"
	@echo "make up | down | status    manage the local stack (Kafka, Elasticsearch, OpenSearch, Loki, Prometheus, Alertmanager, S3)"

demo:
	bash demo/run.sh

test:
	$(MAKE) --no-print-directory check
	$(STACK) up
	# Topics earlier runs left would pile up until Kafka's heap runs out.
	$(STACK) prune-test-topics
	# Three phases. Packages run two at a time except where they share more
	# than the servers: the fault tests stop and restart shared servers
	# (Kafka, Elasticsearch, Loki) and run alone at the end; alerts,
	# dashboards and stack bind the stack's fixed scrape and on-call ports.
	rc=0; \
	ASSISTLOG_INTEGRATION=1 $(GO) test -p 2 -count=1 -timeout 60m -skip '^($(FAULT_TESTS))$$' \
		$$($(GO) list ./... | grep -v -x -e '$(MODULE)/alerts' -e '$(MODULE)/dashboards' -e '$(MODULE)/stack') || rc=$$?; \
	ASSISTLOG_INTEGRATION=1 $(GO) test -p 1 -count=1 -timeout 30m ./alerts/ ./dashboards/ ./stack/ || rc=$$?; \
	ASSISTLOG_INTEGRATION=1 $(GO) test -p 1 -count=1 -timeout 30m -run '^($(FAULT_TESTS))$$' \
		./collector/ ./shipper/ ./internal/elastic/ ./internal/loki/ || rc=$$?; \
	$(STACK) down || true; \
	exit $$rc

# Tests that stop a shared server mid-run (see `make test`).
FAULT_TESTS := TestKafkaOutage|TestSinkOutages|TestWriteWaitsOutAnOutage|TestPushWaitsOutAnOutage
MODULE := github.com/assistlog/assistlog

# The long fault tests: 200 kill -9 restarts of the collector.
test-long:
	$(STACK) up kafka
	ASSISTLOG_INTEGRATION=1 ASSISTLOG_CRASH_LOOPS=200 $(GO) test -count=1 -timeout 60m -run 'TestCrashLoop' -v ./collector/

# The benchmarks (issue 14), not part of make test (whose TestBenchQuick
# runs every row at smoke size). BENCH_FLAGS e.g. "--rows 1,3"; the stack is
# left up (it is the warm stack the numbers are measured on).
bench:
	$(STACK) up
	eval "$$($(STACK) env)"; $(GO) run ./bench/cmd/bench $(BENCH_FLAGS)

# Container images without a Docker daemon (go-containerregistry): build/images/oci
# (an OCI image layout) and build/images/NAME.tar (docker/podman load).
images:
	$(GO) run ./internal/images/cmd/images --out build/images

# For a Loki with one tenant per business (docs/loki-tenants.md): Grafana data
# sources per tenant and the content rules in each tenant's ruler directory.
TENANTS ?= demo/tenants.yaml
LOKI_URL ?= http://127.0.0.1:13100
OUT ?= build/loki-tenants
loki-tenants:
	$(GO) run ./dashboards/cmd/loki-tenants --tenants $(TENANTS) --loki-url $(LOKI_URL) \
		--datasources $(OUT)/grafana/assistlog-tenants.yaml --rules-dir $(OUT)/loki-rules

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

up:
	$(STACK) up

down:
	$(STACK) down

status:
	$(STACK) status
