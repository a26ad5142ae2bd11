package evidence

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"backfill/internal/source"
	"backfill/internal/workspace"
)

// v6Store writes a store as backfill did at schema version 6: a listing,
// captures of each outcome, an approval and a plan, through the record
// types, whose hashes migration 7 does not change.
func v6Store(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	db, path := migratedTo(t, "v6.db", 6)
	defer db.Close()
	live := capture("acme", "w1", Captured, "name: SEO Agent\n")
	live.Source = source.Container
	notLive := capture("acme", "w2", NotLive, "")
	notLive.Content, notLive.Source = []byte("name: SEO Agent\n"), source.TemplateDir
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = appendTx(ctx, tx,
		&legacyListing{Listing{Tenant: "acme", At: oldAt, Outcome: Listed, Rows: []workspace.Row{{ID: "w1"}, {ID: "w2"}}}},
		live, notLive, capture("acme", "w3", Gone, ""),
		&legacyApproval{Approval{Fingerprint: "sha256:0ld", By: "bob", PlanAuthor: "alice", At: oldAt}},
		&legacyPlan{plan{fingerprint: "sha256:0ld", author: "alice", createdAt: oldAt}, []byte("{}\n")})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return path
}

// A version 6 store verifies read-only as it is, migrates to version 7
// keeping every record and hash, verifies against the schema the
// migrations make on an empty database, and takes audits whose chain and
// sets verify.
func TestMigration7AddsAuditsAndAVersion6StoreStillVerifies(t *testing.T) {
	ctx := context.Background()
	path := v6Store(t)

	ro, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ro.Verify(ctx)
	if err != nil || !r.OK() || r.Captures != 3 || r.Listings != 1 || r.Approvals != 1 || r.Plans != 1 || r.Audits != 0 {
		t.Fatalf("verify the v6 store read-only: %+v %v", r, err)
	}
	head := r.ChainHead
	if as, n, err := ro.Audits(ctx, 10); err != nil || n != 0 || len(as) != 0 {
		t.Fatalf("audits of a v6 store: %v %d %v", as, n, err)
	}
	if seen, err := ro.LastSeen(ctx, []string{"acme"}); err != nil || len(seen) != 0 {
		t.Fatalf("last seen in a v6 store: %v %v", seen, err)
	}
	ro.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var v int
	// Open runs every later migration too.
	if err := s.DB().QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("user_version = %d %v, want %d", v, err, len(migrations))
	}
	r, err = s.Verify(ctx)
	if err != nil || !r.OK() || r.Captures != 3 || r.ChainHead != head {
		t.Fatalf("verify after migration: %+v %v (chain head was %s)", r, err, head)
	}

	ids := []string{"0e4c2a9e-7b1d-4c55-9a0e-2d6f8b1c4e77", "3f1c2a9e-7b1d-4c55-9a0e-2d6f8b1c4e77"}
	first := &Audit{At: oldAt, EndedAt: oldAt.Add(time.Second), Reason: "incomplete", TenantsFailed: 1,
		AuditCounts: AuditCounts{TemplateEmpty: 2, WithEvidence: 1, WithoutEvidence: 1, Appeared: 2, Captured: 1},
		Tenants: []AuditTenant{
			{Tenant: "acme", Outcome: AuditListed, AuditCounts: AuditCounts{TemplateEmpty: 2, WithEvidence: 1, WithoutEvidence: 1, Appeared: 2, Captured: 1}, SeenIDs: []string{ids[1], ids[0], ids[1]}},
			{Tenant: "down", Outcome: AuditUnreachable, Reason: "connection refused"},
		}}
	// An hour later: acme unchanged (its set is stored once), down listed.
	second := &Audit{At: oldAt.Add(time.Hour), EndedAt: oldAt.Add(time.Hour + time.Second), Reason: "complete", MaxEvidenceAge: 24 * time.Hour,
		Tenants: []AuditTenant{
			{Tenant: "acme", Outcome: AuditListed, SeenIDs: slices.Clone(ids)},
			{Tenant: "down", Outcome: AuditListed, SeenIDs: []string{}},
		}}
	if err := s.Append(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, second); err != nil {
		t.Fatal(err)
	}
	if first.Tenants[0].Seen == "" || first.Tenants[0].Seen != second.Tenants[0].Seen || first.Tenants[1].Seen != "" {
		t.Fatalf("sets: %+v %+v", first.Tenants, second.Tenants)
	}
	var sets, bytes int
	if err := s.DB().QueryRowContext(ctx, "SELECT count(*), sum(length(ids)) FROM audit_sets").Scan(&sets, &bytes); err != nil || sets != 2 || bytes != 1+2*16+1 {
		t.Fatalf("audit_sets: %d rows, %d bytes, %v; want 2 (acme's once, the empty one), 34 bytes", sets, bytes, err)
	}
	r, err = s.Verify(ctx)
	if err != nil || !r.OK() || r.Audits != 2 {
		t.Fatalf("verify with audits: %+v %v", r, err)
	}
	as, n, err := s.Audits(ctx, 1)
	if err != nil || n != 2 || len(as) != 1 || as[0].ID != 2 || as[0].MaxEvidenceAge != 24*time.Hour || len(as[0].Tenants) != 2 {
		t.Fatalf("latest audit: %+v %d %v", as, n, err)
	}
	all, _, err := s.Audits(ctx, 0)
	if err != nil || len(all) != 2 || all[1].AuditCounts != first.AuditCounts || all[1].Tenants[1].Reason != "connection refused" || all[1].TenantsFailed != 1 {
		t.Fatalf("every audit: %+v %v", all, err)
	}
	seen, err := s.LastSeen(ctx, []string{"acme", "down", "never"})
	if err != nil || len(seen) != 2 || seen["acme"].AuditID != 2 || len(seen["acme"].IDs) != 2 || !seen["acme"].IDs[ids[0]] ||
		seen["down"].AuditID != 2 || len(seen["down"].IDs) != 0 {
		t.Fatalf("last seen: %+v %v", seen, err)
	}
	for _, q := range []string{"UPDATE audits SET reason = 'complete' WHERE id = 1", "DELETE FROM audit_sets"} {
		if _, err := s.DB().ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want the append-only refusal", q, err)
		}
	}
}

// An unreachable tenant's audit says nothing of its workspaces: the set of
// the audit before it counts.
func TestLastSeenSkipsAuditsThatDidNotListTheTenant(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	for i, a := range []*Audit{
		{Tenants: []AuditTenant{{Tenant: "t", Outcome: AuditListed, SeenIDs: []string{"a"}}}},
		{Tenants: []AuditTenant{{Tenant: "t", Outcome: AuditStopped, SeenIDs: []string{"a", "b"}}}},
		{Tenants: []AuditTenant{{Tenant: "t", Outcome: AuditUnreachable}}},
		{Tenants: []AuditTenant{{Tenant: "t", Outcome: AuditNotListed}}},
	} {
		a.At, a.EndedAt = oldAt.Add(time.Duration(i)*time.Hour), oldAt.Add(time.Duration(i)*time.Hour)
		if err := s.Append(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	seen, err := s.LastSeen(ctx, []string{"t"})
	if err != nil || seen["t"] == nil || seen["t"].AuditID != 2 || len(seen["t"].IDs) != 2 || !seen["t"].IDs["b"] {
		t.Fatalf("last seen: %+v %v", seen["t"], err)
	}
}

func TestAuditSetEncoding(t *testing.T) {
	uuids := []string{"3f1c2a9e-7b1d-4c55-9a0e-2d6f8b1c4e77", "00000001-0000-4000-8000-000000000002", "3f1c2a9e-7b1d-4c55-9a0e-2d6f8b1c4e77"}
	for _, tc := range []struct {
		name string
		ids  []string
		kind byte
		size int
	}{
		{"uuids", uuids, setUUIDs, 1 + 2*16},
		{"empty", []string{}, setUUIDs, 1},
		{"upper-case uuid", []string{"3F1C2A9E-7B1D-4C55-9A0E-2D6F8B1C4E77"}, setText, 1 + 1 + 36},
		{"other ids", []string{"w2", "w1", "ws-\n"}, setText, 1 + 3 + 3 + 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, n := encodeSet(tc.ids)
			want := slices.Compact(slices.Sorted(slices.Values(tc.ids)))
			if b[0] != tc.kind || len(b) != tc.size || n != len(want) {
				t.Fatalf("encoding %d, %d bytes, count %d; want %d, %d, %d", b[0], len(b), n, tc.kind, tc.size, len(want))
			}
			got, err := decodeSet(b)
			if err != nil || !slices.Equal(got, want) && len(want) > 0 {
				t.Fatalf("decoded %q %v, want %q", got, err, want)
			}
			shuffled := slices.Clone(tc.ids)
			slices.Reverse(shuffled)
			if b2, _ := encodeSet(shuffled); string(b2) != string(b) {
				t.Fatal("the encoding depends on order: one set would hash two ways")
			}
		})
	}
	for _, bad := range [][]byte{nil, {setUUIDs, 1, 2}, {setText, 5, 'a'}, {9}} {
		if _, err := decodeSet(bad); err == nil {
			t.Errorf("decodeSet(%v) succeeded", bad)
		}
	}
}

// verify sees an audit altered, an audit set altered or missing, and the
// last audit deleted (its set then cited by none).
func TestVerifyCoversAudits(t *testing.T) {
	setup := func(t *testing.T) *Store {
		s := openTemp(t)
		for i, ids := range [][]string{{"a"}, {"a", "b"}} {
			a := &Audit{At: oldAt.Add(time.Duration(i) * time.Hour), EndedAt: oldAt.Add(time.Duration(i) * time.Hour), Reason: "complete",
				Tenants: []AuditTenant{{Tenant: "t", Outcome: AuditListed, SeenIDs: ids}}}
			if err := s.Append(context.Background(), a); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		stmts []string
		want  string
	}{
		{"counts", []string{"DROP TRIGGER audits_no_update", "UPDATE audits SET without_evidence = 5 WHERE id = 1", triggerSQL("audits", "UPDATE")}, "audit 1 (" + formatTime(oldAt) + "): record was altered"},
		{"detail", []string{"DROP TRIGGER audits_no_update", "UPDATE audits SET detail = replace(detail, 'listed', 'stopped') WHERE id = 2", triggerSQL("audits", "UPDATE")}, "audit 2"},
		{"set bytes", []string{"DROP TRIGGER audit_sets_no_update", "UPDATE audit_sets SET ids = X'0201620161' WHERE count = 2", triggerSQL("audit_sets", "UPDATE")}, "now hashes to"},
		{"set deleted", []string{"DROP TRIGGER audit_sets_no_delete", "DELETE FROM audit_sets WHERE count = 2", triggerSQL("audit_sets", "DELETE")}, "audit 2 (" + formatTime(oldAt.Add(time.Hour)) + "): tenant t's set"},
		{"last audit deleted", []string{"DROP TRIGGER audits_no_delete", "DELETE FROM audits WHERE id = 2", triggerSQL("audits", "DELETE")}, "is cited by no audit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := setup(t)
			tamper(t, s.Path(), tc.stmts...)
			r, err := s.Verify(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(fmt.Sprint(r.Problems), tc.want) {
				t.Fatalf("problems = %q, want one containing %q", r.Problems, tc.want)
			}
		})
	}
	// A set altered behind the store's back is never read as what was seen.
	s := setup(t)
	tamper(t, s.Path(), "DROP TRIGGER audit_sets_no_update", "UPDATE audit_sets SET ids = X'0201630162' WHERE count = 2", triggerSQL("audit_sets", "UPDATE"))
	if _, err := s.LastSeen(context.Background(), []string{"t"}); err == nil || !strings.Contains(err.Error(), "was altered") {
		t.Fatalf("last seen of an altered set: %v", err)
	}
}

// legacyPlan is a plan appended as backfill did before schema 9: its file's
// bytes kept as they are.
type legacyPlan struct {
	plan
	bytes []byte
}

func (p *legacyPlan) insert(ctx context.Context, tx *txn, id int64, prev string) (string, error) {
	pc := planCols{p.fingerprint, p.author, formatTime(p.createdAt), SHA256Hex(p.bytes), p.signature}
	h := pc.hash(id, prev)
	err := tx.insert(ctx, "plans", `INSERT INTO plans (id, fingerprint, author, created_at, bytes, signature, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)`,
		id, pc.fingerprint, pc.author, pc.createdAt, p.bytes, pc.signature, prev, h)
	return h, err
}

// legacyApproval is an approval appended as backfill did before schema 10:
// without the digests of what its approver checked.
type legacyApproval struct{ Approval }

func (a *legacyApproval) insert(ctx context.Context, tx *txn, id int64, prev string) (string, error) {
	ac := approvalCols{a.Fingerprint, a.By, a.PlanAuthor, formatTime(a.At),
		sql.NullInt64{Int64: int64(a.Writes), Valid: true},
		sql.NullString{String: a.RollupSHA256, Valid: true},
		sql.NullString{String: a.Signature, Valid: true}, sql.NullString{}, sql.NullString{}}
	h := ac.hash(id, prev)
	err := tx.insert(ctx, "approvals", `INSERT INTO approvals (id, fingerprint, approved_by, plan_author, at, writes, rollup_sha256, signature,
  prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)`,
		id, ac.fingerprint, ac.by, ac.author, ac.at, ac.writes, ac.rollup, ac.signature, prev, h)
	return h, err
}

// legacyListing is a listing appended as backfill did before schema 11:
// without the database it read.
type legacyListing struct{ Listing }

func (l *legacyListing) insert(ctx context.Context, tx *txn, id int64, prev string) (string, error) {
	lc := listingCols{tenant: l.Tenant, at: formatTime(l.At), outcome: l.Outcome, reason: l.Reason, rows: mustJSON(l.Rows)}
	h := lc.hash(id, prev)
	err := tx.insert(ctx, "listings", `INSERT INTO listings (id, tenant, at, outcome, reason, rows, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)`,
		id, lc.tenant, lc.at, lc.outcome, lc.reason, lc.rows, prev, h)
	return h, err
}
