package evidence

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
)

// Since schema 9 a plan is kept deflated: a plan kept before loads as it
// was written, a new one reads back byte for byte at a fraction of its size,
// putting either again is a no-op and other bytes are refused, and verify
// finds a plan whose encoding or size was edited.
func TestMigration9KeepsPlansDeflated(t *testing.T) {
	ctx := context.Background()
	path := v6Store(t)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs, err := s.Plans(ctx)
	if err != nil || len(recs) != 1 || recs[0].Size != 3 {
		t.Fatalf("plans after migration: %+v %v", recs, err)
	}
	if err := s.PutPlan(ctx, "sha256:0ld", "alice", oldAt, []byte("{}\n"), ""); err != nil {
		t.Errorf("putting the plan kept before schema 9 again: %v", err)
	}
	if err := s.PutPlan(ctx, "sha256:0ld", "alice", oldAt, []byte("{ }\n"), ""); err == nil || !strings.Contains(err.Error(), "other bytes") {
		t.Errorf("other bytes under a kept fingerprint: %v", err)
	}

	var big bytes.Buffer
	big.WriteString("{\n  \"items\": [\n")
	for i := range 20000 {
		fmt.Fprintf(&big, "    {\"tenant\": \"acme\", \"workspace_id\": \"%08d-0000-4000-8000-000000000000\", \"verdict\": \"agree\"},\n", i)
	}
	big.WriteString("  ]\n}\n")
	fp := "sha256:" + strings.Repeat("cd", 32)
	if err := s.PutPlan(ctx, fp, "alice", oldAt, big.Bytes(), ""); err != nil {
		t.Fatal(err)
	}
	var stored int
	var encoding string
	if err := s.DB().QueryRowContext(ctx, "SELECT length(bytes), encoding FROM plans WHERE fingerprint = ?", fp).Scan(&stored, &encoding); err != nil {
		t.Fatal(err)
	}
	if encoding != planDeflate || stored*5 > big.Len() {
		t.Errorf("kept as %q in %d bytes for a plan of %d", encoding, stored, big.Len())
	}
	if _, b, err := s.PlanBytes(ctx, fp); err != nil || !bytes.Equal(b, big.Bytes()) {
		t.Fatalf("the deflated plan does not read back: %v", err)
	}
	if err := s.PutPlan(ctx, fp, "alice", oldAt, big.Bytes(), ""); err != nil {
		t.Errorf("putting the same plan again: %v", err)
	}
	if r, err := s.Verify(ctx); err != nil || !r.OK() || r.Plans != 2 {
		t.Fatalf("verify: %+v %v", r, err)
	}

	for _, c := range []struct{ edit, want, undo string }{
		{"UPDATE plans SET encoding = '' WHERE id = 2", "record was altered", "UPDATE plans SET encoding = 'deflate' WHERE id = 2"},
		{"UPDATE plans SET size = size + 1 WHERE id = 2", "its size says", "UPDATE plans SET size = size - 1 WHERE id = 2"},
		{"UPDATE plans SET size = size - 1 WHERE id = 2", "its size says", "UPDATE plans SET size = size + 1 WHERE id = 2"},
		{"UPDATE plans SET encoding = 'zstd' WHERE id = 2", "unknown encoding", "UPDATE plans SET encoding = 'deflate' WHERE id = 2"},
		// Bytes after the deflate stream would be hidden from every hash.
		{"UPDATE plans SET bytes = CAST(bytes || X'0000' AS BLOB) WHERE id = 2", "2 bytes follow its deflate stream",
			"UPDATE plans SET bytes = substr(bytes, 1, length(bytes) - 2) WHERE id = 2"},
	} {
		tamper(t, s.Path(), "DROP TRIGGER plans_no_update", c.edit, triggerSQL("plans", "UPDATE"))
		r, err := s.Verify(ctx)
		if err != nil || !strings.Contains(fmt.Sprint(r.Problems), c.want) {
			t.Errorf("%s: verify %+v %v, want %q", c.edit, r, err, c.want)
		}
		if _, _, err := s.PlanBytes(ctx, fp); err == nil {
			t.Errorf("%s: PlanBytes read it", c.edit)
		}
		tamper(t, s.Path(), "DROP TRIGGER plans_no_update", c.undo, triggerSQL("plans", "UPDATE"))
	}
	if r, err := s.Verify(ctx); err != nil || !r.OK() {
		t.Fatalf("verify after undoing the edits: %+v %v", r, err)
	}
}
