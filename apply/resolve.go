package apply

import (
	"context"
	"fmt"
	"strconv"
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
func pendingReason(xid int64) string {
	return fmt.Sprintf("written, commit pending in transaction %d", xid)
}

// pendingTx reads the transaction id back from a committing entry's reason;
// 0 when it names none.
func pendingTx(reason string) int64 {
	i := strings.LastIndex(reason, " transaction ")
	if i < 0 {
		return 0
	}
	xid, err := strconv.ParseInt(reason[i+len(" transaction "):], 10, 64)
	if err != nil {
		return 0
	}
	return xid
}

// settler asks one tenant's server how earlier runs' transactions ended,
// once per transaction, and collects what it learns as journal entries.
type settler struct {
	o      Options
	tx     pgx.Tx
	tenant string
	status map[int64]string
	facts  []evidence.Record
}

func newSettler(o Options, tx pgx.Tx, tenant string) *settler {
	return &settler{o: o, tx: tx, tenant: tenant, status: map[int64]string{}}
}

// settle returns Committed or NotCommitted for an earlier run's committing
// entry of op on workspace id in transaction xid, or, when the server
// cannot say, why not.
func (s *settler) settle(ctx context.Context, op, id string, xid int64) (string, error) {
	st, ok := s.status[xid]
	if !ok && xid > 0 {
		var err error
		if st, err = tenantdb.TxStatus(ctx, s.tx, xid); err != nil {
			return "", fmt.Errorf("status of transaction %d: %s", xid, s.o.redact(err))
		}
		s.status[xid] = st
	}
	var outcome, reason string
	switch st {
	case "committed":
		outcome, reason = Committed, fmt.Sprintf("transaction %d of an earlier run committed", xid)
	case "aborted":
		outcome, reason = NotCommitted, fmt.Sprintf("transaction %d of an earlier run rolled back", xid)
	case "in progress":
		return fmt.Sprintf("transaction %d of an earlier run is still open: re-run once it has ended", xid), nil
	default:
		return fmt.Sprintf("the outcome of transaction %d of an earlier run is no longer known: make a new plan for this row", xid), nil
	}
	s.facts = append(s.facts, s.o.entry(op, Result{Tenant: s.tenant, WorkspaceID: id, Outcome: outcome, Reason: reason}))
	return outcome, nil
}
