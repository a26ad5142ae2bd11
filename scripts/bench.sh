#!/usr/bin/env bash
# make bench: backfill's benchmarks, written to bench/RESULTS.md.
#
# First as an operator runs it (cmd/benchfleet): the built binary as its own
# process against tenant databases on a throwaway cluster, some behind a
# loopback latency proxy, and a files API served by another process, with
# the bare Go fetcher and `xargs -P C curl` baselines timed in the same run.
# Then the in-process Go benchmarks (labelled so), two of them with CPU
# profiles whose top entries are added to the file. Raw output and the
# profiles are kept in bench/out/.
#
# BENCH_SCALE=0.1 scales every size, operator-run and in-process
# (default 1; internal/benchsize); BENCH_RUNS
# sets the runs a row (default 3, the median is reported); BENCH_CURL_URLS
# the URLs the curl baseline is timed over (default 200, then scaled);
# BENCH_WORK a directory to keep the fleets' files and every run's log in.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
mkdir -p bench/out bin

scale="${BENCH_SCALE:-1}"
go build -o bin/backfill ./cmd/backfill
go build -o bin/benchfleet ./cmd/benchfleet
bin/benchfleet --bin bin/backfill --out bench/RESULTS.md --scale "$scale" ${BENCH_WORK:+--work "$BENCH_WORK"}

# In-process sizes follow BENCH_SCALE (internal/benchsize); the snapshot
# rows are given theirs.
scaled() { awk -v n="$1" -v s="$scale" 'BEGIN { v = int(n * s + 0.5); print (v < 100 ? 100 : v) }'; }

run() { # name package pattern benchtime [go test flags...]
	local name=$1 pkg=$2 pat=$3 bt=$4
	shift 4
	echo "== $name" >&2
	go test "./$pkg/" -run '^$' -bench "^$pat\$" -benchtime "$bt" -count 1 -timeout 60m "$@" | tee "bench/out/$name.txt" >&2
}
BENCH_N=$(scaled 5000) run snapshot-latency snapshot BenchmarkSnapshotLatency 3x -cpuprofile "$PWD/bench/out/snapshot.cpu.prof" -o "$PWD/bench/out/snapshot.test"
BENCH_N=$(scaled 20000) run snapshot-throughput snapshot BenchmarkSnapshotThroughput 3x
run reconcile-100k apply/plan BenchmarkReconcile100k 3x
run plan-100k apply/plan BenchmarkPlan100k 3x -cpuprofile "$PWD/bench/out/plan.cpu.prof" -o "$PWD/bench/out/plan.test"
BENCH_NAIVE=100 run apply-10k apply BenchmarkApply10k 3x
run verify-100k internal/evidence BenchmarkVerify100k 3x

# metric FILE UNIT: the value reported before UNIT on the benchmark line.
metric() { awk -v u="$2" '/^Benchmark/ { for (i = 2; i <= NF; i++) if ($i == u) print $(i-1) }' "bench/out/$1.txt" | tail -1; }
top10() { go tool pprof -top -nodecount=10 "bench/out/$1.test" "bench/out/$1.cpu.prof" 2>/dev/null | sed -n '/^ *flat /,$p'; }

{
	echo "## In-process Go benchmarks (one test process: server, databases' client and backfill's code together; not the operator's view)"
	echo
	echo "| what | measured | target (before issue 13) |"
	echo "|---|---|---|"
	echo "| in-process: snapshot $(scaled 5000) workspaces, 20 ms, C=64 | $(metric snapshot-latency wall-s) s, $(metric snapshot-latency x-ideal)× ideal ($(metric snapshot-latency ideal-s) s) | ≤ 1.25× ideal |"
	echo "| in-process: snapshot $(scaled 20000) workspaces, no latency, 2 KiB | $(metric snapshot-throughput captures/s) captures/s | ≥ 10,000/s |"
	echo "| in-process: reconcile $(metric reconcile-100k workspaces) workspaces (time per 100,000) | $(metric reconcile-100k s/100k) s | < 2 s |"
	echo "| in-process: plan $(metric plan-100k workspaces) workspaces, 50 tenant DBs | $(metric plan-100k wall-s) s, peak RSS $(metric plan-100k peak-rss-MB) MB (test process) | < 20 s, < 400 MB |"
	echo "| in-process: verify $(metric verify-100k captures) captures of 2 KiB | $(metric verify-100k wall-s) s | < 2 s |"
	echo "| in-process: apply $(metric apply-10k writes) writes, 50 tenant DBs | $(metric apply-10k wall-s) s ($(metric apply-10k writes/s) writes/s); one \`psql\` per row: $(metric apply-10k naive-psql-s) s (100 timed, scaled) | ≥ 20× faster than psql per row |"
	echo
	echo "## CPU profiles (backfill has no profiling flag: \`go test -cpuprofile\` on the in-process benchmarks, setup included)"
	echo
	echo "snapshot (BenchmarkSnapshotLatency, 3 runs; the files API server runs in the same process):"
	echo
	echo '```'
	top10 snapshot
	echo '```'
	echo
	echo "plan (BenchmarkPlan100k, 3 runs after one setup of $(metric plan-100k workspaces) captures):"
	echo
	echo '```'
	top10 plan
	echo '```'
	echo
	echo "Raw output: \`bench/out/\`."
} >>bench/RESULTS.md
cat bench/RESULTS.md
