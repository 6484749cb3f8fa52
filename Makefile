# Trawl's front door. `make run` and `make test` are the two commands a new
# user needs; the rest are for working on Trawl.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/trawl-dev/trawl/internal/version.Version=$(VERSION)
BUF := $(GO) run github.com/bufbuild/buf/cmd/buf@v1.75.0
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
BINARIES := trawl-agent trawl-relay trawl

.PHONY: all build test test-unit run bench bench-datapath bench-relay bench-cli bench-policy \
	proto proto-check bpf lint clickhouse deps clean

all: build

build:
	@mkdir -p bin
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/trawl-agent ./agent/cmd/trawl-agent
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/trawl-relay ./relay/cmd/trawl-relay
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/trawl ./cli/cmd/trawl

# Installs what the tests need (Debian packages, the embedded ClickHouse
# library) when missing; safe to run again.
deps:
	@bash scripts/deps.sh

# Unit tests: go test -short, no root, network namespaces, eBPF or ClickHouse;
# the tests that need them skip and say why. Seconds once built.
test-unit:
	$(GO) test -short -count=1 ./...

# All tests: unit, integration against the embedded ClickHouse, eBPF in
# network namespaces (root), Prometheus rules, and the end-to-end test;
# make lint first.
test: deps proto-check lint build
	bash scripts/test.sh

# The whole system on this machine: embedded ClickHouse, relay, agent and a
# demo cluster of network namespaces; Ctrl-C stops it and cleans up.
run: deps build
	bash scripts/run.sh

bench: bench-datapath bench-relay bench-cli bench-policy

bench-datapath: build
	bash bench/datapath.sh

bench-relay: build
	bash bench/relay.sh

bench-cli: build
	bash bench/cli.sh

bench-policy:
	bash bench/policy.sh

# Two relays behind one address and ClickHouse as two shards vs one relay,
# and a relay killed mid-load (docs/benchmarks/relay.md).
.PHONY: bench-scale soak
bench-scale:
	bash bench/scale.sh

# SOAK_MINUTES (30) at half the measured maximum with a relay kill, a
# ClickHouse stop and an agent restart: flows sent vs stored, RSS per minute
# and whether each process's memory stayed flat within 10 %.
soak:
	bash bench/soak.sh

proto:
	$(BUF) lint
	$(BUF) generate

# Fails when buf lint fails or the committed generated code is stale.
proto-check:
	bash scripts/proto-check.sh .

# Regenerates the eBPF objects and bpf2go bindings (needs clang and llvm).
bpf:
	$(GO) generate ./agent/...

# go vet, gofmt, buf lint, staticcheck (default checks) and the layering
# check; all must be clean.
lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(BUF) lint
	$(STATICCHECK) ./...
	bash scripts/layering.sh

# The embedded ClickHouse in the foreground (native :9000, HTTP :8123).
clickhouse:
	$(GO) run ./dev/cmd/trawl-clickhouse --tcp-port 9000 --http-port 8123 --data-dir .cache/clickhouse

clean:
	rm -rf bin .cache
