#!/usr/bin/env bash
# Runs every benchmark and writes bench/RESULTS.md: the machine, then each
# figure with its target and ratio. Raw `go test -bench` output is kept in
# bench/out/. Each benchmark runs in its own process so peak RSS is its own.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
mkdir -p bench/out

run() { # name package pattern benchtime
	echo "== $1" >&2
	go test "./$2/" -run '^$' -bench "^$3\$" -benchtime "$4" -count 1 -timeout 60m | tee "bench/out/$1.txt" >&2
}
run snapshot-latency snapshot BenchmarkSnapshotLatency 3x
run snapshot-throughput snapshot BenchmarkSnapshotThroughput 3x
run snapshot-memory snapshot BenchmarkSnapshotMemory 1x
run snapshot-fleet-10k snapshot BenchmarkSnapshotFleet10k 1x
run snapshot-fleet-100k snapshot BenchmarkSnapshotFleet100k 1x
run reconcile-100k apply/plan BenchmarkReconcile100k 3x
run plan-100k apply/plan BenchmarkPlan100k 1x
run apply-10k apply BenchmarkApply10k 3x

# metric FILE UNIT: the value reported before UNIT on the benchmark line.
metric() { awk -v u="$2" '/^Benchmark/ { for (i = 2; i <= NF; i++) if ($i == u) print $(i-1) }' "bench/out/$1.txt" | tail -1; }

{
	echo "# backfill benchmarks"
	echo
	echo "Written by \`make bench\` on $(date -u +%Y-%m-%dT%H:%MZ). The machine is shared and small, so read the ratios."
	echo
	echo "- CPU: $(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
	echo "- Memory: $(free -g | awk '/^Mem:/ {print $2}') GiB"
	echo "- $(go version)"
	echo "- PostgreSQL $(postgres --version 2>/dev/null | awk '{print $3}' || echo '?') (throwaway local cluster, unix socket)"
	echo "- HTTP: the files API served on loopback from the same test process (its CPU counts against backfill)"
	echo
	echo "| what | backfill | alternative | ratio | target |"
	echo "|---|---|---|---|---|"
	echo "| snapshot 5,000 workspaces, 20 ms latency, C=64 | $(metric snapshot-latency wall-s) s | ideal N·L/C $(metric snapshot-latency ideal-s) s | $(metric snapshot-latency x-ideal)× ideal | ≤ 1.25× ideal |"
	echo "| snapshot, no latency, 2 KiB configs | $(metric snapshot-throughput captures/s) captures/s | | | ≥ 10,000/s |"
	echo "| snapshot 50,000 workspaces | peak RSS $(metric snapshot-memory peak-rss-MB) MB | | | < 150 MB |"
	echo "| snapshot 10,000 workspaces, 10 ms latency, C=64 | $(metric snapshot-fleet-10k wall-s) s | \`xargs -P 64 curl\`: $(metric snapshot-fleet-10k shell-s) s | $(metric snapshot-fleet-10k x-shell)× faster | |"
	echo "| snapshot 100,000 workspaces, 10 ms latency, C=64 | $(metric snapshot-fleet-100k wall-s) s ($(metric snapshot-fleet-100k x-ideal)× ideal) | \`xargs -P 64 curl\`: $(metric snapshot-fleet-100k shell-s) s (10,000 timed, scaled) | $(metric snapshot-fleet-100k x-shell)× faster | |"
	echo "| reconcile 100,000 workspaces | $(metric reconcile-100k s/100k) s | | | < 2 s |"
	echo "| plan 100,000 workspaces, 50 tenant DBs | $(metric plan-100k wall-s) s, peak RSS $(metric plan-100k peak-rss-MB) MB | | | < 20 s, < 400 MB |"
	echo "| apply 10,000 writes, 50 tenant DBs | $(metric apply-10k wall-s) s ($(metric apply-10k writes/s) writes/s) | one \`psql\` per row: $(metric apply-10k naive-psql-s) s (500 timed, scaled) | $(metric apply-10k x-faster)× faster | ≥ 20× |"
	echo
	echo "Raw output: \`bench/out/*.txt\`."
} > bench/RESULTS.md
cat bench/RESULTS.md
