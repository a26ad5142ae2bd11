package apply

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"backfill/internal/evidence"
	"backfill/internal/tenantdb"
)

// Journal outcomes that settle an earlier run's committing entry, learnt
// from the tenant's server by a later run.
const (
	Committed    = "committed"     // the earlier run's transaction committed
	NotCommitted = "not-committed" // it rolled back: that run wrote nothing
)

// pendingReason is a committing entry's reason. It names the tenant
// transaction so that a later run can ask the server whether it committed.
func pendingReason(t tenantdb.Tx) string {
	return fmt.Sprintf("written, commit pending in transaction %d of system %d timeline %s", t.ID, t.System, t.Timeline)
}

// pendingTx reads the transaction back from a committing entry's reason;
// the zero Tx when it names none.
func pendingTx(reason string) tenantdb.Tx {
	var t tenantdb.Tx
	i := strings.LastIndex(reason, " transaction ")
	if i < 0 {
		return t
	}
	if _, err := fmt.Sscanf(reason[i:], " transaction %d of system %d timeline %s", &t.ID, &t.System, &t.Timeline); err != nil {
		return tenantdb.Tx{}
	}
	return t
}

// settler asks one tenant's server how earlier runs' transactions ended,
// once per transaction, and collects what it learns as journal entries.
type settler struct {
	o      Options
	tx     pgx.Tx
	tenant string
	status map[tenantdb.Tx]string
	facts  []evidence.Record
}

func newSettler(o Options, tx pgx.Tx, tenant string) *settler {
	return &settler{o: o, tx: tx, tenant: tenant, status: map[tenantdb.Tx]string{}}
}

// settle returns Committed or NotCommitted for an earlier run's committing
// entry of op on workspace id in transaction t, or, when the server cannot
// say, why not.
func (s *settler) settle(ctx context.Context, op, id string, t tenantdb.Tx) (string, error) {
	if t.ID <= 0 {
		return "the journal does not name the transaction of an earlier run that died at its COMMIT, so its outcome cannot be known", nil
	}
	st, ok := s.status[t]
	if !ok {
		var err error
		if st, err = tenantdb.TxStatus(ctx, s.tx, t); err != nil {
			return "", fmt.Errorf("status of transaction %d: %s", t.ID, s.o.redact(err))
		}
		s.status[t] = st
	}
	var outcome, reason string
	switch st {
	case "committed":
		outcome, reason = Committed, fmt.Sprintf("transaction %d of an earlier run committed", t.ID)
	case "aborted":
		outcome, reason = NotCommitted, fmt.Sprintf("transaction %d of an earlier run rolled back", t.ID)
	case "in progress", tenantdb.TxOpenOrUnknown:
		return fmt.Sprintf("transaction %d of an earlier run is still open, or unknown to this server: re-run once it has ended", t.ID), nil
	case tenantdb.TxOtherServer:
		return fmt.Sprintf("transaction %d of an earlier run was on another server or timeline than the one this DSN reaches now (a failover or restore?), so its outcome cannot be known", t.ID), nil
	case tenantdb.TxStandby:
		return fmt.Sprintf("this DSN reaches a standby, which cannot say whether transaction %d of an earlier run committed", t.ID), nil
	default:
		return fmt.Sprintf("the outcome of transaction %d of an earlier run is no longer kept by the server", t.ID), nil
	}
	s.facts = append(s.facts, s.o.entry(op, Result{Tenant: s.tenant, WorkspaceID: id, Outcome: outcome, Reason: reason}))
	return outcome, nil
}
