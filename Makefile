.PHONY: test bench bench-smoke build vet fuzz image

test:
	go test ./... -count=1 -timeout 30m

# The built binary as an operator runs it (cmd/benchfleet: tenant databases,
# a latency proxy, a files API in another process, the bare-fetcher and curl
# baselines), then the in-process Go benchmarks and two CPU profiles; writes
# bench/RESULTS.md. BENCH_SCALE=0.1 for a quick run; see scripts/bench.sh.
bench:
	bash scripts/bench.sh

# Every benchmark once at 1% of its size (BENCH_SCALE, internal/benchsize)
# and the operator-run bench at 1%, one run a row: shows they still run.
# It measures nothing; CI runs it so that a change that breaks a benchmark
# is seen before the next make bench.
bench-smoke:
	BENCH_SCALE=0.01 go test ./... -run '^$$' -bench . -benchtime 1x -count 1 -timeout 30m
	go build -o bin/backfill ./cmd/backfill
	go build -o bin/benchfleet ./cmd/benchfleet
	out="$$(mktemp -d)" && bin/benchfleet --bin bin/backfill --out "$$out/RESULTS.md" --scale 0.01 --runs 1 && rm -rf "$$out"

build:
	go build -buildvcs=auto -o bin/backfill ./cmd/backfill

vet:
	go vet ./...
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

FUZZTIME ?= 30s

# Each fuzz target for a bounded time; seed corpora also run in `make test`.
fuzz:
	go test ./internal/inventory/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	go test ./internal/cp/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	go test ./internal/identity/ -run '^$$' -fuzz '^FuzzDerive$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	go test ./internal/catalog/ -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	go test ./apply/plan/ -run '^$$' -fuzz '^FuzzParsePlan$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s

# The whole procedure against a simulated fleet (fleetsim), checked against
# its answer key; see scripts/demo.sh.
.PHONY: demo
demo:
	bash scripts/demo.sh

# The container image (Dockerfile): a static binary on distroless/static,
# tagged $(IMAGE):$(VERSION) and $(IMAGE):latest. The build context has no
# .git, so the VCS facts are read here and passed as build arguments.
IMAGE ?= backfill
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
REVISION_TIME ?= $(shell TZ=UTC git log -1 --date=format-local:%Y-%m-%dT%H:%M:%SZ --format=%cd 2>/dev/null)
MODIFIED ?= $(shell if [ -n "$$(git status --porcelain 2>/dev/null)" ]; then echo true; else echo false; fi)
CONTAINER_ENGINE ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)

image:
	@if [ -z "$(CONTAINER_ENGINE)" ]; then \
		echo "make image: neither docker nor podman is on PATH; install one, or set CONTAINER_ENGINE=/path/to/it" >&2; \
		exit 1; \
	fi
	$(CONTAINER_ENGINE) build \
		--build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$(REVISION) \
		--build-arg REVISION_TIME=$(REVISION_TIME) \
		--build-arg MODIFIED=$(MODIFIED) \
		-t $(IMAGE):$(VERSION) -t $(IMAGE):latest .
