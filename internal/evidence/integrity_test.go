package evidence

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A BEFORE INSERT trigger that says RAISE(IGNORE) makes SQLite skip the row
// and report success; the store must notice and fail the append, naming the
// table.
func TestInsertDroppedByATriggerIsAnError(t *testing.T) {
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		table string
		rec   func() Record
	}{
		{"captures", func() Record { return capture("a", "w9", Gone, "") }},
		{"content", func() Record { return capture("a", "w9", Captured, "new bytes") }},
		{"listings", func() Record { return &Listing{Tenant: "a", At: at, Outcome: Listed} }},
		{"approvals", func() Record { return &Approval{Fingerprint: "sha256:ab", By: "bob", PlanAuthor: "alice", At: at} }},
		{"journal", func() Record {
			return &Entry{Fingerprint: "sha256:ab", Operation: OpApply, Operator: "op", Tenant: "a", WorkspaceID: "w1", Outcome: "applied", At: at}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.table, func(t *testing.T) {
			s := openTemp(t)
			ctx := context.Background()
			// Content already stored is not re-inserted: that is no drop.
			if err := s.Append(ctx, capture("a", "w1", Captured, "x")); err != nil {
				t.Fatal(err)
			}
			trigger := "drop_" + tc.table
			tamper(t, s.Path(), "CREATE TRIGGER "+trigger+" BEFORE INSERT ON "+tc.table+" BEGIN SELECT RAISE(IGNORE); END")
			if tc.table == "content" {
				if err := s.Append(ctx, capture("a", "w2", Captured, "x")); err != nil {
					t.Fatalf("capture of content already stored: %v", err)
				}
			}
			err := s.Append(ctx, tc.rec())
			if err == nil || !strings.Contains(err.Error(), "insert into "+tc.table+" was dropped") {
				t.Fatalf("append with %s in place: %v, want an error naming %s", trigger, err, tc.table)
			}
		})
	}
}
