.PHONY: test bench build vet fuzz

test:
	go test ./... -count=1 -timeout 20m

# Placeholder: runs every benchmark once until real benchmarks exist.
bench:
	go test -run '^$$' -bench . -benchtime 1x ./...

build:
	go build -o bin/backfill ./cmd/backfill

vet:
	go vet ./...
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Placeholder until fuzz targets exist.
fuzz:
	@echo "no fuzz targets yet"
