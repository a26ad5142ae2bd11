// Package progress draws a one-line progress display on a terminal.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// IsTerminal reports whether w is a character device, the only place a
// redrawn progress line belongs; pipes and files get none.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Line is a progress line redrawn in place.
type Line struct {
	mu    sync.Mutex
	w     io.Writer
	drawn bool
}

// NewLine draws on w.
func NewLine(w io.Writer) *Line { return &Line{w: w} }

// Draw replaces the line with s.
func (l *Line) Draw(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "\r%s\x1b[K", s)
	l.drawn = true
}

// Finish ends the line so later output starts on a fresh one.
func (l *Line) Finish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.drawn {
		fmt.Fprintln(l.w)
		l.drawn = false
	}
}

// Format renders done/total, rate, ETA and failures.
func Format(verb string, done, total, failed int, elapsed time.Duration) string {
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed.Seconds()
	}
	pct := 0.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	eta := "?"
	if rate > 0 && total >= done {
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("%s %d/%d (%.1f%%)  %.0f/s  ETA %s  failures %d", verb, done, total, pct, rate, eta, failed)
}
