package cli

import (
	"bytes"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"backfill/internal/pgtest"
)

// Found by review: a tenant whose server (or a box on the way) stops
// answering after the session opened held apply --execute for ever, the
// store locked: statement_timeout and lock_timeout are the server's, and
// it never saw the statement. The session is now bounded on the client's
// side too: the stalled tenant fails, named, nothing of it written, and
// the others are applied.
func TestAStalledTenantServerDoesNotHoldApply(t *testing.T) {
	f := newPlanFixture(t)
	stalled := make(chan struct{})
	f.env["ACME_DSN"] = pgtest.Proxy(t, f.dsns["acme"], func(n int, client net.Conn, dial func() (net.Conn, error)) {
		server, err := dial()
		if err != nil {
			client.Close()
			return
		}
		defer server.Close()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				k, err := server.Read(buf)
				if err != nil {
					client.Close()
					return
				}
				client.Write(buf[:k])
			}
		}()
		buf := make([]byte, 32<<10)
		for {
			k, err := client.Read(buf)
			if err != nil {
				return
			}
			if bytes.Contains(buf[:k], []byte("UPDATE public.workspaces")) {
				// Swallow the compare-and-swap and all after it, holding
				// both sockets open, until apply gives up on them.
				close(stalled)
				for {
					if _, err := client.Read(buf); err != nil {
						return
					}
				}
			}
			server.Write(buf[:k])
		}
	})
	// Planned through the relay too: the plan records where the DSN leads.
	f.planAndApprove(t)
	done := make(chan result, 1)
	go func() {
		done <- runAt(t, f.env, "apply", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute", "--json",
			"--statement-timeout", "200ms", "--lock-timeout", "100ms")
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("apply --execute still waiting on the stalled tenant after 2 minutes")
	}
	select {
	case <-stalled:
	default:
		t.Fatal("the relay never saw the compare-and-swap")
	}
	var doc struct {
		Counts  map[string]int `json:"counts"`
		Tenants []struct {
			Tenant string `json:"tenant"`
			Error  string `json:"error"`
		} `json:"tenants"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil || res.code != 3 || doc.Counts["applied"] != 1 || doc.Counts["failed"] != 2 {
		t.Fatalf("apply: %d %v %+v\n%s%s", res.code, err, doc, res.stdout, res.stderr)
	}
	named := false
	for _, tr := range doc.Tenants {
		if tr.Tenant == "acme" {
			named = strings.Contains(tr.Error, "stopped answering")
		}
	}
	if !named {
		t.Errorf("acme's failure does not say its server stopped answering:\n%s", res.stdout)
	}
	for _, n := range agreed["acme"] {
		if s := f.row(t, "acme", n); s.template != "" {
			t.Errorf("acme/%s written: %+v", n, s)
		}
	}
	if s := f.row(t, "concierge", "org-concierge"); s.template == "" {
		t.Error("concierge not applied")
	}
}
