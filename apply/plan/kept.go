package plan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"time"

	"backfill/internal/evidence"
	"backfill/internal/inputfile"
)

// Keep stores the plan's canonical bytes in the evidence store, so that the
// plan (and with it the handle of its undo) outlives any file. signature is
// its author's (see SignPlan), or "".
func Keep(ctx context.Context, s *evidence.Store, p *Plan, signature string) error {
	return KeepWith(ctx, s, p, p.Encode, signature)
}

// KeepWith is Keep of the canonical form encode writes (Writer.Encode's),
// which the store hashes and deflates as it comes.
func KeepWith(ctx context.Context, s *evidence.Store, p *Plan, encode func(io.Writer) error, signature string) error {
	at, err := time.Parse(time.RFC3339, p.CreatedAt)
	if err != nil {
		return fmt.Errorf("plan created_at %q: %w", p.CreatedAt, err)
	}
	return s.PutPlanFrom(ctx, p.Fingerprint, p.Author, at, encode, signature)
}

// LoadKept loads a plan kept in the store by its fingerprint or a prefix of
// it (at least 8 hex digits), with every check LoadPlan makes.
func LoadKept(ctx context.Context, s *evidence.Store, prefix string) (*Plan, error) {
	fp, b, err := s.PlanBytes(ctx, prefix)
	if err != nil {
		return nil, err
	}
	p, err := ParsePlan(b)
	if err != nil {
		return nil, fmt.Errorf("plan %s kept in %s: %w", fp, s.Path(), err)
	}
	if p.Fingerprint != fp {
		// An undo must undo the plan it names, whatever the store holds.
		return nil, fmt.Errorf("plan %s kept in %s holds the bytes of plan %s: the store was altered; run `backfill verify`", fp, s.Path(), p.Fingerprint)
	}
	return p, nil
}

// KeptRecord returns the store's record of a plan, if it keeps it.
func KeptRecord(ctx context.Context, s *evidence.Store, fingerprint string) (*evidence.PlanRecord, error) {
	recs, err := s.Plans(ctx)
	if err != nil {
		return nil, err
	}
	for i := range recs {
		if recs[i].Fingerprint == fingerprint {
			return &recs[i], nil
		}
	}
	return nil, nil
}

// KeptPlan is what the store knows of one plan.
type KeptPlan struct {
	Fingerprint  string    `json:"fingerprint"`
	Author       string    `json:"author"`
	AuthorSigned bool      `json:"author_signed"`
	CreatedAt    time.Time `json:"created_at"`
	Writes       int       `json:"writes"`
	ApprovedBy   []string  `json:"approved_by"` // approvals apply counts
	// NotCounted names approvals that record no check against the plan's
	// own catalog and CP records (made by an older backfill, or checked
	// against others): apply ignores them.
	NotCounted []string `json:"approvals_not_counted"`
	Signed     int      `json:"signed_approvals"`
	Applied    int      `json:"applied"`
	RolledBack int      `json:"rolled_back"`
}

// ApprovalChecked reports whether an approval records that it derived the
// plan again from the plan's own catalog and CP records: apply counts no
// other.
func ApprovalChecked(a evidence.Approval, p *Plan) bool {
	return a.CheckedCPSHA256 != "" && a.CheckedCatalogSHA256 == p.Inputs.Catalog.SHA256 && a.CheckedCPSHA256 == p.Inputs.CP.SHA256
}

// Kept lists every plan kept in the store, oldest first, with its approvals
// and what apply and rollback journaled of it.
func Kept(ctx context.Context, s *evidence.Store) ([]KeptPlan, error) {
	recs, err := s.Plans(ctx)
	if err != nil {
		return nil, err
	}
	entries, err := s.Journal(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]KeptPlan, 0, len(recs))
	for _, r := range recs {
		k := KeptPlan{Fingerprint: r.Fingerprint, Author: r.Author, AuthorSigned: r.Signature != "", CreatedAt: r.CreatedAt,
			ApprovedBy: []string{}, NotCounted: []string{}}
		p, err := LoadKept(ctx, s, r.Fingerprint)
		if err != nil {
			return nil, err
		}
		k.Writes = p.Writes()
		as, err := s.Approvals(ctx, r.Fingerprint)
		if err != nil {
			return nil, err
		}
		for _, a := range as {
			if !ApprovalChecked(a, p) {
				k.NotCounted = append(k.NotCounted, a.By)
				continue
			}
			k.ApprovedBy = append(k.ApprovedBy, a.By)
			if a.Signature != "" {
				k.Signed++
			}
		}
		h := evidence.Replay(entries, r.Fingerprint)
		k.Applied, k.RolledBack = len(h.Applied), h.RolledBack
		out = append(out, k)
	}
	return out, nil
}

// Writers returns the fingerprints of the plans the journal shows writing
// to some tenant, with how many rows each wrote, sorted by fingerprint.
func Writers(ctx context.Context, s *evidence.Store) ([]string, map[string]int, error) {
	entries, err := s.Journal(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	rows := map[string]map[evidence.Key]bool{}
	for _, e := range entries {
		if e.Operation == evidence.OpApply && (e.Outcome == evidence.Applied || e.Outcome == evidence.Committed) {
			if rows[e.Fingerprint] == nil {
				rows[e.Fingerprint] = map[evidence.Key]bool{}
			}
			rows[e.Fingerprint][evidence.Key{Tenant: e.Tenant, WorkspaceID: e.WorkspaceID}] = true
		}
	}
	fps := make([]string, 0, len(rows))
	n := map[string]int{}
	for fp, r := range rows {
		fps = append(fps, fp)
		n[fp] = len(r)
	}
	sort.Strings(fps)
	return fps, n, nil
}

// errWouldReplace refuses a plan --out that would replace something worth
// keeping.
var errWouldReplace = errors.New("refusing to replace")

// CheckReplace refuses to write a plan over path when path holds something
// that is not a plan, or another plan that this store shows approved or
// applied: its file may be the copy a reviewer signed. (The plan itself is
// also kept in the store, but the file is what people pass around.)
func CheckReplace(ctx context.Context, s *evidence.Store, path, fingerprint string) error {
	b, err := inputfile.Read(path, MaxPlanBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	old, err := ParsePlan(b)
	if err != nil {
		return fmt.Errorf("%w %s: it is not a plan backfill wrote (%v); pass --force to replace it", errWouldReplace, path, err)
	}
	if old.Fingerprint == fingerprint {
		return nil
	}
	as, err := s.Approvals(ctx, old.Fingerprint)
	if err != nil {
		return err
	}
	h, err := s.History(ctx, old.Fingerprint)
	if err != nil {
		return err
	}
	if len(as) == 0 && len(h.Applied) == 0 && len(h.Undoable) == 0 {
		return nil
	}
	return fmt.Errorf("%w %s: it holds plan %s, which has %d approvals and %d applied writes; write the new plan elsewhere, or pass --force (the old plan stays in the store: `backfill plans`)",
		errWouldReplace, path, old.Fingerprint, len(as), len(h.Applied))
}
