package inventory

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"backfill/internal/collector"
	"backfill/internal/secret"
)

var errLineRE = regexp.MustCompile(`^fuzz\.yaml:[1-9][0-9]*: `)

// FuzzParse checks that Parse never panics, that every error is located and
// free of environment values, and that whatever it accepts honours the
// invariants the rest of backfill relies on. Seeds live in
// testdata/fuzz/FuzzParse and run with plain go test.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Parse("fuzz.yaml", data, getenv)
		if err != nil {
			if inv != nil {
				t.Fatal("Parse returned both an inventory and an error")
			}
			for _, l := range strings.Split(err.Error(), "\n") {
				if !errLineRE.MatchString(l) {
					t.Fatalf("error line without file and line: %q", l)
				}
			}
			for name, v := range testEnv {
				if len(v) >= 8 && strings.Contains(err.Error(), v) && !bytes.Contains(data, []byte(v)) {
					t.Fatalf("error leaks $%s: %v", name, err)
				}
			}
			return
		}
		if len(inv.Tenants) == 0 {
			t.Fatal("accepted an inventory without tenants")
		}
		seen := make(map[string]bool)
		for _, tn := range inv.Tenants {
			key := strings.ToLower(tn.Name)
			if seen[key] {
				t.Fatalf("duplicate tenant name %q accepted", tn.Name)
			}
			seen[key] = true
			if !validName(tn.Name) {
				t.Fatalf("invalid tenant name %q accepted", tn.Name)
			}
			if tn.DSN == "" || secret.RedactDSN(tn.DSN) == secret.UnparsableDSN {
				t.Fatalf("tenant %q: unusable DSN accepted", tn.Name)
			}
			if tn.Line < 1 {
				t.Fatalf("tenant %q: line %d", tn.Name, tn.Line)
			}
			checkCollector(t, tn.Name, tn.Collector)
			checkCollector(t, tn.Name, tn.Raw)
			if tn.Raw.Method != tn.Collector.Method {
				t.Fatalf("tenant %q: raw method %q, effective %q", tn.Name, tn.Raw.Method, tn.Collector.Method)
			}
		}
		secrets := inv.Secrets()
		for _, s := range secrets {
			if s == "" {
				t.Fatal("Secrets() holds an empty string")
			}
		}
	})
}

// checkCollector asserts that exactly one method's fields are set.
func checkCollector(t *testing.T, tenant string, c collector.Spec) {
	t.Helper()
	exec := len(c.Argv) > 0
	http := c.URL != ""
	file := c.Path != ""
	n := 0
	for _, b := range []bool{exec, http, file} {
		if b {
			n++
		}
	}
	ok := n == 1 && (c.Method == "exec" && exec || c.Method == "http" && http || c.Method == "file" && file)
	if !http && (c.Headers != nil || c.JSONField != "") {
		ok = false
	}
	if exec && c.Argv[0] == "" {
		ok = false
	}
	if !ok {
		t.Fatalf("tenant %q: collector does not have exactly one method: %+v", tenant, c)
	}
}
