.PHONY: test bench build vet fuzz

test:
	go test ./... -count=1 -timeout 20m

# Benchmarks report ratios and rates; each memory benchmark runs in its own
# process so that its peak RSS is its own.
bench:
	go test ./snapshot/ -run '^$$' -bench 'SnapshotLatency|SnapshotThroughput' -benchtime 3x -count 1
	go test ./snapshot/ -run '^$$' -bench 'SnapshotMemory' -benchtime 1x -count 1

build:
	go build -o bin/backfill ./cmd/backfill

vet:
	go vet ./...
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Placeholder until fuzz targets exist.
fuzz:
	@echo "no fuzz targets yet"
