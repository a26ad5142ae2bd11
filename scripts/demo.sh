#!/usr/bin/env bash
# make demo: the whole backfill procedure against a simulated fleet on this
# machine (fleetsim: 12 tenant databases, 200 workspaces, a restart wave),
# then a check of every workspace's final template against the fleet's
# answer key. Needs Go and the PostgreSQL server binaries; exits non-zero
# if any step fails or any workspace ends up other than the key says.
#
# The fleet behaves like the platform: hosted tenants are read through the
# files API (org header, rate limit, ReadFile silently falling back to a
# template folder), self-hosted ones through docker exec with the config
# volume as a file fallback (fleetsim's fake docker is first on the PATH
# that DIR/env sets). Its inventory needs backfill's files_api collector
# and collector chains.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

start=$SECONDS
step() { printf '\n== %s\n' "$*"; }

step "build"
go build -o bin/ ./cmd/backfill ./cmd/fleetsim
backfill="$PWD/bin/backfill"
fleetsim="$PWD/bin/fleetsim"

work="$(mktemp -d "${TMPDIR:-/tmp}/backfill-demo.XXXXXX")"
fleet="$work/fleet"
fleet_pid=""

cleanup() {
	local status=$? rc=0
	if [[ -n $fleet_pid ]]; then
		kill -TERM "$fleet_pid" 2>/dev/null || true
		wait "$fleet_pid" || rc=$?
		if ((rc != 0)); then
			echo "demo: fleetsim exited $rc while stopping; its log:" >&2
			cat "$work/fleetsim.log" >&2 || true
			((status != 0)) || status=1
		fi
	fi
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
# Signals end the script through the EXIT trap, so cleanup always runs.
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
	echo "demo: $*" >&2
	exit 1
}

step "fleet: 12 tenants, 200 workspaces; rate limit 40 per 4s per org; restart wave 10s after ready, 10 configs/s"
# 200 workspaces at 10/s: the wave has overwritten every live config ~20s
# after it starts. The snapshot below has to win that race.
# The inventory asks for 12 requests a second per tenant against a limit of
# 10 a second (40 per 4s window, as if the org's own users took the rest):
# every files API tenant meets 429s, some with Retry-After: 0. A tenant's
# ~17 workspaces take 3 requests each (list, read, list): about 5s.
"$fleetsim" --dir "$fleet" --tenants 12 --workspaces 200 --seed 1 \
	--latency 10ms --error-rate 0.02 --rate-limit 40/4s --files-api-rate 12 \
	--restart-wave-after 10s --restart-rate 10 >"$work/fleetsim.log" 2>&1 &
fleet_pid=$!
for ((i = 0; i < 600; i++)); do
	[[ -f $fleet/ready ]] && break
	kill -0 "$fleet_pid" 2>/dev/null || { cat "$work/fleetsim.log" >&2; die "fleetsim exited before it was ready"; }
	sleep 0.1
done
[[ -f $fleet/ready ]] || die "fleetsim not ready after 60s"
cat "$work/fleetsim.log"
# Tokens, org ids, DSNs, and PATH with the fleet's bin/docker first.
# shellcheck disable=SC1091
source "$fleet/env"
cd "$work"

step "backfill snapshot"
# Exit 3 is expected: some workspaces have no evidence to capture (stopped
# containers the files API cannot read, template-folder answers, missing
# files); the answer key says which.
# --retries covers the simulated 2% of 503s with room to spare.
rc=0
"$backfill" --quiet snapshot --inventory "$fleet/inventory.yaml" --retries 4 || rc=$?
((rc == 0 || rc == 3)) || die "snapshot exited $rc"

step "backfill plan"
"$backfill" --quiet plan --inventory "$fleet/inventory.yaml" --cp "$fleet/cp.csv" \
	--catalog "$fleet/catalog" --manifest "$fleet/manifest.json" \
	--out plan.json --report plan.md --author demo-operator

step "backfill approve"
"$backfill" approve plan.json --by demo-reviewer --cp "$fleet/cp.csv" \
	--catalog "$fleet/catalog" --manifest "$fleet/manifest.json"

step "backfill apply --execute"
"$backfill" --quiet apply --inventory "$fleet/inventory.yaml" --plan plan.json --execute --operator demo-operator >apply.txt ||
	{ cat apply.txt; die "apply --execute failed"; }

step "report: counts"
sed -n '/^## Counts$/,/^## Needs a person/{/^## Needs a person/!p}' plan.md

step "apply summary"
grep -v '^  ' apply.txt

step "fleetsim check"
"$fleetsim" check --dir "$fleet" --plan plan.json

printf '\ndemo: OK in %ds\n' "$((SECONDS - start))"
