package tenantdb

import (
	"context"
	"errors"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

// Transient reports whether err may pass on a quick retry: a dropped or
// refused connection, a server shutting down or out of connections. A
// server's refusal of the request itself (bad password, missing table,
// permission denied, no such database), a malformed DSN, and a timeout are
// not: a host that used its whole timeout would hold a caller's slot as long
// again on each retry.
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
		if len(pe.Code) < 2 {
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
	var parse *pgconn.ParseConfigError
	return !errors.As(err, &parse) && !errors.Is(err, ErrInvalidDSN)
}
