package inventory

import (
	"strings"
	"testing"
)

func TestSelectAndCheckPatterns(t *testing.T) {
	t.Parallel()
	inv := &Inventory{Path: "inv.yaml", digest: "d", Tenants: []Tenant{{Name: "acme"}, {Name: "acme-eu"}, {Name: "globex"}}}
	names := func(inv *Inventory) string {
		var n []string
		for _, t := range inv.Tenants {
			n = append(n, t.Name)
		}
		return strings.Join(n, ",")
	}
	for _, c := range []struct {
		patterns []string
		want     string
		err      string
	}{
		{nil, "acme,acme-eu,globex", ""},
		{[]string{"acme*"}, "acme,acme-eu", ""},
		{[]string{"globex", "acme"}, "acme,globex", ""},
		{[]string{"acme", "initech"}, "", `"initech" matches no tenant in inv.yaml`},
		{[]string{"[a-"}, "", `"[a-": syntax error in pattern`},
	} {
		err := inv.CheckPatterns(c.patterns)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("%q: error %v, want %s", c.patterns, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.patterns, err)
		}
		got := inv.Select(c.patterns)
		if names(got) != c.want || got.Digest() != "d" {
			t.Errorf("%q: selected %s (digest %q), want %s and the whole file's digest", c.patterns, names(got), got.Digest(), c.want)
		}
	}
	if names(inv) != "acme,acme-eu,globex" {
		t.Errorf("Select changed the inventory it was called on: %s", names(inv))
	}
}
