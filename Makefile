.PHONY: test bench build vet fuzz

test:
	go test ./... -count=1 -timeout 20m

# Benchmarks report ratios and rates; each memory benchmark runs in its own
# process so that its peak RSS is its own.
bench:
	go test ./snapshot/ -run '^$$' -bench 'SnapshotLatency|SnapshotThroughput' -benchtime 3x -count 1
	go test ./snapshot/ -run '^$$' -bench 'SnapshotMemory' -benchtime 1x -count 1
	go test ./apply/ -run '^$$' -bench 'Reconcile100k' -benchtime 3x -count 1
	go test ./apply/ -run '^$$' -bench 'Plan100k' -benchtime 1x -count 1
	go test ./apply/ -run '^$$' -bench 'Apply10k' -benchtime 3x -count 1

build:
	go build -o bin/backfill ./cmd/backfill

vet:
	go vet ./...
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

FUZZTIME ?= 30s

# Each fuzz target for a bounded time; seed corpora also run in `make test`.
fuzz:
	go test ./internal/inventory/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	go test ./internal/cp/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	go test ./internal/identity/ -run '^$$' -fuzz '^FuzzDerive$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
