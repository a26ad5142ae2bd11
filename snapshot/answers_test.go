package snapshot

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"backfill/internal/evidence"
)

// logSignal is a slog handler that closes a channel the first time a
// message starting with its prefix is logged.
type logSignal struct {
	prefix string
	once   *sync.Once
	ch     chan struct{}
}

func newLogSignal(prefix string) logSignal {
	return logSignal{prefix: prefix, once: &sync.Once{}, ch: make(chan struct{})}
}

func (h logSignal) Enabled(context.Context, slog.Level) bool { return true }
func (h logSignal) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.prefix) {
		h.once.Do(func() { close(h.ch) })
	}
	return nil
}
func (h logSignal) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h logSignal) WithGroup(string) slog.Handler      { return h }

// arrivals closes a channel per workspace id when its request arrives.
type arrivals struct {
	mu   sync.Mutex
	seen map[string]chan struct{}
}

func (a *arrivals) of(id string) chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seen == nil {
		a.seen = map[string]chan struct{}{}
	}
	if a.seen[id] == nil {
		a.seen[id] = make(chan struct{})
	}
	return a.seen[id]
}

func (a *arrivals) arrived(id string) {
	ch := a.of(id)
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// wait waits for ch, or for the request to be given up (the test then
// fails on what the run recorded, rather than hanging in Close).
func wait(r *http.Request, ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-r.Context().Done():
		return false
	}
}

// workspaceOf is the workspace id a /configs/{id}/config.yaml request names.
func workspaceOf(r *http.Request) string {
	return strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/configs/"), "/config.yaml")
}

// httpThenVolume is the inventory of one tenant whose chain is a config
// server, then a volume.
func httpThenVolume(dsn, url, root string) string {
	return fmt.Sprintf(`version: 1
tenants:
  - name: t
    dsn: %q
    collectors:
      - http: {url: "%s/configs/{workspace_id}/config.yaml"}
      - file: "%s/{workspace_id}/config.yaml"
`, dsn, url, root)
}

// A config server answers 404 sooner than it sends a config: its first
// answers reaching the threshold as 404s while a config is in flight do
// not leave it out; the answer in flight is waited for, shows it reaches
// the tenant, and every workspace it holds is captured through it.
func TestA404ThresholdWaitsForTheAnswersInFlight(t *testing.T) {
	dsn, ids := tenantWith(t, 44, 5)
	empty := configTree(t, nil)
	waiting := newLogSignal("collector's first answers were all 404")
	var a arrivals
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := workspaceOf(r)
		a.arrived(id)
		switch id {
		case ids[0], ids[1]:
			wait(r, a.of(ids[2])) // so that it is in flight
			http.NotFound(w, r)
		case ids[2]:
			select { // in flight when the 404s reach the threshold
			case <-waiting.ch:
			case <-r.Context().Done():
				return
			}
			w.Write([]byte("name: x\n"))
		default: // in flight too, so that no config verifies it first
			if !wait(r, waiting.ch) {
				return
			}
			w.Write([]byte("name: x\n"))
		}
	}))
	t.Cleanup(srv.Close)
	inv := httpThenVolume(dsn, srv.URL, empty)
	sum, _ := runSnapshot(t, inv, Options{Concurrency: 3, MisconfiguredAfter: 2, Logger: slog.New(waiting)})
	if sum.Captured != 3 || len(sum.CollectorsLeftOut) != 0 || len(sum.TenantsFailed) != 0 {
		t.Fatalf("summary: %+v", sum)
	}
}

// An answer begun after the 404s reached the threshold (so not waited
// for) that shows the collector reaches the tenant after it was left out
// puts it back: the summary no longer names it, and the 404s written when
// it was left out stay failed. (Those of workspaces still finishing their
// chain then are gone: a 404 of a collector shown to reach the tenant.)
func TestACollectorLeftOutIsPutBackByALaterAnswer(t *testing.T) {
	dsn, ids := tenantWith(t, 45, 5)
	empty := configTree(t, nil)
	leftOut := newLogSignal("collector left out")
	var a arrivals
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := workspaceOf(r)
		a.arrived(id)
		switch id {
		case ids[0]:
		case ids[1]:
			wait(r, a.of(ids[3])) // taken by ids[0]'s worker once its 404 is counted
		case ids[2], ids[3]:
			wait(r, a.of(ids[4])) // taken by ids[1]'s worker once the threshold is reached
		case ids[4]:
			if !wait(r, leftOut.ch) {
				return
			}
			w.Write([]byte("name: x\n"))
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	inv := httpThenVolume(dsn, srv.URL, empty)
	sum, store := runSnapshot(t, inv, Options{Concurrency: 3, MisconfiguredAfter: 2, Logger: slog.New(leftOut)})
	if sum.Captured != 1 || sum.Gone+sum.Failed != 4 || len(sum.CollectorsLeftOut) != 0 {
		t.Fatalf("summary: %+v", sum)
	}
	for _, c := range captures(t, store) {
		if (c.WorkspaceID == ids[0] || c.WorkspaceID == ids[1]) && c.Outcome == evidence.Gone {
			t.Errorf("capture %d (%s) recorded gone: %s", c.ID, c.Method, c.Reason)
		}
	}
}

// A chain cut short (the run interrupted while the files API rate limits)
// takes nothing as gone: the volume's "no such file" is not the last word
// while the chain's files API, which may hold the config, was never asked.
func TestAnInterruptedChainTakesNothingAsGone(t *testing.T) {
	dsn, ids := tenantWith(t, 46, 1)
	empty := configTree(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(cancel) // interrupted as the files API is asked
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"error":"rate limit exceeded"}`))
	}))
	t.Cleanup(srv.Close)
	inv := fmt.Sprintf(`version: 1
tenants:
  - name: t
    dsn: %q
    collectors:
      - file: "%s/{workspace_id}/config.yaml"
      - files_api: {base_url: %q, headers: {X-Molecule-Org-Id: %q}, rate: 1000}
`, dsn, empty, srv.URL, testOrg)
	o := withInventory(t, inv, Options{Concurrency: 1})
	sum, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Gone != 0 {
		t.Errorf("summary: %+v", sum)
	}
	for _, c := range captures(t, o.Store) {
		if c.WorkspaceID == ids[0] && (c.Outcome == evidence.Gone || !strings.Contains(c.Reason, "files_api not tried")) {
			t.Errorf("capture %d (%s): %s %q", c.ID, c.Method, c.Outcome, c.Reason)
		}
	}
}
