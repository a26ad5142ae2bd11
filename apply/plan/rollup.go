package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
)

// RollupRow counts a plan's writes of one template in one tenant: what a
// reviewer signs off on, at a size a person can read.
type RollupRow struct {
	Tenant   string `json:"tenant"`
	Template string `json:"template"`
	Writes   int    `json:"writes"`
}

// Rollup returns the plan's writes counted by tenant and template, sorted.
func (p *Plan) Rollup() []RollupRow {
	n := map[[2]string]int{}
	for i := range p.Items {
		if a := p.Items[i].Action; a != nil {
			n[[2]string{p.Items[i].Tenant, a.SetTemplate}]++
		}
	}
	return rollupRows(n)
}

// rollupRows sorts writes counted by tenant and template into rows.
func rollupRows(n map[[2]string]int) []RollupRow {
	out := make([]RollupRow, 0, len(n))
	for k, c := range n {
		out = append(out, RollupRow{Tenant: k[0], Template: k[1], Writes: c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].Template < out[j].Template
	})
	return out
}

// RollupDigest is "sha256:" over the rollup's JSON encoding: an approval
// records it beside the number of writes, so what the approver was shown
// is named in the store.
func RollupDigest(rows []RollupRow) string {
	if rows == nil {
		rows = []RollupRow{}
	}
	b, _ := json.Marshal(rows) // strings and ints always marshal
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
