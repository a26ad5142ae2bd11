package evidence

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"backfill/internal/source"
)

// mergeInput publishes a store holding recs and returns the copy's path.
func mergeInput(t *testing.T, dir, name string, recs ...Record) string {
	t.Helper()
	s := openTemp(t)
	if err := s.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := s.Publish(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// A not-live answer is kept with its bytes: merging the only shard that
// holds them copies them, and the merged store verifies.
func TestMergeKeepsTheBytesOfANotLiveAnswer(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	nl := capture("a", "w1", NotLive, "")
	nl.Content, nl.Source = []byte("name: from the template folder\n"), source.TemplateDir
	in := mergeInput(t, dir, "shard-0.db", nl, capture("a", "w2", Captured, "name: live\n"))
	out := filepath.Join(dir, "merged.db")
	if _, err := Merge(ctx, out, []string{in}, time.Now(), MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := OpenReadOnly(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if rep, err := m.Verify(ctx); err != nil || !rep.OK() || rep.Captures != 2 {
		t.Fatalf("verify the merged store: %+v %v", rep, err)
	}
	if b, err := m.Content(ctx, SHA256Hex(nl.Content)); err != nil || string(b) != string(nl.Content) {
		t.Fatalf("the not-live bytes in the merged store: %q %v", b, err)
	}
	// Written as a published copy: one file, in rollback-journal mode.
	if wal, err := IsWAL(out); err != nil || wal {
		t.Errorf("merged store in WAL mode: %v %v", wal, err)
	}
}

// A -wal, -shm or -journal left beside out would be read together with the
// new store by its first reader (a WAL replayed over it): merge refuses,
// and leaves no out and no temporary file.
func TestMergeRefusesSQLiteFilesBesideOut(t *testing.T) {
	ctx := context.Background()
	for _, suffix := range sidecars {
		t.Run(suffix, func(t *testing.T) {
			dir := t.TempDir()
			in := mergeInput(t, dir, "shard-0.db", capture("a", "w1", Captured, "x"))
			out := filepath.Join(dir, "merged.db")
			if err := os.WriteFile(out+suffix, []byte("left over"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Merge(ctx, out, []string{in}, time.Now(), MergeOptions{})
			if err == nil || !strings.Contains(err.Error(), out+suffix+" exists beside it") {
				t.Fatalf("merge beside %s: %v", suffix, err)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 2 {
				t.Errorf("merge left files: %v", entries)
			}
		})
	}
}

// The temporary store is made under an unguessable name with O_EXCL: a
// symlink planted at any name never receives the store, and out is a
// regular file.
func TestMergeFollowsNoPlantedSymlink(t *testing.T) {
	ctx := context.Background()
	dir, elsewhere := t.TempDir(), t.TempDir()
	in := mergeInput(t, dir, "shard-0.db", capture("a", "w1", Captured, "x"))
	out := filepath.Join(dir, "merged.db")
	victim := filepath.Join(elsewhere, "victim.db")
	// Names an earlier merge used, and names of the temporary's shape.
	for _, name := range []string{fmt.Sprintf("%s.partial-%d", out, os.Getpid()), fmt.Sprintf("%s/.merged.db.publish-%d-", dir, os.Getpid()),
		fmt.Sprintf("%s/.merged.db.publish-%d-000000000000", dir, os.Getpid())} {
		if err := os.Symlink(victim, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Merge(ctx, out, []string{in}, time.Now(), MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(victim); err == nil {
		t.Error("the store was written through the symlink")
	}
	if fi, err := os.Lstat(out); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("out: %v %v", fi, err)
	}
	// A dangling symlink at out is refused.
	if err := os.Symlink(victim, filepath.Join(dir, "dangling.db")); err != nil {
		t.Fatal(err)
	}
	if _, err := Merge(ctx, filepath.Join(dir, "dangling.db"), []string{in}, time.Now(), MergeOptions{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("a dangling symlink at out: %v", err)
	}
}

// Plans kept in an input would be dropped without a word: refused, as are
// approvals, a journal and audits.
func TestMergeRefusesAStoreWithPlans(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTemp(t)
	if err := s.Append(ctx, capture("a", "w1", Captured, "x")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPlanFrom(ctx, "sha256:"+strings.Repeat("ab", 32), "ops", time.Now(), func(w io.Writer) error { _, err := io.WriteString(w, "{}\n"); return err }, ""); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "planned.db")
	if err := s.Publish(ctx, in); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "merged.db")
	if _, err := Merge(ctx, out, []string{in}, time.Now(), MergeOptions{}); err == nil || !strings.Contains(err.Error(), "holds plans") {
		t.Fatalf("merge a store with a plan: %v", err)
	}
	if _, err := os.Lstat(out); err == nil {
		t.Error("out was made")
	}
}

// A shard published, run again and published again is one chain at two
// times: merging both would hold every shared capture twice. Refused,
// naming the later copy; the later alone merges.
func TestMergeRefusesTwoCopiesOfOneStoreAtTwoTimes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTemp(t)
	if err := s.Append(ctx, capture("a", "w1", Captured, "x"), capture("a", "w2", Failed, "")); err != nil {
		t.Fatal(err)
	}
	early := filepath.Join(dir, "shard-0.db")
	if err := s.Publish(ctx, early); err != nil {
		t.Fatal(err)
	}
	retry := capture("a", "w2", Captured, "y")
	retry.EndedAt = retry.EndedAt.Add(time.Minute)
	if err := s.Append(ctx, retry); err != nil {
		t.Fatal(err)
	}
	late := filepath.Join(dir, "shard-0-retry.db")
	if err := s.Publish(ctx, late); err != nil {
		t.Fatal(err)
	}
	for _, order := range [][]string{{early, late}, {late, early}} {
		_, err := Merge(ctx, filepath.Join(dir, "merged.db"), order, time.Now(), MergeOptions{})
		if err == nil || !strings.Contains(err.Error(), late+" holds all the evidence of "+early) {
			t.Fatalf("merge %v: %v", order, err)
		}
	}
	if _, err := Merge(ctx, filepath.Join(dir, "merged.db"), []string{late}, time.Now(), MergeOptions{}); err != nil {
		t.Fatal(err)
	}

	// Copies with listings only (every tenant unreachable at the first):
	// the same two, and one at two times.
	at := time.Date(2026, 11, 27, 11, 0, 0, 0, time.UTC)
	l := openTemp(t)
	if err := l.Append(ctx, &Listing{Tenant: "b", At: at, Outcome: Unreachable, Reason: "down"}); err != nil {
		t.Fatal(err)
	}
	l1, l2 := filepath.Join(dir, "l1.db"), filepath.Join(dir, "l2.db")
	for _, p := range []string{l1, l2} {
		if err := l.Publish(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Merge(ctx, filepath.Join(dir, "m2.db"), []string{l1, l2}, time.Now(), MergeOptions{}); err == nil || !strings.Contains(err.Error(), "holds the same evidence as") {
		t.Fatalf("two equal listing-only copies: %v", err)
	}
	if err := l.Append(ctx, &Listing{Tenant: "b", At: at.Add(time.Hour), Outcome: Listed}, capture("b", "w1", Captured, "z")); err != nil {
		t.Fatal(err)
	}
	l3 := filepath.Join(dir, "l3.db")
	if err := l.Publish(ctx, l3); err != nil {
		t.Fatal(err)
	}
	if _, err := Merge(ctx, filepath.Join(dir, "m3.db"), []string{l1, l3}, time.Now(), MergeOptions{}); err == nil || !strings.Contains(err.Error(), l3+" holds all the listings of "+l1) {
		t.Fatalf("a listing-only copy and its later copy: %v", err)
	}
}

// No chain shows its own tail deleted, its head being nowhere else: the
// store head, one digest over every chain's head and count, changes when
// any is, so an operator who wrote it down sees it. A merged store also
// checks it holds what its merge copied.
func TestADeletedTailChangesTheStoreHead(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 11, 0, 0, 0, time.UTC)
	s := openTemp(t)
	if err := s.Append(ctx, &Listing{Tenant: "a", At: at, Outcome: Listed}, capture("a", "w1", Captured, "x"),
		&Listing{Tenant: "b", At: at, Outcome: Unreachable, Reason: "connection refused"}); err != nil {
		t.Fatal(err)
	}
	before, err := s.Verify(ctx)
	if err != nil || !before.OK() || before.Heads["listings"] == "" || before.Heads["captures"] != before.ChainHead {
		t.Fatalf("verify: %+v %v", before, err)
	}
	tamper(t, s.Path(), "DROP TRIGGER listings_no_delete", "DELETE FROM listings WHERE id = 2", triggerSQL("listings", "DELETE"))
	after, err := s.Verify(ctx)
	if err != nil || !after.OK() || after.ChainHead != before.ChainHead {
		t.Fatalf("verify after the last listing was deleted: %+v %v", after, err)
	}
	if after.StoreHead() == before.StoreHead() {
		t.Fatal("the store head did not change when the last listing was deleted")
	}

	dir := t.TempDir()
	in := mergeInput(t, dir, "shard-0.db", capture("a", "w1", Captured, "x"), capture("a", "w2", Captured, "y"))
	out := filepath.Join(dir, "merged.db")
	if _, err := Merge(ctx, out, []string{in}, time.Now(), MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	tamper(t, out, "DROP TRIGGER captures_no_delete", "DELETE FROM captures WHERE id = 2", triggerSQL("captures", "DELETE"))
	m, err := OpenReadOnly(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := m.Verify(ctx)
	if err != nil || r.OK() || !strings.Contains(fmt.Sprint(r.Problems), "the merge copied 2 captures from its inputs, the store holds 1") {
		t.Fatalf("verify of a merged store missing its last capture: %+v %v", r, err)
	}
}

// Shards of one run hold separate tenants. A tenant in two inputs is a
// merged store given with one of its own inputs (whatever their order),
// two runs of one shard, or overlapping shard splits: merge refuses,
// naming the tenant and both inputs, and writes nothing, unless overlap is
// allowed, when both inputs' evidence is kept.
func TestMergeRefusesATenantInTwoInputs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	shard0 := mergeInput(t, dir, "shard-0.db", capture("a", "w1", Captured, "one"), capture("a", "w2", Captured, "two"))
	shard1 := mergeInput(t, dir, "shard-1.db", capture("b", "w1", Captured, "three"))
	merged := filepath.Join(dir, "merged.db")
	if _, err := Merge(ctx, merged, []string{shard1, shard0}, time.Now(), MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	again := filepath.Join(dir, "again.db")
	// The merged store holds shard-1's chain head (its captures sorted
	// first) but not shard-0's: only the tenant check sees the second.
	for _, inputs := range [][]string{{merged, shard0}, {shard0, merged}, {merged, shard1}} {
		_, err := Merge(ctx, again, inputs, time.Now(), MergeOptions{})
		if err == nil || !strings.Contains(err.Error(), inputs[0]) || !strings.Contains(err.Error(), inputs[1]) ||
			inputs[1] == shard0 && !strings.Contains(err.Error(), "is in both "+inputs[0]+" and "+inputs[1]+": ") {
			t.Errorf("merge %v: %v", inputs, err)
		}
		if _, serr := os.Lstat(again); serr == nil {
			t.Fatalf("merge %v left %s", inputs, again)
		}
	}
	// Two runs of one shard: the second recaptured w1 and captured w3.
	rerun := mergeInput(t, dir, "shard-0-rerun.db", capture("a", "w1", Captured, "one"), capture("a", "w3", Captured, "four"))
	if _, err := Merge(ctx, again, []string{shard0, rerun, shard1}, time.Now(), MergeOptions{}); err == nil ||
		!strings.Contains(err.Error(), `tenant "a" is in both`) {
		t.Fatalf("two runs of one shard: %v", err)
	}
	if _, err := Merge(ctx, again, []string{shard0, rerun, shard1}, time.Now(), MergeOptions{AllowOverlap: true}); err != nil {
		t.Fatalf("allowed: %v", err)
	}
	m, err := OpenReadOnly(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if rep, err := m.Verify(ctx); err != nil || !rep.OK() || rep.Captures != 5 {
		t.Fatalf("the allowed merge: %+v %v", rep, err)
	}
}

// A destination named like a file SQLite keeps beside a database is
// refused by publish, even with --force onto an existing one (a crashed
// store's -wal holds its last captures), and by merge; so is an empty one.
func TestCopiesNamedLikeASidecarAreRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTemp(t)
	if err := s.Append(ctx, capture("a", "w1", Captured, "x")); err != nil {
		t.Fatal(err)
	}
	in := mergeInput(t, dir, "shard-0.db", capture("a", "w1", Captured, "x"))
	walBytes := []byte("the only copy of the last captures")
	for _, suffix := range append(slices.Clone(sidecars), "-WAL") {
		dest := filepath.Join(dir, "store.db"+suffix)
		if err := os.WriteFile(dest, walBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PublishCopy(ctx, dest, PublishOptions{Replace: true}); err == nil || !strings.Contains(err.Error(), "a name ending in "+strings.ToLower(suffix)) {
			t.Errorf("publish --force %s: %v", dest, err)
		}
		if b, _ := os.ReadFile(dest); string(b) != string(walBytes) {
			t.Errorf("publish replaced %s", dest)
		}
		out := filepath.Join(dir, "merged.db"+suffix)
		if _, err := Merge(ctx, out, []string{in}, time.Now(), MergeOptions{}); err == nil || !strings.Contains(err.Error(), "a name ending in "+strings.ToLower(suffix)) {
			t.Errorf("merge into %s: %v", out, err)
		}
	}
	if err := s.Publish(ctx, ""); err == nil || !strings.Contains(err.Error(), "the destination is empty") {
		t.Errorf("publish to an empty name: %v", err)
	}
	if _, err := Merge(ctx, "", []string{in}, time.Now(), MergeOptions{}); err == nil || !strings.Contains(err.Error(), "the destination is empty") {
		t.Errorf("merge into an empty name: %v", err)
	}
}

// The merge streams its inputs: the records it writes are in the order of
// sorting all of them at once by time (each store's own order kept where
// its clock stepped back), then input, then id, whatever the clocks did.
func TestMergeOrderIsTheSortOfAllRecords(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	type key struct {
		at     time.Time
		input  int
		id     int64
		tenant string
		ws     string
	}
	var want []key
	var paths []string
	for i := 0; i < 3; i++ {
		var recs []Record
		clock := base
		last := time.Time{}
		for n := 0; n < 40; n++ {
			// Mostly forward, sometimes a step back (another host, NTP).
			clock = clock.Add(time.Duration(rng.IntN(2000)-300) * time.Millisecond)
			tenant := fmt.Sprintf("t%d-%d", i, rng.IntN(3))
			c := capture(tenant, fmt.Sprintf("w%d", n), Captured, fmt.Sprintf("c %d %d", i, n))
			c.StartedAt, c.EndedAt = clock, clock
			recs = append(recs, c)
			if clock.After(last) {
				last = clock
			}
			want = append(want, key{last, i, int64(n + 1), tenant, c.WorkspaceID})
		}
		paths = append(paths, mergeInput(t, dir, fmt.Sprintf("shard-%d.db", i), recs...))
	}
	sort.SliceStable(want, func(a, b int) bool {
		if !want[a].at.Equal(want[b].at) {
			return want[a].at.Before(want[b].at)
		}
		if want[a].input != want[b].input {
			return want[a].input < want[b].input
		}
		return want[a].id < want[b].id
	})
	out := filepath.Join(dir, "merged.db")
	if _, err := Merge(ctx, out, paths, time.Now(), MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := OpenReadOnly(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var got []string
	if err := m.Captures(ctx, func(c *Capture) error { got = append(got, c.Tenant+"/"+c.WorkspaceID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d captures merged, want %d", len(got), len(want))
	}
	for i, k := range want {
		if got[i] != k.tenant+"/"+k.ws {
			t.Fatalf("capture %d is %s, want %s/%s", i+1, got[i], k.tenant, k.ws)
		}
	}
}
