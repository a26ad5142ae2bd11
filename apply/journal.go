package apply

import (
	"context"
	"fmt"
	"time"

	"backfill/apply/plan"

	"backfill/internal/evidence"
)

// history is the journal's meaning for one plan, as evidence.History reads
// it for apply, rollback and status alike.
type history struct{ *evidence.PlanHistory }

// loadHistory replays the whole journal: other plans' writes matter too.
func loadHistory(ctx context.Context, s *evidence.Store, fingerprint string) (*history, error) {
	h, err := s.History(ctx, fingerprint)
	if err != nil {
		return nil, err
	}
	return &history{h}, nil
}

// itemKey is the journal's key for an item's row.
func itemKey(it plan.Item) evidence.Key {
	return evidence.Key{Tenant: it.Tenant, WorkspaceID: it.WorkspaceID}
}

// refusal is why the plan may not write again, if it may not: a rollback of
// it wrote or tried to commit. Applying again would write rows a second
// time; a new plan shows the reviewer the fleet as it is now.
func (h *history) refusal(fingerprint string) error {
	if !h.Rollback {
		return nil
	}
	return &plan.Refusal{Reason: fmt.Sprintf("plan %s was rolled back (%s); make and approve a new plan to write again", fingerprint, h.RollbackAt.Format(time.RFC3339))}
}
