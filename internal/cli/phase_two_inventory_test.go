package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Plan, apply, rollback, inspect and publish collect nothing, so they read
// the inventory's names and DSNs alone: the files API token need not be in
// their environment, and the write inventory the README asks for (the
// write role's DSNs) needs no collector. Snapshot still refuses the same
// file with the token unset.
func TestPhaseTwoNeedsNoCollectorCredentials(t *testing.T) {
	f := newPlanFixture(t)
	t.Chdir(f.dir)
	read := filepath.Join(f.dir, "inventory.yaml")
	data, err := os.ReadFile(read)
	if err != nil {
		t.Fatal(err)
	}
	// The read inventory collects through the files API with a token
	// nobody set here.
	collectors := regexp.MustCompile(`(?s)defaults:.*?tenants:\n`)
	withToken := collectors.ReplaceAllLiteralString(string(data), "defaults:\n  collector:\n    files_api:\n      base_url: https://files.invalid\n      headers: {Authorization: \"Bearer ${FILES_TOKEN}\"}\ntenants:\n")
	if withToken == string(data) {
		t.Fatal("the fixture's inventory has no defaults to replace")
	}
	writeFile(t, read, withToken)
	// The write inventory: names and DSNs, no collector.
	writeFile(t, filepath.Join(f.dir, "write.yaml"), collectors.ReplaceAllLiteralString(string(data), "tenants:\n"))
	if _, ok := f.env["FILES_TOKEN"]; ok {
		t.Fatal("FILES_TOKEN is set")
	}

	snap := runAt(t, f.env, "snapshot", "--inventory", "inventory.yaml")
	if snap.code == 0 || !strings.Contains(snap.stderr, "${FILES_TOKEN} is not set") {
		t.Fatalf("snapshot without the token: %d %s", snap.code, snap.stderr)
	}

	f.planAndApprove(t)
	res := runAt(t, f.env, "apply", "--inventory", "write.yaml", "--plan", "plan.json", "--execute")
	if res.code != 0 || !strings.Contains(res.stdout, "applied 3") {
		t.Fatalf("apply with the write inventory: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	for tenant, names := range agreed {
		for _, n := range names {
			if s := f.row(t, tenant, n); s.template == "" || s.writes != 1 {
				t.Errorf("%s/%s: %+v", tenant, n, s)
			}
		}
	}
	if res := runAt(t, f.env, "inspect", f.ids["seo-1"], "--inventory", "inventory.yaml", "--json"); res.code != 0 || !strings.Contains(res.stdout, `"now"`) {
		t.Errorf("inspect --inventory: %d %s%s", res.code, res.stdout, res.stderr)
	}
	// The fixture has a workspace without evidence: exit 3, counted.
	if res := runAt(t, f.env, "publish", filepath.Join(t.TempDir(), "copy.db"), "--inventory", "inventory.yaml"); !strings.Contains(res.stdout, "counted over the 3 tenants of inventory.yaml") {
		t.Errorf("publish --inventory: %d %s%s", res.code, res.stdout, res.stderr)
	}
	res = runAt(t, f.env, "rollback", "--inventory", "write.yaml", "--plan", "plan.json", "--execute")
	if res.code != 0 {
		t.Fatalf("rollback with the write inventory: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	for tenant, names := range agreed {
		for _, n := range names {
			if s := f.row(t, tenant, n); s.template != "" {
				t.Errorf("%s/%s not rolled back: %+v", tenant, n, s)
			}
		}
	}
}
