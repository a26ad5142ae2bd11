package evidence

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"backfill/internal/workspace"
)

// publishFixture is a store with a listing and captures of every kind,
// still open for writing (so in WAL mode, with a live -wal file).
func publishFixture(t *testing.T) *Store {
	t.Helper()
	s := openTemp(t)
	err := s.Append(context.Background(),
		&Listing{Tenant: "a", At: time.Date(2026, 11, 27, 11, 0, 0, 0, time.UTC), Outcome: Listed, Rows: []workspace.Row{{ID: "w1"}, {ID: "w2"}, {ID: "w3"}}},
		capture("a", "w1", Captured, "name: SEO Agent\n"), capture("a", "w2", Captured, ""), capture("a", "w3", Gone, ""))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dirEntries names what a directory holds.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestPublishWritesAVerifiedRollbackJournalCopy(t *testing.T) {
	ctx := context.Background()
	s := publishFixture(t)
	if wal, err := IsWAL(s.Path()); err != nil || !wal {
		t.Fatalf("the store itself should be in WAL mode: %v %v", wal, err)
	}
	srcRep, err := s.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shared := t.TempDir()
	dest := filepath.Join(shared, "shard-0.db")
	rep, err := s.PublishCopy(ctx, dest, PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.ChainHead != srcRep.ChainHead || rep.Captures != 3 || rep.Listings != 1 {
		t.Fatalf("copy's report %+v, store's %+v", rep, srcRep)
	}
	// Only the copy lands in the shared directory: no temporary file, no
	// -wal, -shm or -journal beside it.
	if got := dirEntries(t, shared); len(got) != 1 || got[0] != "shard-0.db" {
		t.Fatalf("shared directory holds %q", got)
	}
	fi, err := os.Stat(dest)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("copy mode %v, %v; want 0600", fi.Mode(), err)
	}
	if wal, err := IsWAL(dest); err != nil || wal {
		t.Fatalf("the copy is in WAL mode (%v, %v)", wal, err)
	}
	// A reader on a directory it may not write (a read-only mount) opens
	// the copy without needing a -shm file, and it verifies.
	if err := os.Chmod(shared, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(shared, 0o755) })
	c, err := OpenReadOnly(ctx, dest)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Verify(ctx)
	if err != nil || !r.OK() || r.ChainHead != srcRep.ChainHead {
		t.Fatalf("reading the copy: %+v %v", r, err)
	}
	b, err := c.Content(ctx, SHA256Hex([]byte("name: SEO Agent\n")))
	if err != nil || string(b) != "name: SEO Agent\n" {
		t.Fatalf("content in the copy: %q %v", b, err)
	}
	if got := dirEntries(t, shared); len(got) != 1 {
		t.Fatalf("reading the copy left %q", got)
	}
	// The store itself is untouched and still takes appends.
	if err := s.Append(ctx, capture("a", "w4", Captured, "later")); err != nil {
		t.Fatal(err)
	}
}

func TestPublishFromAReadOnlyHandle(t *testing.T) {
	ctx := context.Background()
	s := publishFixture(t)
	ro, err := OpenReadOnly(ctx, s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	dest := filepath.Join(t.TempDir(), "copy.db")
	if err := ro.Publish(ctx, dest); err != nil {
		t.Fatal(err)
	}
	if wal, err := IsWAL(dest); err != nil || wal {
		t.Fatalf("copy in WAL mode: %v %v", wal, err)
	}
}

func TestPublishRefusals(t *testing.T) {
	ctx := context.Background()
	s := publishFixture(t)
	dir := t.TempDir()
	dest := filepath.Join(dir, "copy.db")
	if err := os.WriteFile(dest, []byte("someone else's"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, dest); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(dest); string(b) != "someone else's" {
		t.Fatalf("existing file changed: %q", b)
	}
	// Replace takes its place in one rename.
	rep, err := s.PublishCopy(ctx, dest, PublishOptions{Replace: true})
	if err != nil || !rep.OK() {
		t.Fatalf("replace: %v", err)
	}
	if wal, err := IsWAL(dest); err != nil || wal {
		t.Fatalf("replaced copy: %v %v", wal, err)
	}
	// Never the store itself, even with Replace.
	if _, err := s.PublishCopy(ctx, s.Path(), PublishOptions{Replace: true}); err == nil || !strings.Contains(err.Error(), "evidence store itself") {
		t.Fatalf("over the store itself: %v", err)
	}
	// A -wal or -journal beside dest would be read into the copy.
	for _, suffix := range []string{"-wal", "-journal", "-shm"} {
		fresh := filepath.Join(dir, "fresh"+suffix+".db")
		if err := os.WriteFile(fresh+suffix, []byte("stale"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.Publish(ctx, fresh); err == nil || !strings.Contains(err.Error(), "exists beside it") {
			t.Fatalf("with %s beside dest: %v", suffix, err)
		}
		if _, err := os.Stat(fresh); err == nil {
			t.Fatalf("with %s beside dest: published anyway", suffix)
		}
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PublishCopy(ctx, sub, PublishOptions{Replace: true}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("over a directory: %v", err)
	}
	if err := s.Publish(ctx, filepath.Join(dir, "missing", "copy.db")); err == nil {
		t.Fatal("published into a directory that does not exist")
	}
	for _, n := range dirEntries(t, dir) {
		if strings.Contains(n, ".publish-") {
			t.Errorf("a refused publish left %s", n)
		}
	}
}

// A store that does not verify is never published: the copy is deleted and
// nothing appears under dest.
func TestPublishRefusesACopyThatDoesNotVerify(t *testing.T) {
	ctx := context.Background()
	s := publishFixture(t)
	tamper(t, s.Path(), "DROP TRIGGER captures_no_update", "UPDATE captures SET target = 'elsewhere' WHERE id = 1")
	dir := t.TempDir()
	dest := filepath.Join(dir, "copy.db")
	err := s.Publish(ctx, dest)
	if err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("publish of a tampered store: %v", err)
	}
	if got := dirEntries(t, dir); len(got) != 0 {
		t.Fatalf("a failed publish left %q", got)
	}
}

// Publishing while a writer appends gives a copy of one moment: it verifies.
func TestPublishWhileWriting(t *testing.T) {
	ctx := context.Background()
	s := publishFixture(t)
	ro, err := OpenReadOnly(ctx, s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	done := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := s.Append(ctx, capture("b", "w"+string(rune('a'+i%26)), Captured, strings.Repeat("x", i))); err != nil {
				done <- err
				return
			}
		}
	}()
	dir := t.TempDir()
	for i := range 3 {
		dest := filepath.Join(dir, "copy"+string(rune('0'+i))+".db")
		if err := ro.Publish(ctx, dest); err != nil {
			close(stop)
			<-done
			t.Fatal(err)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestIsWALRefusesOtherFiles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x")
	os.WriteFile(p, []byte("not a database at all, but long enough"), 0o600)
	if _, err := IsWAL(p); err == nil {
		t.Fatal("IsWAL accepted a text file")
	}
}

// linkNoReplace is how publish and merge put a finished store in place.
func TestLinkNoReplaceNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	tmp, out := filepath.Join(dir, "tmp"), filepath.Join(dir, "out")
	if err := os.WriteFile(tmp, []byte("merged"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, []byte("someone else's"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := linkNoReplace(tmp, out); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("link over an existing OUT: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "someone else's" {
		t.Fatalf("OUT replaced: %q", b)
	}
	os.Remove(out)
	if err := linkNoReplace(tmp, out); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "merged" {
		t.Fatalf("OUT = %q", b)
	}
	// A directory cannot be hard-linked, so this takes the fallback, whose
	// rename then fails: the placeholder must not stay behind.
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	if err := linkNoReplace(sub, filepath.Join(dir, "out2")); err == nil {
		t.Fatal("published a directory")
	}
	if _, err := os.Stat(filepath.Join(dir, "out2")); err == nil {
		t.Fatal("the fallback left its placeholder")
	}
}
