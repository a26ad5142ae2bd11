package apply

import (
	"context"
	"fmt"

	"backfill/apply/plan"

	"backfill/internal/inventory"
)

// gate checks, without opening any tenant connection, everything that must
// hold before apply --execute may write: the plan is approved and was not
// rolled back, the evidence store verifies, it is the store the plan was
// made from, every capture the plan cites is present with the same sha256,
// and every tenant to write is in the inventory. (That the plan is unedited
// was checked when it loaded.) h is the plan's history, already read.
func gate(ctx context.Context, o Options, h *history) error {
	p := o.Plan
	if err := checkApprovals(ctx, o); err != nil {
		return err
	}
	if err := h.refusal(p.Fingerprint); err != nil {
		return err
	}
	if err := verifyEvidence(ctx, o); err != nil {
		return err
	}
	keys, shas, err := o.Store.CaptureHashes(ctx)
	if err != nil {
		return err
	}
	for _, it := range p.Items {
		if it.Evidence == nil {
			continue
		}
		id := it.Evidence.CaptureID
		k, ok := keys[id]
		switch {
		case !ok:
			return &plan.Refusal{Reason: fmt.Sprintf("capture %d cited by %s is not in the evidence store", id, it.Key())}
		case k.Tenant != it.Tenant || k.WorkspaceID != it.WorkspaceID:
			return &plan.Refusal{Reason: fmt.Sprintf("capture %d cited by %s is a capture of %s/%s in the evidence store",
				id, it.Key(), k.Tenant, k.WorkspaceID)}
		case shas[id] != it.Evidence.SHA256:
			return &plan.Refusal{Reason: fmt.Sprintf("capture %d cited by %s does not match the evidence store (sha256 %s, plan says %s)",
				id, it.Key(), shas[id], it.Evidence.SHA256)}
		}
	}
	return checkTenants(o.Inventory, p.Agreed())
}

// verifyEvidence runs verify and checks the plan's chain head is in the store.
func verifyEvidence(ctx context.Context, o Options) error {
	rep, err := o.Store.Verify(ctx)
	if err != nil {
		return err
	}
	if !rep.OK() {
		return &plan.Refusal{Reason: fmt.Sprintf("the evidence store does not verify: %s", rep.Problems[0])}
	}
	if head := o.Plan.Inputs.Evidence.ChainHead; head != "" {
		ok, err := o.Store.HasCaptureHash(ctx, head)
		if err != nil {
			return err
		}
		if !ok {
			return &plan.Refusal{Reason: fmt.Sprintf("the plan was made from other evidence: its chain head %s is not in %s", head, o.Store.Path())}
		}
	}
	return nil
}

// checkTenants refuses items of a tenant the inventory does not name.
func checkTenants(inv *inventory.Inventory, items []plan.Item) error {
	for _, it := range items {
		if _, ok := inv.Tenant(it.Tenant); !ok {
			return &plan.Refusal{Reason: fmt.Sprintf("tenant %q has writes in the plan but is not in the inventory %s", it.Tenant, inv.Path)}
		}
	}
	return nil
}

// selected keeps the tenant groups the run is limited to.
func (o Options) selected(groups [][]plan.Item) [][]plan.Item {
	if len(o.Tenants) == 0 {
		return groups
	}
	return filterGroups(groups, o.Tenants)
}

// filterGroups keeps the groups whose tenant matches a pattern.
func filterGroups(groups [][]plan.Item, patterns []string) [][]plan.Item {
	var out [][]plan.Item
	for _, g := range groups {
		if inventory.MatchTenant(g[0].Tenant, patterns) {
			out = append(out, g)
		}
	}
	return out
}
