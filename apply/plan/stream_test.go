package plan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"backfill/internal/cp"
	"backfill/internal/inventory"
)

// A plan interrupted while a tenant's database has not answered returns
// only once that read has ended: no session of it outlives Stream (a
// library caller goes on living, unlike the CLI's process). The read ends
// within milliseconds of the cancel, so this guards the guarantee rather
// than catching a long leak.
func TestStreamLeavesNoTenantReadBehind(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A server that accepts and never answers, as one stuck would.
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	store, _ := tempStore(t)
	records, err := cp.Parse("cp.csv", []byte("tenant,workspace_id,template\n"))
	if err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("postgres://backfill@%s/tenant?sslmode=disable&connect_timeout=60", ln.Addr())
	inv := &inventory.Inventory{Path: "inventory.yaml", Tenants: []inventory.Tenant{{Name: "stuck", DSN: dsn}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := Build(ctx, BuildOptions{Inventory: inv, Store: store, CP: records, Catalog: loadCatalog(t)})
		done <- err
	}()
	var c net.Conn
	select {
	case c = <-accepted:
	case err := <-done:
		t.Fatalf("plan ended before its tenant was read: %v", err)
	}
	defer c.Close()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted plan: %v, want context.Canceled", err)
	}
	// The session was closed before Build returned: what it sent is there
	// to read, then the end of the stream, at once.
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("the tenant's session is still open after the plan returned: %v", err)
	}
}
