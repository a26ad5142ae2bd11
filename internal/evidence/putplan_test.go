package evidence

import (
	"context"
	"io"
	"time"
)

// PutPlan is PutPlanFrom of bytes held whole.
func (s *Store) PutPlan(ctx context.Context, fingerprint, author string, createdAt time.Time, b []byte, signature string) error {
	return s.PutPlanFrom(ctx, fingerprint, author, createdAt, func(w io.Writer) error { _, err := w.Write(b); return err }, signature)
}
