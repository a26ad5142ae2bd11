package snapshot

import (
	"fmt"
	"testing"

	"backfill/internal/workspace"
)

func rows(n int, template string) []workspace.Row {
	var out []workspace.Row
	for i := 0; i < n; i++ {
		out = append(out, workspace.Row{ID: fmt.Sprint(i), Template: template})
	}
	return out
}

func TestSchedulerUrgentFirstButFair(t *testing.T) {
	s := newScheduler(2, 4)
	s.add(0, rows(10, ""))         // a tenant whose captures will hang
	s.add(1, rows(10, "template")) // a healthy tenant with no urgent work
	got := map[int]int{}
	for i := 0; i < 4; i++ {
		it, ok := s.next()
		if !ok {
			t.Fatal("no work")
		}
		got[it.tenant.index]++
	}
	// Nothing finishes: the hanging tenant holds only its share.
	if got[0] != 2 || got[1] != 2 {
		t.Fatalf("in flight per tenant = %v, want 2 and 2", got)
	}
	// Once the healthy tenant has nothing left, the other may use every worker.
	s2 := newScheduler(2, 4)
	s2.add(0, rows(10, ""))
	for i := 0; i < 4; i++ {
		if it, _ := s2.next(); it.tenant.index != 0 {
			t.Fatal("picked a tenant without work")
		}
	}
}

func TestSchedulerUrgentFirstWithinShare(t *testing.T) {
	s := newScheduler(2, 8)
	s.add(0, rows(3, "x"))
	s.add(1, rows(3, ""))
	for i := 0; i < 3; i++ {
		it, _ := s.next()
		if it.row.Template != "" {
			t.Fatalf("pick %d was not urgent", i)
		}
	}
	s.close()
	n := 0
	for {
		if _, ok := s.next(); !ok {
			break
		}
		n++
	}
	if n != 3 {
		t.Fatalf("%d left, want 3", n)
	}
}
