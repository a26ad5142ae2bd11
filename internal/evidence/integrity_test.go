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
			r, err := s.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(r.Problems, "\n"), `unexpected trigger "`+trigger+`"`) {
				t.Fatalf("verify does not name %s: %q", trigger, r.Problems)
			}
		})
	}
}

// verify compares the whole schema with the one the migrations make: any
// object added, removed or redefined behind backfill's back is named.
func TestVerifyChecksTheSchemaExactly(t *testing.T) {
	cases := []struct {
		name  string
		stmts []string
		want  string
	}{
		{"extra trigger", []string{"CREATE TRIGGER sneaky AFTER INSERT ON captures BEGIN SELECT 1; END"}, `unexpected trigger "sneaky" on "captures"`},
		{"discarding trigger", []string{"CREATE TRIGGER drop_journal BEFORE INSERT ON journal BEGIN SELECT RAISE(IGNORE); END"}, `unexpected trigger "drop_journal"`},
		{"view", []string{"CREATE VIEW v AS SELECT * FROM captures"}, `unexpected view "v"`},
		{"table", []string{"CREATE TABLE notes (x)"}, `unexpected table "notes"`},
		{"index", []string{"CREATE INDEX captures_by_hash ON captures (hash)"}, `unexpected index "captures_by_hash"`},
		{"missing index", []string{"DROP INDEX journal_plan"}, "index journal_plan is missing"},
		{"changed index", []string{"DROP INDEX journal_plan", "CREATE INDEX journal_plan ON journal (fingerprint)"}, "index journal_plan differs"},
		{"changed table", []string{"ALTER TABLE approvals ADD COLUMN note TEXT"}, "table approvals differs"},
		{"append-only trigger replaced", []string{"DROP TRIGGER journal_no_delete",
			"CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal BEGIN SELECT 1; END"}, "append-only trigger journal_no_delete was replaced"},
		{"content deleted", []string{"DROP TRIGGER content_no_delete", "DELETE FROM content"}, "capture 1 (tenant a, workspace w1): content "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openTemp(t)
			ctx := context.Background()
			if err := s.Append(ctx, capture("a", "w1", Captured, "x")); err != nil {
				t.Fatal(err)
			}
			if r, err := s.Verify(ctx); err != nil || !r.OK() {
				t.Fatalf("untouched store: %+v %v", r, err)
			}
			tamper(t, s.Path(), tc.stmts...)
			r, err := s.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(r.Problems, "\n"), tc.want) {
				t.Fatalf("problems = %q, want one containing %q", r.Problems, tc.want)
			}
		})
	}
}

// Every table the migrations make is append-only, and tableSince knows the
// version that made it, so verify and read-only opens of old stores cover
// tables added by later migrations too.
func TestEveryTableIsAppendOnlyAndVersioned(t *testing.T) {
	ctx := context.Background()
	appendOnly := map[string]bool{}
	for _, tb := range appendOnlyTables {
		appendOnly[tb] = true
	}
	seen := map[string]bool{}
	for v := 1; v <= len(migrations); v++ {
		m, err := expectedSchema(ctx, v)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range m {
			if o.Type != "table" || seen[o.Name] {
				continue
			}
			seen[o.Name] = true
			if !appendOnly[o.Name] {
				t.Errorf("table %s (version %d) is not in appendOnlyTables", o.Name, v)
			}
			if since := max(tableSince[o.Name], 1); since != v {
				t.Errorf("table %s: tableSince says version %d, made by %d", o.Name, since, v)
			}
			for _, op := range []string{"update", "delete"} {
				if _, ok := m["trigger "+o.Name+"_no_"+op]; !ok {
					t.Errorf("table %s has no %s trigger", o.Name, op)
				}
			}
		}
	}
	if len(seen) != len(appendOnlyTables) {
		t.Errorf("tables %v, appendOnlyTables %v", seen, appendOnlyTables)
	}
}
