package tenantdb

import (
	"context"
	"net"
	"testing"
	"time"

	"backfill/internal/pgtest"
)

// A server that keeps the first session waiting past the connect timeout
// (as one with a hundred sessions opening at once can) is tried again when
// ConnectAttempts allows, and not otherwise.
func TestConnectRetriesASessionThatNeverStarted(t *testing.T) {
	t.Parallel()
	// The first two sessions: accepted, never answered.
	dsn, accepted := pgtest.FaultyProxy(t, pgtest.NewTenantDB(t), 2, func(c net.Conn) { t.Cleanup(func() { c.Close() }) })
	ctx := context.Background()

	if _, err := Connect(ctx, dsn, Options{ConnectTimeout: 2 * time.Second}); err == nil {
		t.Fatal("one attempt connected through a server that never answered")
	}
	conn, err := Connect(ctx, dsn, Options{ConnectTimeout: 2 * time.Second, ConnectAttempts: 2})
	if err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	defer conn.Close(ctx)
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("session after a retry: %d, %v", one, err)
	}
	if n := accepted.Load(); n != 3 {
		t.Fatalf("%d sessions opened, want 3 (the single attempt's, then the retried call's two)", n)
	}
}
