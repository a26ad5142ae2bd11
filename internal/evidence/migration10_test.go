package evidence

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// Since schema 10 an approval records the digests of the catalog and CP
// records its approver checked the plan against. An approval recorded
// before reads with neither, and still verifies, read-only and migrated;
// a new one reads back with both, and the chain covers them.
func TestMigration10RecordsWhatAnApprovalChecked(t *testing.T) {
	ctx := context.Background()
	db, path := migratedTo(t, "v9.db", 9)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := appendTx(ctx, tx, &legacyApproval{Approval{Fingerprint: "sha256:0ld", By: "bob", PlanAuthor: "alice", At: oldAt, Writes: 2, RollupSHA256: "r"}}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	ro, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	as, err := ro.Approvals(ctx, "sha256:0ld")
	if err != nil || len(as) != 1 || as[0].CheckedCPSHA256 != "" || as[0].Writes != 2 {
		t.Fatalf("the v9 approval read-only: %+v %v", as, err)
	}
	if r, err := ro.Verify(ctx); err != nil || !r.OK() || r.Approvals != 1 {
		t.Fatalf("verify the v9 store read-only: %+v %v", r, err)
	}
	ro.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := &Approval{Fingerprint: "sha256:0ld", By: "carol", PlanAuthor: "alice", At: oldAt, Writes: 2, RollupSHA256: "r",
		CheckedCatalogSHA256: "sha256:cat", CheckedCPSHA256: "sha256:cp"}
	if err := s.Append(ctx, a); err != nil {
		t.Fatal(err)
	}
	as, err = s.Approvals(ctx, "sha256:0ld")
	if err != nil || len(as) != 2 || as[0].CheckedCatalogSHA256 != "" || as[0].CheckedCPSHA256 != "" ||
		as[1].CheckedCatalogSHA256 != "sha256:cat" || as[1].CheckedCPSHA256 != "sha256:cp" {
		t.Fatalf("approvals after migration: %+v %v", as, err)
	}
	if r, err := s.Verify(ctx); err != nil || !r.OK() || r.Approvals != 2 {
		t.Fatalf("verify: %+v %v", r, err)
	}
	for _, col := range []string{"checked_catalog_sha256", "checked_cp_sha256"} {
		for _, c := range []struct{ id, edit, undo string }{
			{"2", "'sha256:other'", fmt.Sprintf("(CASE '%s' WHEN 'checked_cp_sha256' THEN 'sha256:cp' ELSE 'sha256:cat' END)", col)},
			// The old approval given digests it never recorded.
			{"1", "'sha256:cp'", "NULL"},
		} {
			tamper(t, s.Path(), "DROP TRIGGER approvals_no_update",
				fmt.Sprintf("UPDATE approvals SET %s = %s WHERE id = %s", col, c.edit, c.id), triggerSQL("approvals", "UPDATE"))
			r, err := s.Verify(ctx)
			if err != nil || !strings.Contains(fmt.Sprint(r.Problems), "approval "+c.id) {
				t.Errorf("%s of approval %s edited: verify %+v %v", col, c.id, r, err)
			}
			tamper(t, s.Path(), "DROP TRIGGER approvals_no_update",
				fmt.Sprintf("UPDATE approvals SET %s = %s WHERE id = %s", col, c.undo, c.id), triggerSQL("approvals", "UPDATE"))
		}
	}
	if r, err := s.Verify(ctx); err != nil || !r.OK() {
		t.Fatalf("verify after the edits were undone: %+v %v", r, err)
	}
}
