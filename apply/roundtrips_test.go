package apply_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"backfill/apply"
	"backfill/internal/inventory"
	"backfill/internal/pgtest"
	"backfill/internal/tenantdb"
)

// A tenant's write session costs a fixed number of round trips, whatever
// its number of rows: a remote tenant pays each one (50 ms and more), and
// apply runs hundreds of tenants at once. Counted through a relay, not
// timed: beyond what a session that runs one query costs (startup, however
// the server authenticates, the query, the goodbye), a write session adds
// three: BEGIN, the database's identity, and the batch of compare-and-swaps
// that also asks for the transaction id (with the one query's place taken
// by COMMIT). Each statement goes parsed, bound and run in one round trip,
// not prepared first.
func TestApplyTenantRoundTrips(t *testing.T) {
	t.Parallel()
	for _, per := range []int{1, 40} {
		f := newFleet(t, 1, per)
		proxied, turns := pgtest.TurnProxy(t, f.dsn["t0"])
		conn, err := pgx.Connect(context.Background(), proxied)
		if err != nil {
			t.Fatal(err)
		}
		var one int
		if err := conn.QueryRow(context.Background(), "SELECT 1", pgx.QueryExecModeSimpleProtocol).Scan(&one); err != nil {
			t.Fatal(err)
		}
		conn.Close(context.Background())

		inv := *f.inv
		inv.Tenants = []inventory.Tenant{{Name: "t0", DSN: proxied}}
		o := f.options(true)
		o.Inventory = &inv
		// The plan read t0 directly: where its DSN led is all that
		// differs through the relay.
		p := *o.Plan
		p.Databases = slices.Clone(p.Databases)
		for i := range p.Databases {
			p.Databases[i].Target = tenantdb.Target(proxied)
		}
		o.Plan = &p
		rep := f.apply(t, o)
		if rep.Counts[apply.Applied] != per {
			t.Fatalf("%d rows: counts %v", per, rep.Counts)
		}
		s := turns.Ended(t, 2)
		if len(s) != 2 || s[1]-s[0] != 3 {
			t.Fatalf("%d rows: round trips per session %v: the write session (second) should cost 3 more than one query's (first)", per, s)
		}
	}
}
