package evidence

import (
	"context"
	"strings"
)

// CapturesOf returns every capture of one workspace id (in any tenant),
// oldest first, without content: what `inspect` shows.
func (s *Store) CapturesOf(ctx context.Context, workspaceID string) ([]*Capture, error) {
	rows, err := s.db.QueryContext(ctx, s.captureSelect()+" WHERE workspace_id = ? ORDER BY id", workspaceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Capture
	for rows.Next() {
		c, _, err := scanCapture(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ListedIn returns, per listing that named the workspace id, the listing
// and the row it listed, oldest first.
func (s *Store) ListedIn(ctx context.Context, workspaceID string) ([]*Listing, error) {
	// A listing's rows are JSON; the LIKE narrows the scan, the decode
	// decides.
	rows, err := s.db.QueryContext(ctx, s.listingSelect()+`
  WHERE outcome = 'listed' AND rows LIKE ? ORDER BY id`, "%"+strings.ReplaceAll(workspaceID, "%", "")+"%")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Listing
	for rows.Next() {
		l, _, err := scanListing(rows)
		if err != nil {
			return nil, err
		}
		for _, r := range l.Rows {
			if r.ID == workspaceID {
				l.Rows = append(l.Rows[:0], r)
				out = append(out, l)
				break
			}
		}
	}
	return out, rows.Err()
}
