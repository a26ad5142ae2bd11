package plan

import (
	"context"
	"strings"
	"testing"
	"time"

	"backfill/internal/fixture"
)

// TestLoadKeptRefusesAnotherPlansBytes: the undo handle (a fingerprint)
// must load the plan it names; a store that keeps another plan's bytes
// under it (hashed again by whoever wrote it) is refused, not undone.
func TestLoadKeptRefusesAnotherPlansBytes(t *testing.T) {
	ctx := context.Background()
	s, _ := tempStore(t)
	p, err := ParsePlan(fixture.Plan(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := Keep(ctx, s, p, ""); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadKept(ctx, s, p.Fingerprint); err != nil || got.Fingerprint != p.Fingerprint {
		t.Fatalf("LoadKept of a kept plan: %v", err)
	}
	other := "sha256:" + strings.Repeat("e", 64)
	if err := s.PutPlanFrom(ctx, other, p.Author, time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC), p.Encode, ""); err != nil {
		t.Fatal(err)
	}
	_, err = LoadKept(ctx, s, other[:20])
	if err == nil || !strings.Contains(err.Error(), "holds the bytes of plan "+p.Fingerprint) {
		t.Fatalf("LoadKept of another plan's bytes: %v", err)
	}
}
