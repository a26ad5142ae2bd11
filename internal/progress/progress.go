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

// Line is a progress line redrawn in place. It owns the terminal: other
// output meant for the same terminal (log lines) goes through Writer, which
// prints it above the line and redraws the line below it, so neither is
// torn.
type Line struct {
	mu    sync.Mutex
	w     io.Writer
	last  string
	drawn bool
}

// NewLine draws on w.
func NewLine(w io.Writer) *Line { return &Line{w: w} }

// Draw replaces the line with s.
func (l *Line) Draw(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "\r%s\x1b[K", s)
	l.last, l.drawn = s, true
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

// Writer returns a writer for whole lines of other output (a logger's):
// each write clears the progress line, prints the text on its own lines
// and draws the progress line again beneath it.
func (l *Line) Writer() io.Writer { return lineWriter{l} }

type lineWriter struct{ l *Line }

func (lw lineWriter) Write(b []byte) (int, error) {
	l := lw.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.drawn {
		io.WriteString(l.w, "\r\x1b[K")
	}
	n, err := l.w.Write(b)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		io.WriteString(l.w, "\n")
	}
	if l.drawn {
		fmt.Fprintf(l.w, "%s\x1b[K", l.last)
	}
	return n, err
}

// Window measures the rate over the last span of time, not since the
// start: while tenants are still being listed the total grows, and an
// average since the start says little about the minutes ahead.
type Window struct {
	span    time.Duration
	samples []sample
}

type sample struct {
	at   time.Time
	done int
}

// NewWindow measures over span.
func NewWindow(span time.Duration) *Window { return &Window{span: span} }

// Add records the count done at a time, and returns the rate per second
// over the window (0 until two samples are apart).
func (w *Window) Add(at time.Time, done int) float64 {
	w.samples = append(w.samples, sample{at, done})
	for len(w.samples) > 2 && at.Sub(w.samples[1].at) >= w.span {
		w.samples = w.samples[1:]
	}
	first := w.samples[0]
	if dt := at.Sub(first.at).Seconds(); dt > 0 {
		return float64(done-first.done) / dt
	}
	return 0
}

// ETA is the time left at rate, or "?" when it cannot be told.
func ETA(done, total int, rate float64) string {
	if rate <= 0 || total < done {
		return "?"
	}
	return time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
}
