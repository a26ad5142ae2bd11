package pgtest

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// Proxy accepts TCP connections on loopback for dsn's server and hands
// each, numbered from 1, to serve in a goroutine of its own, with a
// function that dials the server; serve owns both connections. It returns
// dsn (a URL) pointed at the proxy, its other parameters kept.
func Proxy(t testing.TB, dsn string, serve func(n int, client net.Conn, dial func() (net.Conn, error))) string {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	network, addr := "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		network, addr = "unix", fmt.Sprintf("%s/.s.PGSQL.%d", cfg.Host, cfg.Port)
	}
	dial := func() (net.Conn, error) { return net.Dial(network, addr) }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for n := 1; ; n++ {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(n, client, dial)
		}
	}()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Del("host")
	q.Del("port")
	u.Host, u.RawQuery = ln.Addr().String(), q.Encode()
	return u.String()
}

// Relay copies bytes both ways between client and server until either
// side ends, then closes both.
func Relay(client, server net.Conn) {
	done := make(chan struct{}, 2)
	go func() { io.Copy(server, client); done <- struct{}{} }()
	go func() { io.Copy(client, server); done <- struct{}{} }()
	<-done
	client.Close()
	server.Close()
	<-done
}

// FaultyProxy is a Proxy that relays every session to dsn's server but the
// first n, which it hands to fault instead (fault owns the connection): a
// restarting pooler closes them, a server too busy to answer holds them.
// It returns the DSN through the proxy and its session count.
func FaultyProxy(t testing.TB, dsn string, n int32, fault func(client net.Conn)) (string, *atomic.Int32) {
	t.Helper()
	sessions := &atomic.Int32{}
	proxied := Proxy(t, dsn, func(_ int, client net.Conn, dial func() (net.Conn, error)) {
		if sessions.Add(1) <= n {
			fault(client)
			return
		}
		server, err := dial()
		if err != nil {
			client.Close()
			return
		}
		Relay(client, server)
	})
	return proxied, sessions
}
