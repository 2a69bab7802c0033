# Sluice build targets. `make run` starts a broker on loopback with data under ./data;
# `make test` is what CI runs.
GO            ?= go
STATICCHECK   ?= honnef.co/go/tools/cmd/staticcheck@v0.7.0
FUZZTIME      ?= 60s
# Minimizing each new interesting input may otherwise take a minute of the fuzzing time.
FUZZMINIMIZE  ?= 5s
BENCHTIME     ?= 1s
DATA          ?= ./data
LISTEN        ?= 127.0.0.1:7450
METRICS       ?= 127.0.0.1:7451
HTTP          ?= 127.0.0.1:7480

.PHONY: all build run test vet lint fuzz bench bench-micro soak clean

all: build

# The release stamped into both commands (sluice --version, sluiced --version, sluice_build_info).
# Static binaries (no cgo), paths trimmed: what deploy/Dockerfile's build stage runs too.
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS       ?= -X github.com/sluicemq/sluice/internal/buildinfo.version=$(VERSION)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

run: build
	./bin/sluiced --data $(DATA) --listen $(LISTEN) --metrics $(METRICS) --http-listen $(HTTP) --mqtt-listen 127.0.0.1:1883

vet:
	$(GO) vet ./...

# go vet, then every package under the race detector. Long soak and crash loops live behind `make soak`;
# their short versions run here. The rings and the packages built on them run once more without the
# race detector: only then do producers publish with plain release stores and parking consumers fence
# with membarrier (ring/fence.go), the path production builds take. So does wire, whose allocation
# checks over pooled codec state hold only where sync.Pool keeps what is put back (not under -race).
test: vet
	$(GO) test -race -count=1 -timeout 9m ./...
	$(GO) test -count=1 -timeout 5m ./ring/ ./wire/ ./engine/...

lint: vet
	$(GO) run $(STATICCHECK) ./...

# Every fuzz target, each for FUZZTIME. The seed corpora under testdata/fuzz are committed.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "== $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$pkg; \
	  done; \
	done

# Micro-benchmarks of every package, with allocation counts.
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# The broker suite (docs/bench.md): the embedded and TCP targets with 100 B and 1 KiB records at written
# and fsync durability, open-loop rate sweeps until p99 breaks and a closed-loop maximum, each step
# beside the harness floor, with loopback TCP, disk write, fdatasync and memcpy limits measured in the
# same run on BENCHDATA's disk: /var/tmp is disk-backed (unlike /tmp on some systems) and outside the
# checkout, where nothing else removes it mid-run. Rewrites the section between the bench markers of
# docs/benchmarks.md and the plots in docs/bench/. BENCHBUDGET bounds the suite (about 9 minutes in all).
BENCHBUDGET   ?= 8m
BENCHDATA     ?= /var/tmp/sluice-bench

bench:
	mkdir -p $(BENCHDATA)
	$(GO) run ./bench/cmd/sluicebench -suite broker -targets embedded,tcp -budget $(BENCHBUDGET) \
	    -report docs/benchmarks.md -plots docs/bench -plot-link bench -limits-dir $(BENCHDATA)

soak:
	SLUICE_SOAK=1 $(GO) test -count=1 -timeout 60m -run 'Soak|Crash' ./...

clean:
	rm -rf bin
