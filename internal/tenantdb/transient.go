package tenantdb

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Transient reports whether err may pass on a quick retry: a connection
// refused, reset or cut short, a unix socket missing while the server
// restarts, or a server shutting down or out of connections. Anything else
// is not: a server's refusal of the request itself (bad password, missing
// table, permission denied, no such database), a malformed DSN, a name that
// does not resolve, a TLS failure, and a timeout (a host that used its whole
// timeout would hold a caller's slot as long again on each retry; see
// ConnectTimedOut for the one a listing tries again).
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// 57014 is a statement cancelled: statement_timeout, or a cancel
		// request, a timeout like the ones above.
		if len(pe.Code) < 2 || pe.Code == "57014" {
			return false
		}
		switch pe.Code[:2] {
		case "08", // connection exception
			"40", // serialization failure, deadlock
			"53", // insufficient resources: too many connections, out of memory
			"57": // operator intervention: admin shutdown, cannot connect now
			return true
		}
		return false
	}
	for _, cut := range []error{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE, syscall.ENOENT, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, cut) {
			return true
		}
	}
	return false
}

// ConnectTimedOut reports whether err is a session that did not start in
// time: the server was not reached, or did not answer the startup, before
// the connect timeout. Nothing but the startup was sent, so trying again
// is safe, and unlike a timed-out statement it is worth it: a server
// opening a hundred sessions at once (tenant databases sharing one
// instance) keeps the last of them waiting, which a later try does not.
func ConnectTimedOut(err error) bool {
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		return false
	}
	// A DSN naming several hosts (or a name with several addresses) gets
	// one error joining each's: a server that answered with a refusal is
	// a refusal, whatever another host did.
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || errors.As(err, &ne) && ne.Timeout()
}

// Retryable reports whether a session or read-only listing that failed
// with err is worth trying again: a blip (Transient) or a session that
// never started (ConnectTimedOut). Connect's ConnectAttempts and snapshot's
// listing retries both ask it, so the two cannot drift apart.
func Retryable(err error) bool {
	return Transient(err) || ConnectTimedOut(err)
}
