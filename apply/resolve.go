package apply

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"backfill/internal/evidence"
	"backfill/internal/tenantdb"
)

// Journal outcomes that settle an earlier run's committing entry, learnt
// from the tenant's server by a later run.
const (
	Committed    = evidence.Committed    // the earlier run's transaction committed
	NotCommitted = evidence.NotCommitted // it rolled back: that run wrote nothing
)

// pendingReason is a committing entry's reason: the transaction it is
// journaled with, for people to read.
func pendingReason(t tenantdb.Tx) string {
	return fmt.Sprintf("written, commit pending in transaction %d of system %d timeline %s", t.ID, t.System, t.Timeline)
}

// committing is op's journal entry for a row about to be committed in
// tenant transaction t: it names t so that a later run can ask the server
// whether it committed.
func committing(o Options, op string, r Result, t tenantdb.Tx) *evidence.Entry {
	e := o.entry(op, Result{Tenant: r.Tenant, WorkspaceID: r.WorkspaceID, Before: r.Before, After: r.After,
		Outcome: Committing, Reason: pendingReason(t)})
	tl, _ := strconv.ParseInt(t.Timeline, 16, 64) // checkTxID checked it
	e.Tx = &evidence.TenantTx{ID: t.ID, SystemID: strconv.FormatInt(t.System, 10), Timeline: tl}
	return e
}

// checkTxID passes on a transaction id read with tenantdb's TxID query,
// refusing one the journal could not name.
func checkTxID(t tenantdb.Tx, err error) (tenantdb.Tx, error) {
	if err != nil {
		return t, err
	}
	if _, err := strconv.ParseUint(t.Timeline, 16, 32); err != nil {
		return t, fmt.Errorf("timeline %q is not a WAL file name's", t.Timeline)
	}
	return t, nil
}

// serverTx is the transaction a journal entry names, as tenantdb asks the
// server about it.
func serverTx(t evidence.TenantTx) tenantdb.Tx {
	// A system identifier that does not parse (only by hand) is no server's:
	// TxStatus then says "other server".
	system, _ := strconv.ParseInt(t.SystemID, 10, 64)
	return tenantdb.Tx{ID: t.ID, System: system, Timeline: fmt.Sprintf("%08X", t.Timeline)}
}

// settler asks one tenant's server how earlier runs' transactions ended,
// once per transaction, and collects what it learns as journal entries.
type settler struct {
	o      Options
	tx     pgx.Tx
	tenant string
	status map[evidence.TenantTx]string
	facts  []evidence.Record
}

func newSettler(o Options, tx pgx.Tx, tenant string) *settler {
	return &settler{o: o, tx: tx, tenant: tenant, status: map[evidence.TenantTx]string{}}
}

// settle returns Committed or NotCommitted for an earlier run's committing
// entry of op on workspace id in transaction t, or, when the server cannot
// say, why not.
func (s *settler) settle(ctx context.Context, op, id string, t evidence.TenantTx) (string, error) {
	if t.ID <= 0 {
		return "the journal does not name the transaction of an earlier run that died at its COMMIT, so its outcome cannot be known", nil
	}
	st, ok := s.status[t]
	if !ok {
		var err error
		if st, err = tenantdb.TxStatus(ctx, s.tx, serverTx(t)); err != nil {
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
