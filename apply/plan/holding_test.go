package plan

import (
	"context"
	"testing"
)

// holding lets a tenant be read only while fewer than conc are held and,
// past the first, their rows fit the budget; a release lets the next one
// in, and a cancelled context stops the wait.
func TestHoldingBoundsTenantsAndRows(t *testing.T) {
	ctx := context.Background()
	h := newHolding(3, 100)
	if !h.acquire(ctx, 500) {
		t.Fatal("the first tenant is refused, however large")
	}
	h.settle(500, 60) // read: 60 rows, not the 500 estimated
	if !h.acquire(ctx, 30) {
		t.Fatal("a tenant that fits is refused")
	}
	blocked := func(rows int) bool {
		c, cancel := context.WithCancel(ctx)
		cancel()
		return !h.acquire(c, rows)
	}
	if !blocked(20) {
		t.Fatal("90 + 20 rows taken past a budget of 100")
	}
	got := make(chan bool)
	go func() { got <- h.acquire(ctx, 20) }()
	h.release(60)
	if !<-got {
		t.Fatal("the waiting tenant was not let in by a release")
	}
	if !h.acquire(ctx, 0) || !blocked(0) {
		t.Fatal("conc is not the bound on tenants held")
	}
}
