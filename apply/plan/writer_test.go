package plan

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriterIsWhatThePlanWrites: items streamed through a Writer give,
// byte for byte, the plan file, full report, summary and CSV that the same
// plan held in memory gives, and a plan that loads.
func TestWriterIsWhatThePlanWrites(t *testing.T) {
	drifted := bigPlan(30, 3)
	drifted.Items[4].Verdict, drifted.Items[4].Drift, drifted.Items[4].Action = AlreadySet, true, nil
	drifted.Seal()
	empty := &Plan{FormatVersion: FormatVersion, Author: "alice", CreatedAt: "2026-11-27T15:00:00Z", Items: []Item{}}
	empty.Seal()
	for name, p := range map[string]*Plan{"big": bigPlan(5000, 50), "drift": drifted, "empty": empty} {
		t.Run(name, func(t *testing.T) {
			w, err := NewWriter(filepath.Join(t.TempDir(), "plan.json"), true, true)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			for i := range p.Items {
				if err := w.Add(&p.Items[i]); err != nil {
					t.Fatal(err)
				}
			}
			head := *p
			head.Items, head.Counts, head.Fingerprint = nil, nil, ""
			if err := w.Seal(&head); err != nil {
				t.Fatal(err)
			}
			if head.Fingerprint != p.Fingerprint {
				t.Errorf("fingerprint %s, the plan's is %s", head.Fingerprint, p.Fingerprint)
			}
			var enc bytes.Buffer
			if err := w.Encode(&enc); err != nil {
				t.Fatal(err)
			}
			got := enc.Bytes()
			var want bytes.Buffer
			p.Encode(&want)
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("streamed plan differs from the plan's encoding (%d and %d bytes)", len(got), want.Len())
			}
			if _, err := ParsePlan(got); err != nil {
				t.Errorf("streamed plan does not load: %v", err)
			}
			if w.Items() != len(p.Items) || w.Writes() != p.Writes() || w.NeedsReview() != len(NeedsReview(p)) {
				t.Errorf("counted %d items, %d writes, %d to review; the plan has %d, %d, %d",
					w.Items(), w.Writes(), w.NeedsReview(), len(p.Items), p.Writes(), len(NeedsReview(p)))
			}
			same := func(what string, stream, held func(*bytes.Buffer) error) {
				var a, b bytes.Buffer
				if err := stream(&a); err != nil {
					t.Fatal(err)
				}
				if err := held(&b); err != nil {
					t.Fatal(err)
				}
				if a.String() != b.String() {
					t.Errorf("streamed %s differs from the plan's", what)
				}
			}
			same("full report", func(b *bytes.Buffer) error { return w.WriteReport(b, "plan.json", []string{"a warning"}) },
				func(b *bytes.Buffer) error { return WriteReport(b, p, "plan.json", []string{"a warning"}) })
			same("summary", func(b *bytes.Buffer) error { return w.WriteSummary(b, "plan.json", "full.md", nil) },
				func(b *bytes.Buffer) error { return WriteSummary(b, p, "plan.json", "full.md", nil) })
			same("CSV", func(b *bytes.Buffer) error { return w.EncodeCSV(b) },
				func(b *bytes.Buffer) error { return WriteItemsCSV(b, p) })
		})
	}
}

// TestWriterRefuses: an item out of plan order or repeated, an item after
// the seal, and a plan that holds its own items are errors; the spool
// leaves nothing in the plan's directory.
func TestWriterRefuses(t *testing.T) {
	dir := t.TempDir()
	p := bigPlan(10, 2)
	w, err := NewWriter(filepath.Join(dir, "plan.json"), false, true)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("a spool is visible in the plan's directory: %v", ents)
	}
	if err := w.Add(&p.Items[1]); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 0} {
		if err := w.Add(&p.Items[i]); err == nil || !strings.Contains(err.Error(), "not in plan order") {
			t.Errorf("item %d after item 1: %v", i, err)
		}
	}
	if err := w.Seal(p); err == nil {
		t.Error("sealed a plan holding its items")
	}
	head := *p
	head.Items = nil
	if err := w.Seal(&head); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(&p.Items[2]); err == nil {
		t.Error("added an item after the seal")
	}
	if err := w.WriteReport(&bytes.Buffer{}, "plan.json", nil); err == nil {
		t.Error("a full report from a writer that kept no rows")
	}
	if err := w.EncodeCSV(&bytes.Buffer{}); err != nil {
		t.Errorf("the CSV of a sealed plan: %v", err)
	}
}
