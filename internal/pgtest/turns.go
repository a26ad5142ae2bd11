package pgtest

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Turns counts, per session through a TurnProxy, the client's turns: each
// time the client sends after the server last answered, or first. In a
// request-and-answer protocol that is the session's round trips, startup
// included, whatever the latency, so a test can pin them without timing
// anything.
type Turns struct {
	mu       sync.Mutex
	sessions []*turnCount
	ended    chan struct{} // one value as each session's relay ends
}

type turnCount struct {
	mu       sync.Mutex
	n        int
	answered bool // the server has sent since the client last did
}

// Ended waits until n more sessions have ended (both sides closed, every
// byte counted: a client's last message may still be in flight when its
// Close returns), then returns PerSession. It fails the test after 30 s.
func (t *Turns) Ended(tb testing.TB, n int) []int {
	tb.Helper()
	timeout := time.After(30 * time.Second)
	for range n {
		select {
		case <-t.ended:
		case <-timeout:
			tb.Fatalf("sessions still open after 30 s: %v so far", t.PerSession())
		}
	}
	return t.PerSession()
}

// PerSession returns each session's turns so far, in the order they
// connected.
func (t *Turns) PerSession() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]int, len(t.sessions))
	for i, s := range t.sessions {
		s.mu.Lock()
		out[i] = s.n
		s.mu.Unlock()
	}
	return out
}

// TurnProxy relays TCP connections on loopback to dsn's server (Proxy)
// and counts each session's turns. It returns a DSN for the same database
// through the proxy, and the counter.
func TurnProxy(t testing.TB, dsn string) (string, *Turns) {
	t.Helper()
	turns := &Turns{ended: make(chan struct{}, 1024)}
	proxied := Proxy(t, dsn, func(_ int, client net.Conn, dial func() (net.Conn, error)) {
		defer func() { turns.ended <- struct{}{} }()
		server, err := dial()
		if err != nil {
			client.Close()
			return
		}
		tc := &turnCount{answered: true}
		turns.mu.Lock()
		turns.sessions = append(turns.sessions, tc)
		turns.mu.Unlock()
		relayCounting(client, server, tc)
	})
	return proxied, turns
}

func relayCounting(client, server net.Conn, tc *turnCount) {
	done := make(chan struct{}, 2)
	copyMarking := func(dst, src net.Conn, fromClient bool) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				tc.mu.Lock()
				if fromClient && tc.answered {
					tc.n++
				}
				tc.answered = !fromClient
				tc.mu.Unlock()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go copyMarking(server, client, true)
	go copyMarking(client, server, false)
	<-done
	client.Close()
	server.Close()
	<-done
}
