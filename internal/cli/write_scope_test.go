package cli

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

// Found by review: a BACKFILL_CANARY left from the canary step made the
// next apply a canary again, and a BACKFILL_TENANT left in a shell limited
// a rollback to one tenant; both exited 0 with "complete": true and
// nothing in the JSON or the log said the run covered part of the plan.
// The canary flags are now command line only (a canary variable still set
// is refused), and a run limited by
// --tenant says so in the log and in --json's scope, naming where the
// patterns came from.
func TestALeftoverCanaryOrTenantDoesNotPassForTheWholePlan(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	type doc struct {
		Complete bool           `json:"complete"`
		Counts   map[string]int `json:"counts"`
		Scope    *writeScope    `json:"scope"`
	}
	// A canary variable set (as a runbook written when they were read
	// might) is refused, not ignored: ignored, the whole plan would be
	// written where a canary was meant.
	for _, name := range []string{"BACKFILL_CANARY", "BACKFILL_CANARY_TENANT"} {
		env := maps.Clone(f.env)
		env[name] = "1"
		t.Setenv(name, "1")
		res := runAt(t, env, "apply", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute")
		if res.code != 2 || !strings.Contains(res.stderr, name+" is set") {
			t.Fatalf("apply with %s set: %d %s%s", name, res.code, res.stdout, res.stderr)
		}
		os.Unsetenv(name)
	}
	for tenant, names := range agreed {
		for _, n := range names {
			if s := f.row(t, tenant, n); s.template != "" {
				t.Fatalf("%s/%s written by a refused apply", tenant, n)
			}
		}
	}
	res := f.apply(t, "--execute", "--json")
	var d doc
	if err := json.Unmarshal([]byte(res.stdout), &d); err != nil || res.code != 0 || !d.Complete || d.Counts["applied"] != 3 || d.Scope != nil {
		t.Fatalf("apply: %d %v %+v\n%s", res.code, err, d, res.stderr)
	}
	for tenant, names := range agreed {
		for _, n := range names {
			if s := f.row(t, tenant, n); s.template == "" {
				t.Errorf("%s/%s not written: the environment's canary was obeyed", tenant, n)
			}
		}
	}

	env := maps.Clone(f.env)
	env["BACKFILL_TENANT"] = "concierge"
	t.Setenv("BACKFILL_TENANT", "concierge")
	res = runAt(t, env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute", "--json")
	d = doc{}
	if err := json.Unmarshal([]byte(res.stdout), &d); err != nil || res.code != 0 || d.Counts["rolled-back"] != 1 || d.Scope == nil ||
		!slices.Equal(d.Scope.Tenants, []string{"concierge"}) || d.Scope.TenantsFrom != "BACKFILL_TENANT" {
		t.Fatalf("rollback with BACKFILL_TENANT set: %d %v %+v %+v\n%s", res.code, err, d, d.Scope, res.stderr)
	}
	if !strings.Contains(res.stderr, "covering part of the plan") || !strings.Contains(res.stderr, "BACKFILL_TENANT") {
		t.Errorf("no warning that the rollback covered part of the plan: %s", res.stderr)
	}
	// The same patterns on the command line are named as the flag's.
	res = runAt(t, env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--tenant", "acme", "--json")
	d = doc{}
	if err := json.Unmarshal([]byte(res.stdout), &d); err != nil || d.Scope == nil || d.Scope.TenantsFrom != "--tenant" {
		t.Fatalf("rollback --tenant acme: %d %v %+v\n%s", res.code, err, d.Scope, res.stderr)
	}
}
