package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"backfill/apply"
	"backfill/apply/plan"
	"backfill/internal/evidence"
	"backfill/internal/tenantdb"
)

func TestExecuteIsCommandLineOnly(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	// A variable left over in an operator's shell must not turn the dry
	// run into a write.
	t.Setenv("BACKFILL_EXECUTE", "true")
	res := f.apply(t)
	if res.code != 0 || !strings.Contains(res.stdout, "dry run") {
		t.Fatalf("exit %d\n%s", res.code, res.stdout)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "" {
		t.Fatalf("BACKFILL_EXECUTE wrote: %+v", s)
	}
	t.Setenv("BACKFILL_ALLOW_SELF_APPROVAL", "true")
	if res := runAt(t, nil, "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "ALICE"); res.code != 1 || !strings.Contains(res.stderr, "author") {
		t.Fatalf("self-approval through the environment or case: %d %s", res.code, res.stderr)
	}
}

func TestStrayArgumentsAreUsageErrors(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	for _, args := range [][]string{
		{"apply", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute", "false"},
	} {
		if res := runAt(t, f.env, args...); res.code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, res.code, res.stderr)
		}
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "" {
		t.Fatalf("a refused command wrote: %+v", s)
	}
}

func TestApplyAfterRollbackIsRefused(t *testing.T) {
	f := newAppliedFixture(t)
	if res := runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute"); res.code != 0 {
		t.Fatalf("rollback: %d %s", res.code, res.stdout)
	}
	res := f.apply(t, "--execute")
	if res.code != 1 || !strings.Contains(res.stderr, "rolled back") {
		t.Fatalf("apply after rollback: %d %s %s", res.code, res.stdout, res.stderr)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "" || s.writes != 2 {
		t.Fatalf("row after a refused re-apply: %+v", s)
	}
}

// A rollback that died after its COMMIT leaves only its committing entries;
// the plan must still be refused for a second write.
func TestApplyAfterCrashedRollbackIsRefused(t *testing.T) {
	f := newAppliedFixture(t)
	crashAfterCommit(t, f, evidence.OpRollback, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute")
	for _, args := range [][]string{nil, {"--execute"}} {
		res := f.apply(t, args...)
		if res.code != 1 || !strings.Contains(res.stderr, "rolled back") {
			t.Fatalf("apply %q after a crashed rollback: %d %s %s", args, res.code, res.stdout, res.stderr)
		}
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "" || s.writes != 2 {
		t.Fatalf("row after a refused re-apply: %+v", s)
	}
}

// newAppliedFixture is a plan fixture whose plan is approved and applied.
func newAppliedFixture(t *testing.T) *planFixture {
	t.Helper()
	f := newPlanFixture(t)
	f.planAndApprove(t)
	if res := f.apply(t, "--execute"); res.code != 0 {
		t.Fatalf("apply: %s", res.stdout)
	}
	return f
}

// applyPlanB makes, approves and applies a second plan over the fleet as it
// is now, by another author, and expects it to write the three agree rows.
func (f *planFixture) applyPlanB(t *testing.T) {
	t.Helper()
	if res := f.plan(t, "--out", "plan-b.json", "--report", "report-b.md", "--author", "carol"); res.code != 0 {
		t.Fatalf("plan B: %s", res.stderr)
	}
	if res := runAt(t, nil, "approve", "plan-b.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob"); res.code != 0 {
		t.Fatalf("approve B: %s", res.stderr)
	}
	if res := runAt(t, f.env, "apply", "--inventory", "inventory.yaml", "--plan", "plan-b.json", "--execute"); res.code != 0 || !strings.Contains(res.stdout, "applied 3") {
		t.Fatalf("apply B: %d %s", res.code, res.stdout)
	}
}

// crashAfterCommit runs a command that must commit, then puts the evidence
// store back as it was before and appends only the command's committing
// entries (op: apply or rollback): the journal a crash right after COMMIT
// leaves behind.
func crashAfterCommit(t *testing.T, f *planFixture, op string, args ...string) {
	t.Helper()
	p, err := plan.LoadPlan("plan.json")
	if err != nil {
		t.Fatal(err)
	}
	before := filepath.Join(t.TempDir(), "evidence.db")
	copyStore(t, "evidence.db", before)
	if res := runAt(t, f.env, args...); res.code != 0 {
		t.Fatalf("%q: %d %s", args, res.code, res.stdout)
	}
	committing := journalOutcomes(t, "evidence.db", p.Fingerprint, op, apply.Committing)
	if len(committing) == 0 {
		t.Fatalf("%q journaled no committing entry before its COMMIT", args)
	}
	for _, r := range committing {
		if e := r.(*evidence.Entry); e.Tx == nil || e.Tx.ID <= 0 || e.Tx.SystemID == "" {
			t.Fatalf("%q journaled a committing entry without its typed transaction: %+v", args, e)
		}
	}
	os.Remove("evidence.db-wal")
	os.Remove("evidence.db-shm")
	copyStore(t, before, "evidence.db")
	s, err := evidence.Open(context.Background(), "evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Append(context.Background(), committing...); err != nil {
		t.Fatal(err)
	}
}

// journalOutcomes returns the store's journal entries of one operation and
// outcome for a plan, ready to append elsewhere.
func journalOutcomes(t *testing.T, path, fingerprint, op, outcome string) []evidence.Record {
	t.Helper()
	s, err := evidence.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	entries, err := s.Journal(context.Background(), fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	var out []evidence.Record
	for _, e := range entries {
		if e.Operation == op && e.Outcome == outcome {
			e := e
			out = append(out, &e)
		}
	}
	return out
}

// A row whose status is NULL is never matched by the compare-and-swap; the
// dry run must say so rather than promise a write that execute skips.
func TestNullStatusRowDryRunMatchesExecute(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	execSQL(t, f.dsns["acme"], "UPDATE workspaces SET status = NULL WHERE id = $1", f.ids["seo-1"])
	for _, args := range [][]string{nil, {"--execute"}} {
		res := f.apply(t, args...)
		if res.code != 3 || !strings.Contains(res.stdout, "status is NULL") {
			t.Errorf("apply %q: exit %d\n%s", args, res.code, res.stdout)
		}
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "" || s.writes != 0 {
		t.Fatalf("a NULL-status row was written: %+v", s)
	}
}

// A rollback undoes its plan's writes once. Re-running it (as a failed
// commit tells the operator to) must not undo what a later plan wrote.
func TestRollbackRerunLeavesALaterPlansWrites(t *testing.T) {
	f := newAppliedFixture(t)
	rollback := func(plan string) result {
		return runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", plan, "--execute")
	}
	if res := rollback("plan.json"); res.code != 0 || !strings.Contains(res.stdout, "rolled-back 3") {
		t.Fatalf("rollback: %d %s", res.code, res.stdout)
	}
	f.applyPlanB(t)
	res := rollback("plan.json")
	if res.code != 0 || !strings.Contains(res.stdout, "3 of its writes were rolled back by an earlier run") {
		t.Fatalf("rollback re-run: %d %s %s", res.code, res.stdout, res.stderr)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "seo-agent" || s.writes != 3 {
		t.Fatalf("the re-run undid plan B's write: %+v", s)
	}
}

// The same when the first rollback died right after its COMMIT: its rows are
// empty, plan B writes them, and the re-run must leave B's writes alone.
func TestRollbackRerunAfterACrashLeavesALaterPlansWrites(t *testing.T) {
	f := newAppliedFixture(t)
	crashAfterCommit(t, f, evidence.OpRollback, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute")
	if s := f.row(t, "acme", "seo-1"); s.template != "" {
		t.Fatalf("rollback did not commit: %+v", s)
	}
	f.applyPlanB(t)
	res := runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute")
	if res.code != 0 || !strings.Contains(res.stdout, "3 written over by another plan since") {
		t.Fatalf("rollback re-run: %d %s %s", res.code, res.stdout, res.stderr)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "seo-agent" || s.writes != 3 {
		t.Fatalf("the re-run undid plan B's write: %+v", s)
	}
}

// An apply that died right after its COMMIT is finished by a re-run that
// finds its values; the plan must still never write those rows again.
func TestApplyNeverWritesARowTwiceAfterACrash(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	crashAfterCommit(t, f, evidence.OpApply, "apply", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute")
	if res := f.apply(t, "--execute"); res.code != 0 || !strings.Contains(res.stdout, "already-applied 3") {
		t.Fatalf("re-run: %d %s", res.code, res.stdout)
	}
	execSQL(t, f.dsns["acme"], "UPDATE workspaces SET template = '' WHERE id = $1", f.ids["seo-1"])
	if res := f.apply(t, "--execute"); res.code != 3 || !strings.Contains(res.stdout, "not written twice") {
		t.Fatalf("third run: %d %s", res.code, res.stdout)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "" || s.writes != 2 {
		t.Fatalf("written twice: %+v", s)
	}
}

// An apply that died right after its COMMIT, then a row emptied by hand
// before the re-run: the server says the transaction committed, so the
// plan does not write the row a second time.
func TestApplySettlesACrashAtCommitWithTheServer(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	crashAfterCommit(t, f, evidence.OpApply, "apply", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute")
	execSQL(t, f.dsns["acme"], "UPDATE workspaces SET template = '' WHERE id = $1", f.ids["seo-1"])
	res := f.apply(t, "--execute")
	if res.code != 3 || !strings.Contains(res.stdout, "not written twice") || !strings.Contains(res.stdout, "already-applied 2") {
		t.Fatalf("re-run: %d %s", res.code, res.stdout)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "" || s.writes != 2 {
		t.Fatalf("written twice: %+v", s)
	}
	p, _ := plan.LoadPlan("plan.json")
	if n := len(journalOutcomes(t, "evidence.db", p.Fingerprint, evidence.OpApply, apply.Committed)); n != 3 {
		t.Errorf("%d committed entries settle the crash, want 3", n)
	}
}

// An apply that died before its COMMIT: the server says its transaction
// rolled back, so the re-run writes the rows; one a person set meanwhile is
// not this plan's, and rollback leaves it alone.
func TestApplySettlesACrashBeforeCommitWithTheServer(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	forgeCommitting(t, f, evidence.OpApply, tenantTx(t, f.dsns["acme"], "rollback"))
	execSQL(t, f.dsns["acme"], "UPDATE workspaces SET template = 'seo-agent' WHERE id = $1", f.ids["seo-1"])
	for _, args := range [][]string{nil, {"--execute"}} {
		res := f.apply(t, args...)
		if res.code != 0 || !strings.Contains(res.stdout, "already-applied 1") {
			t.Fatalf("apply %q: %d %s", args, res.code, res.stdout)
		}
	}
	if s := f.row(t, "acme", "seo-2-restarted"); s.template != "seo-agent" || s.writes != 1 {
		t.Fatalf("unwritten row after the re-run: %+v", s)
	}
	res := runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute")
	if res.code != 0 || !strings.Contains(res.stdout, "rolled-back 2") {
		t.Fatalf("rollback: %d %s", res.code, res.stdout)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "seo-agent" || s.writes != 1 {
		t.Fatalf("rollback undid a person's value: %+v", s)
	}
}

// A store journaled before the journal had typed transaction columns names
// a crashed run's transaction only in the reason: apply still asks the
// server, learns it never committed, and writes the rows.
func TestApplySettlesALegacyCommittingEntry(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	forgeCommittingAs(t, f, evidence.OpApply, tenantTx(t, f.dsns["acme"], "rollback"), true)
	res := f.apply(t, "--execute")
	if res.code != 0 || !strings.Contains(res.stdout, "applied 3") {
		t.Fatalf("apply: %d %s", res.code, res.stdout)
	}
	p, _ := plan.LoadPlan("plan.json")
	if n := len(journalOutcomes(t, "evidence.db", p.Fingerprint, evidence.OpApply, apply.NotCommitted)); n != 3 {
		t.Errorf("%d not-committed entries settle the legacy entries, want 3", n)
	}
}

// A rollback that died right after its COMMIT, then a person sets a row
// back by hand: the server says the rollback committed, so its re-run
// leaves the person's value alone.
func TestRollbackSettlesACrashAtCommitWithTheServer(t *testing.T) {
	f := newAppliedFixture(t)
	crashAfterCommit(t, f, evidence.OpRollback, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute")
	execSQL(t, f.dsns["acme"], "UPDATE workspaces SET template = 'seo-agent' WHERE id = $1", f.ids["seo-1"])
	for _, args := range [][]string{nil, {"--execute"}} {
		res := runAt(t, f.env, append([]string{"rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--verbose"}, args...)...)
		if res.code != 0 || !strings.Contains(res.stdout, "already-rolled-back 3") || !strings.Contains(res.stdout, "committed; not touched") {
			t.Fatalf("rollback %q re-run: %d %s", args, res.code, res.stdout)
		}
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "seo-agent" || s.writes != 3 {
		t.Fatalf("the re-run undid a person's value: %+v", s)
	}
}

// Rollback straight after an apply that died before its COMMIT: the
// server says that apply never committed, so a value a person set since is
// not this plan's to undo.
func TestRollbackLeavesRowsAnUncommittedApplyNeverWrote(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	forgeCommitting(t, f, evidence.OpApply, tenantTx(t, f.dsns["acme"], "rollback"))
	execSQL(t, f.dsns["acme"], "UPDATE workspaces SET template = 'seo-agent' WHERE id = $1", f.ids["seo-1"])
	res := runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute")
	if res.code != 3 || strings.Count(res.stdout, "never committed; not touched") != 3 {
		t.Fatalf("rollback: %d %s", res.code, res.stdout)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "seo-agent" || s.writes != 1 {
		t.Fatalf("rollback undid a person's value: %+v", s)
	}
}

// When the server cannot say how an earlier run's transaction ended, apply
// does not write the row again and rollback does not touch it; a dry run
// says the same and records nothing.
func TestNeitherApplyNorRollbackGuessesAnUnsettledCommit(t *testing.T) {
	cases := []struct {
		name string
		tx   func(t *testing.T, f *planFixture) tenantdb.Tx
		want string
	}{
		{"still open", func(t *testing.T, f *planFixture) tenantdb.Tx { return tenantTx(t, f.dsns["acme"], "open") }, "is still open"},
		{"another server", func(t *testing.T, f *planFixture) tenantdb.Tx {
			x := tenantTx(t, f.dsns["acme"], "rollback")
			x.System++
			return x
		}, "on another server or timeline"},
		{"another timeline", func(t *testing.T, f *planFixture) tenantdb.Tx {
			x := tenantTx(t, f.dsns["acme"], "rollback")
			x.Timeline = "0000000F"
			return x
		}, "on another server or timeline"},
		{"never issued here", func(t *testing.T, f *planFixture) tenantdb.Tx {
			x := tenantTx(t, f.dsns["acme"], "rollback")
			x.ID += 1 << 20
			return x
		}, "unknown to this server"},
		{"not named", func(t *testing.T, f *planFixture) tenantdb.Tx { return tenantdb.Tx{} }, "does not name the transaction"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newPlanFixture(t)
			f.planAndApprove(t)
			forgeCommitting(t, f, evidence.OpApply, tc.tx(t, f))
			journal := journalLen(t)
			for _, args := range [][]string{{"apply"}, {"rollback"}} {
				dry := runAt(t, f.env, append(args, "--inventory", "inventory.yaml", "--plan", "plan.json")...)
				if dry.code != 3 || strings.Count(dry.stdout, tc.want) != 3 {
					t.Fatalf("%s dry run: %d %s", args[0], dry.code, dry.stdout)
				}
				if n := journalLen(t); n != journal {
					t.Fatalf("the %s dry run journaled %d entries", args[0], n-journal)
				}
			}
			// A person sets one row meanwhile: rollback must leave it too.
			execSQL(t, f.dsns["acme"], "UPDATE workspaces SET template = 'seo-agent' WHERE id = $1", f.ids["seo-2-restarted"])
			for _, args := range [][]string{{"apply"}, {"rollback"}} {
				res := runAt(t, f.env, append(args, "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute")...)
				if res.code != 3 || strings.Count(res.stdout, tc.want) < 2 {
					t.Fatalf("%s: %d %s", args[0], res.code, res.stdout)
				}
			}
			if s := f.row(t, "acme", "seo-1"); s.template != "" || s.writes != 0 {
				t.Fatalf("written on a guess: %+v", s)
			}
			if s := f.row(t, "acme", "seo-2-restarted"); s.template != "seo-agent" || s.writes != 1 {
				t.Fatalf("a person's value undone on a guess: %+v", s)
			}
		})
	}
}

// A rollback that died at a COMMIT the server cannot settle: whether the
// values now in the rows are the plan's or set since is unknown, so a
// re-run leaves them.
func TestRollbackNeverGuessesItsOwnUnsettledCommit(t *testing.T) {
	f := newAppliedFixture(t)
	x := tenantTx(t, f.dsns["acme"], "rollback")
	x.Timeline = "0000000F"
	forgeCommitting(t, f, evidence.OpRollback, x)
	res := runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute")
	if res.code != 3 || strings.Count(res.stdout, "on another server or timeline") != 3 {
		t.Fatalf("rollback: %d %s", res.code, res.stdout)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "seo-agent" || s.writes != 1 {
		t.Fatalf("undone on a guess: %+v", s)
	}
}

// journalLen counts the evidence store's journal entries.
func journalLen(t *testing.T) int {
	t.Helper()
	s, err := evidence.Open(context.Background(), "evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	entries, err := s.Journal(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// tenantTx starts a transaction on dsn that takes an id, ends it as end
// says ("commit", "rollback", or "open": left open until the test ends),
// and returns it.
func tenantTx(t testing.TB, dsn, end string) tenantdb.Tx {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	xid, err := tenantdb.TxID(ctx, tx)
	switch {
	case err != nil:
	case end == "commit":
		err = tx.Commit(ctx)
	case end == "rollback":
		err = tx.Rollback(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(ctx); conn.Close(ctx) })
	return xid
}

// forgeCommitting journals what an apply or rollback (op) that died just
// before COMMIT in transaction xid leaves: a committing entry for every
// agree row, whose rows it leaves as they are.
func forgeCommitting(t *testing.T, f *planFixture, op string, xid tenantdb.Tx) {
	t.Helper()
	forgeCommittingAs(t, f, op, xid, false)
}

// forgeCommittingAs is forgeCommitting; legacy journals the entries as
// backfill did before the journal had typed transaction columns, naming the
// transaction only in the reason.
func forgeCommittingAs(t *testing.T, f *planFixture, op string, xid tenantdb.Tx, legacy bool) {
	t.Helper()
	p, err := plan.LoadPlan("plan.json")
	if err != nil {
		t.Fatal(err)
	}
	var recs []evidence.Record
	for _, it := range p.Agreed() {
		before, after := "", it.Action.SetTemplate
		if op == evidence.OpRollback {
			before, after = after, before
		}
		e := &evidence.Entry{Fingerprint: p.Fingerprint, Operation: op, Operator: "crashed",
			Tenant: it.Tenant, WorkspaceID: it.WorkspaceID, Before: before, After: after, Outcome: apply.Committing,
			Reason: fmt.Sprintf("written, commit pending in transaction %d of system %d timeline %s", xid.ID, xid.System, xid.Timeline), At: planClock}
		if !legacy && xid != (tenantdb.Tx{}) {
			tl, err := strconv.ParseInt(xid.Timeline, 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			e.Tx = &evidence.TenantTx{ID: xid.ID, SystemID: strconv.FormatInt(xid.System, 10), Timeline: tl}
		}
		recs = append(recs, e)
	}
	s, err := evidence.Open(context.Background(), "evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
}

// Re-running a plan writes nothing twice, even over a row that was set back
// to empty after this plan wrote it; the dry run says the same.
func TestApplyNeverWritesARowTwice(t *testing.T) {
	f := newAppliedFixture(t)
	execSQL(t, f.dsns["acme"], "UPDATE workspaces SET template = '' WHERE id = $1", f.ids["seo-1"])
	for _, args := range [][]string{nil, {"--execute"}} {
		res := f.apply(t, args...)
		if res.code != 3 || !strings.Contains(res.stdout, "not written twice") || !strings.Contains(res.stdout, "already-applied 2") {
			t.Errorf("apply %q: exit %d\n%s", args, res.code, res.stdout)
		}
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "" || s.writes != 2 {
		t.Fatalf("written twice: %+v", s)
	}
}

// The dry run and --execute decide a row alike: one removed since the plan
// that already holds the planned value is already-applied in both.
func TestDryRunAgreesWithExecuteOnRemovedRows(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	execSQL(t, f.dsns["acme"], "UPDATE workspaces SET template = 'seo-agent', status = 'removed' WHERE id = $1", f.ids["seo-1"])
	execSQL(t, f.dsns["acme"], "UPDATE workspaces SET status = 'removed' WHERE id = $1", f.ids["seo-2-restarted"])
	var outs []string
	for _, args := range [][]string{nil, {"--execute"}} {
		res := f.apply(t, append([]string{"--verbose"}, args...)...)
		if res.code != 3 {
			t.Errorf("apply %q: exit %d\n%s", args, res.code, res.stdout)
		}
		var lines []string
		for _, l := range strings.Split(res.stdout, "\n") {
			if strings.HasPrefix(l, "not done") {
				break // the rows not done again, with their reasons
			}
			if strings.Contains(l, f.ids["seo-1"]) || strings.Contains(l, f.ids["seo-2-restarted"]) {
				lines = append(lines, strings.Fields(l)[0])
			}
		}
		outs = append(outs, strings.Join(lines, " "))
	}
	if outs[0] != "already-applied skipped-removed" || outs[1] != outs[0] {
		t.Fatalf("dry run %q, execute %q", outs[0], outs[1])
	}
}

func TestCPSourcePasswordNeverEchoed(t *testing.T) {
	f := newPlanFixture(t)
	t.Chdir(f.dir)
	for _, src := range []string{"host=cp-db password=kw-secret-771 dbname=cp", "postgres://cp:url-secret-552@127.0.0.1:1/cp?connect_timeout=1"} {
		res := runAt(t, f.env, "plan", "--inventory", "inventory.yaml", "--cp", src, "--cp-query", "SELECT 1", "--catalog", "catalog", "--out", "p.json")
		if res.code == 0 || strings.Contains(res.stdout+res.stderr, "secret-") {
			t.Errorf("--cp %q: exit %d, output %q", strings.Fields(src)[0], res.code, res.stderr)
		}
	}
	if _, err := os.Stat("p.json"); err == nil {
		t.Error("a failed plan wrote a plan file")
	}
}

func TestCanaryReadsBackOnlyWrittenRows(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	execSQL(t, f.dsns["acme"], "UPDATE workspaces SET template = 'someone-else' WHERE id = $1", f.ids["seo-1"])
	res := f.apply(t, "--execute", "--canary", "1")
	if res.code != 3 || strings.Contains(res.stdout, "mismatch") || strings.Count(res.stdout, "  ok ") != 1 {
		t.Fatalf("canary: %d\n%s", res.code, res.stdout)
	}
}

func TestApplyRefusesAnotherStoreEvenWithAnApproval(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	p, err := plan.LoadPlan("plan.json")
	if err != nil {
		t.Fatal(err)
	}
	// Another store, holding an approval of this very fingerprint but not
	// the evidence the plan was made from.
	os.Rename("evidence.db", "evidence.orig")
	os.Remove("evidence.db-wal")
	os.Remove("evidence.db-shm")
	other, err := evidence.Open(context.Background(), "evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	err = other.Append(context.Background(), &evidence.Approval{Fingerprint: p.Fingerprint, By: "mallory", PlanAuthor: p.Author, At: planClock,
		CheckedCatalogSHA256: p.Inputs.Catalog.SHA256, CheckedCPSHA256: p.Inputs.CP.SHA256})
	other.Close()
	if err != nil {
		t.Fatal(err)
	}
	res := f.apply(t, "--execute")
	if res.code != 1 || !strings.Contains(res.stderr, "other evidence") {
		t.Fatalf("exit %d: %s%s", res.code, res.stdout, res.stderr)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "" {
		t.Fatalf("written: %+v", s)
	}
}

// copyStore copies a closed evidence store, refusing one whose WAL still
// holds pages (they would be left behind).
func copyStore(t *testing.T, from, to string) {
	t.Helper()
	if fi, err := os.Stat(from + "-wal"); err == nil && fi.Size() > 0 {
		t.Fatalf("%s-wal holds %d bytes: the store is not closed", from, fi.Size())
	}
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
