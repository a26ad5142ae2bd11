package inventory

import (
	"fmt"
	"path"
)

// MatchTenant reports whether tenant matches one of the glob patterns
// (path.Match: *, ?, [a-z]); a malformed pattern matches nothing (Select
// refuses one before a run).
func MatchTenant(tenant string, patterns []string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(p, tenant); err == nil && ok {
			return true
		}
	}
	return false
}

// CheckPatterns refuses a malformed glob pattern and one that matches no
// tenant of the inventory, so that a typo is an error rather than a run
// that silently does nothing.
func (inv *Inventory) CheckPatterns(patterns []string) error {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("%q: %v", p, err)
		}
		found := false
		for _, t := range inv.Tenants {
			found = found || MatchTenant(t.Name, []string{p})
		}
		if !found {
			return fmt.Errorf("%q matches no tenant in %s", p, inv.Path)
		}
	}
	return nil
}

// Select returns the inventory restricted to the tenants matching one of
// patterns (all of them when there are none). Its Digest stays the whole
// file's: a plan over part of the fleet still names the file it read.
func (inv *Inventory) Select(patterns []string) *Inventory {
	if len(patterns) == 0 {
		return inv
	}
	part := *inv
	part.Tenants = nil
	for _, t := range inv.Tenants {
		if MatchTenant(t.Name, patterns) {
			part.Tenants = append(part.Tenants, t)
		}
	}
	return &part
}
