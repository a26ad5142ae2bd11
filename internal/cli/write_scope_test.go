package cli

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
)

// Found by review: a BACKFILL_CANARY left from the canary step made the
// next apply a canary again, and a BACKFILL_TENANT left in a shell limited
// a rollback to one tenant; both exited 0 with "complete": true and
// nothing in the JSON or the log said the run covered part of the plan.
// The canary flags are now command line only, and a run limited by
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
	t.Setenv("BACKFILL_CANARY", "1")
	t.Setenv("BACKFILL_CANARY_TENANT", "acme")
	res := f.apply(t, "--execute", "--json")
	var d doc
	if err := json.Unmarshal([]byte(res.stdout), &d); err != nil || res.code != 0 || !d.Complete || d.Counts["applied"] != 3 || d.Scope != nil {
		t.Fatalf("apply with BACKFILL_CANARY and BACKFILL_CANARY_TENANT set: %d %v %+v\n%s", res.code, err, d, res.stderr)
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
