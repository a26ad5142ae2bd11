.PHONY: test bench build vet fuzz

test:
	go test ./... -count=1 -timeout 20m

# Every benchmark, each in its own process so that peak RSS is its own;
# writes bench/RESULTS.md with the machine's description and the ratios.
bench:
	bash scripts/bench.sh

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
	go test ./apply/ -run '^$$' -fuzz '^FuzzParsePlan$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s

# The whole procedure against a simulated fleet (fleetsim), checked against
# its answer key; see scripts/demo.sh.
.PHONY: demo
demo:
	bash scripts/demo.sh
