package progress

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLineRedrawsAndFinishes(t *testing.T) {
	var b bytes.Buffer
	l := NewLine(&b)
	l.Draw("a")
	l.Draw("b")
	l.Finish()
	l.Finish()
	if got := b.String(); got != "\ra\x1b[K\rb\x1b[K\n" {
		t.Fatalf("got %q", got)
	}
	if IsTerminal(&b) {
		t.Fatal("a buffer is not a terminal")
	}
}

// TestLogLinesAboveTheProgressLine: a log line written while progress is
// drawn is printed whole on its own line and the progress line is drawn
// again beneath it; the terminal's final state shows both intact.
func TestLogLinesAboveTheProgressLine(t *testing.T) {
	var b strings.Builder
	l := NewLine(&b)
	l.Draw("done 1/10")
	fmt.Fprint(l.Writer(), "level=WARN msg=\"capture not successful\" tenant=acme\n")
	l.Draw("done 2/10")
	l.Finish()
	screen := render(b.String())
	want := []string{`level=WARN msg="capture not successful" tenant=acme`, "done 2/10"}
	if len(screen) != len(want) || screen[0] != want[0] || screen[1] != want[1] {
		t.Fatalf("screen %q, want %q (raw %q)", screen, want, b.String())
	}
}

// render plays the output on a tiny terminal that knows \r, \n and
// erase-to-end-of-line, and returns its lines.
func render(out string) []string {
	var lines []string
	cur := []rune{}
	col := 0
	for i := 0; i < len(out); i++ {
		switch {
		case out[i] == '\r':
			col = 0
		case out[i] == '\n':
			lines = append(lines, string(cur))
			cur, col = cur[:0:0], 0
		case strings.HasPrefix(out[i:], "\x1b[K"):
			cur = cur[:col]
			i += 2
		default:
			if col < len(cur) {
				cur[col] = rune(out[i])
			} else {
				cur = append(cur, rune(out[i]))
			}
			col++
		}
	}
	if len(cur) > 0 {
		lines = append(lines, string(cur))
	}
	return lines
}

func TestWindowRate(t *testing.T) {
	w := NewWindow(10 * time.Second)
	t0 := time.Unix(0, 0)
	w.Add(t0, 0)
	// Slow at first, while tenants are listed.
	w.Add(t0.Add(20*time.Second), 10)
	// Then fast: the rate is the last 10 s's, not the average since 0.
	if r := w.Add(t0.Add(30*time.Second), 1010); r < 90 || r > 110 {
		t.Fatalf("rate %v, want about 100/s", r)
	}
	if e := ETA(1010, 2010, 100); e != "10s" {
		t.Fatalf("ETA %q", e)
	}
	if e := ETA(1, 10, 0); e != "?" {
		t.Fatalf("ETA %q", e)
	}
}
