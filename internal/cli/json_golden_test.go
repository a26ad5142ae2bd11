package cli

import (
	"encoding/json"
	"regexp"
	"testing"
)

var (
	fpRE   = regexp.MustCompile(`sha256:[0-9a-f]{64}`)
	hexRE  = regexp.MustCompile(`"[0-9a-f]{64}"`)
	timeRE = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	dbRE   = regexp.MustCompile(`"(system_identifier|database)": "[^"]*"|"(oid|table_oid)": \d+`)
	tmpRE  = regexp.MustCompile(`/tmp/[^"]*/`)
	verRE  = regexp.MustCompile(`"(version|go|backfill)": "[^"]*"`)
)

// stable replaces what differs from run to run (fingerprints, hashes,
// times, the test cluster's identifiers, temporary paths, the build) so a
// JSON document can be a golden file.
func stable(s string) []byte {
	s = fpRE.ReplaceAllString(s, "sha256:FINGERPRINT")
	s = hexRE.ReplaceAllString(s, `"HASH"`)
	s = timeRE.ReplaceAllString(s, "TIME")
	s = dbRE.ReplaceAllString(s, `"$1$2": "DB"`)
	s = tmpRE.ReplaceAllString(s, "TMP/")
	s = verRE.ReplaceAllString(s, `"$1": "BUILD"`)
	return []byte(s)
}

// TestJSONDocuments: every phase-two command's --json is one JSON document
// on stdout with a schema_version, kept as a golden file per command.
func TestJSONDocuments(t *testing.T) {
	f := newPlanFixture(t)
	t.Chdir(f.dir)
	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
	}{
		{"plan", f.env, []string{"plan", "--inventory", "inventory.yaml", "--cp", "cp.csv", "--catalog", "catalog", "--out", "plan.json", "--json"}, 0},
		{"show", nil, []string{"show", "plan.json", "--json"}, 0},
		{"approve", nil, []string{"approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob", "--json"}, 0},
		{"apply-dry-run", f.env, []string{"apply", "--inventory", "inventory.yaml", "--plan", "plan.json", "--json"}, 0},
		{"apply", f.env, []string{"apply", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute", "--json"}, 0},
		{"rollback", f.env, []string{"rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute", "--json"}, 0},
		{"plans", nil, []string{"plans", "--json"}, 0},
		{"verify", nil, []string{"verify", "--json"}, 0},
		{"version", nil, []string{"version", "--json"}, 0},
	}
	for _, c := range cases {
		res := runAt(t, c.env, c.args...)
		if res.code != c.code {
			t.Fatalf("%s: exit %d\n%s%s", c.name, res.code, res.stdout, res.stderr)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
			t.Fatalf("%s: not one JSON document: %v\n%s", c.name, err, res.stdout)
		}
		if _, ok := doc["schema_version"]; !ok {
			t.Errorf("%s: no schema_version", c.name)
		}
		golden(t, "json/"+c.name+".json", stable(res.stdout))
	}
}
