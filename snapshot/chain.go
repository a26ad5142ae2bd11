package snapshot

import (
	"fmt"
	"net/http"

	"backfill/internal/collector"
	"backfill/internal/inventory"
	"backfill/internal/placeholder"
	"backfill/internal/workspace"
)

// Chain builds a tenant's collector chain from the inventory, exactly as a
// snapshot run uses it: the tenant's collectors (or the defaults'), in
// order, each with maxBytes as its size cap and client for HTTP (nil: the
// collector's default). preflight reads its sample through it, so what it
// checks is what the snapshot will run. Errors name the inventory line and
// the tenant, never an expanded value.
func Chain(inv *inventory.Inventory, t inventory.Tenant, maxBytes int64, client *http.Client) ([]*collector.Collector, error) {
	if inv.DatabasesOnly() {
		// A programming error: such an inventory was read without its
		// collectors, so there is nothing to build.
		return nil, fmt.Errorf("%s: tenant %q: the inventory was loaded without its collectors", inv.Path, t.Name)
	}
	exp, raw := t.Collectors()
	chain := make([]*collector.Collector, 0, len(exp))
	for i := range exp {
		c, err := collector.New(exp[i], raw[i], maxBytes, client)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: tenant %q: %v", inv.Path, t.Line, t.Name, err)
		}
		chain = append(chain, c)
	}
	return chain, nil
}

// ChainRate is a chain's requests per second: the lowest its collectors
// ask for, 0 when none has a rate. The snapshot holds the whole tenant to
// it, whichever collector of the chain is running.
func ChainRate(chain []*collector.Collector) float64 {
	rate := 0.0
	for _, c := range chain {
		if r := c.Rate(); r > 0 && (rate == 0 || r < rate) {
			rate = r
		}
	}
	return rate
}

// Values are the placeholder values a tenant's collectors get for one
// workspace row.
func Values(tenant string, r workspace.Row) placeholder.Values {
	return placeholder.Values{Tenant: tenant, WorkspaceID: r.ID, InstanceID: r.Instance(), Status: r.Status, Name: r.Name}
}
