package progress

import (
	"bytes"
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	got := Format("captured", 50, 200, 3, 10*time.Second)
	want := "captured 50/200 (25.0%)  5/s  ETA 30s  failures 3"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := Format("captured", 0, 0, 0, 0); got != "captured 0/0 (0.0%)  0/s  ETA ?  failures 0" {
		t.Fatalf("empty: %q", got)
	}
}

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
