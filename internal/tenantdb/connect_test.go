package tenantdb

import (
	"context"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"backfill/internal/pgtest"
)

// A server that keeps the first session waiting past the connect timeout
// (as one with a hundred sessions opening at once can) is tried again when
// ConnectAttempts allows, and not otherwise.
func TestConnectRetriesASessionThatNeverStarted(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(pgtest.NewTenantDB(t))
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(u.Query().Get("host"), ".s.PGSQL."+u.Query().Get("port"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if accepted.Add(1) <= 2 {
				// The first two sessions: accepted, never answered.
				t.Cleanup(func() { c.Close() })
				continue
			}
			go relay(c, socket)
		}
	}()
	dsn := "postgres://postgres@" + ln.Addr().String() + u.Path + "?sslmode=disable"
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

func relay(c net.Conn, socket string) {
	defer c.Close()
	s, err := net.Dial("unix", socket)
	if err != nil {
		return
	}
	defer s.Close()
	go io.Copy(s, c)
	io.Copy(c, s)
}
