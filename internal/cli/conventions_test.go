package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestConventions: version and --version, a completion script, usage
// errors on one line without a help dump or a spurious "unknown command",
// and a hint for a duration without a unit, naming the variable when it
// came from one.
func TestConventions(t *testing.T) {
	v := run(t, nil, "version")
	if v.code != 0 || !strings.HasPrefix(v.stdout, "backfill ") {
		t.Errorf("version: %d %q", v.code, v.stdout)
	}
	if vv := run(t, nil, "--version"); vv.code != 0 || vv.stdout != v.stdout {
		t.Errorf("--version: %d %q, want %q", vv.code, vv.stdout, v.stdout)
	}
	var vj struct {
		SchemaVersion int    `json:"schema_version"`
		Version       string `json:"version"`
	}
	if err := json.Unmarshal([]byte(run(t, nil, "version", "--json").stdout), &vj); err != nil || vj.SchemaVersion != 1 || vj.Version == "" {
		t.Errorf("version --json: %v %+v", err, vj)
	}
	if c := run(t, nil, "completion", "bash"); c.code != 0 || !strings.Contains(c.stdout, "complete -o bashdefault") {
		t.Errorf("completion bash: %d %q", c.code, c.stdout)
	}
	if c := run(t, nil, "completion", "fish"); c.code != 2 {
		t.Errorf("completion fish: %d", c.code)
	}

	a := run(t, nil, "approve", "plan.json")
	if a.code != 2 || strings.Contains(a.stderr, "unknown command") || !strings.Contains(a.stderr, `Required flag "by"`) || a.stdout != "" {
		t.Errorf("approve without --by: %d\nstdout %q\nstderr %q", a.code, a.stdout, a.stderr)
	}
	d := run(t, nil, "snapshot", "--inventory", "x.yaml", "--timeout", "10")
	if d.code != 2 || !strings.Contains(d.stderr, "needs a unit: 10s") || d.stdout != "" || strings.Count(d.stderr, "\n") != 1 {
		t.Errorf("--timeout 10: %d\nstdout %q\nstderr %q", d.code, d.stdout, d.stderr)
	}
	u := run(t, nil, "nosuch")
	if u.code != 2 || !strings.Contains(u.stderr, `unknown command "nosuch"`) {
		t.Errorf("unknown command: %d %q", u.code, u.stderr)
	}
}
