package preflight

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"backfill/internal/evidence"
)

func plenty(string) (uint64, error) { return 1 << 40, nil }

// TestStoreCheckWritesNothing: a store that does not exist is ready when
// its directory takes a file, and is not created; the probe file is gone
// afterwards.
func TestStoreCheckWritesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "evidence.db")
	s := checkStore(path, nil, plenty)
	if !s.Ready || s.Exists || !s.Writable || s.Directory != dir || len(s.Why) != 0 {
		t.Fatalf("%+v", s)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left behind: %v", entries)
	}
}

// TestStoreCheckRefusals: a directory that is not one, a store that is not
// a file, a store a snapshot holds, and too little free space are each
// named; a store nobody holds is ready and its lock is free afterwards.
func TestStoreCheckRefusals(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if s := checkStore(filepath.Join(file, "evidence.db"), nil, plenty); s.Ready || !strings.Contains(strings.Join(s.Why, ";"), "not a directory") {
		t.Errorf("under a file: %+v", s)
	}
	if s := checkStore(dir, nil, plenty); s.Ready || !strings.Contains(strings.Join(s.Why, ";"), "is not a regular file") {
		t.Errorf("a directory as the store: %+v", s)
	}
	if s := checkStore(filepath.Join(dir, "missing", "evidence.db"), nil, plenty); s.Ready || !strings.Contains(strings.Join(s.Why, ";"), "no such file or directory") {
		t.Errorf("a missing directory: %+v", s)
	}

	path := filepath.Join(dir, "evidence.db")
	store, err := evidence.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Lock(); err != nil {
		t.Fatal(err)
	}
	s := checkStore(path, nil, plenty)
	if s.Ready || !s.InUse || !s.Exists || !strings.Contains(strings.Join(s.Why, ";"), "in use by another backfill process") {
		t.Errorf("held by a snapshot: %+v", s)
	}
	store.Close()
	if s := checkStore(path, nil, plenty); !s.Ready || s.InUse {
		t.Errorf("released: %+v", s)
	}
	// Preflight's look at the lock leaves it free for the snapshot.
	again, err := evidence.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Lock(); err != nil {
		t.Errorf("lock after preflight: %v", err)
	}
	again.Close()

	tenants := []TenantResult{{Live: 1000, Sample: &Sample{Size: 10 << 10}}, {Live: 10}}
	need, live := NeedBytes(tenants)
	// 1010 captures of a 10 KiB config, twice, plus 4 KiB each, plus 24 MiB.
	if want := uint64(1010*(2*10<<10+4<<10) + 24<<20); need != want || live != 1010 {
		t.Errorf("NeedBytes %d %d, want %d 1010", need, live, want)
	}
	s = checkStore(path, tenants, func(string) (uint64, error) { return 20 << 20, nil })
	if s.Ready || s.FreeBytes != 20<<20 || s.NeedBytes != need ||
		!strings.Contains(strings.Join(s.Why, ";"), "20.0 MiB free in "+dir+", about 47.7 MiB needed for 1010 live workspaces") {
		t.Errorf("too little space: %+v", s)
	}
	s = checkStore(path, tenants, func(string) (uint64, error) { return 0, errors.New("statfs failed") })
	if s.Ready || !strings.Contains(strings.Join(s.Why, ";"), "statfs failed") {
		t.Errorf("statfs error: %+v", s)
	}
}

// TestNeedBytesWithoutSamples: with no config sampled, a generous size is
// assumed rather than none.
func TestNeedBytesWithoutSamples(t *testing.T) {
	need, _ := NeedBytes([]TenantResult{{Live: 10}})
	if want := uint64(10*(2*defaultConfigSize+captureOverhead) + storeReserve); need != want {
		t.Errorf("need %d, want %d", need, want)
	}
}

// TestRateChecks: a configured rate above the platform's limit (from the
// answer's header, else 600) is not ready; a window nearly used up by
// others is a note; "unlimited" (the platform's dev mode) limits nothing.
func TestRateChecks(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rate    Rate
		headers map[string]string
		why     string
		note    string
	}{
		{name: "default rate", rate: Rate{PerSecond: 8}},
		{name: "too fast", rate: Rate{PerSecond: 12}, why: "rate 12/s is 720 requests a minute, above the platform's 600"},
		{name: "a lower limit sent", rate: Rate{PerSecond: 8}, headers: map[string]string{"header.X-RateLimit-Limit": "300"},
			why: "above the platform's 300"},
		{name: "unlimited", rate: Rate{PerSecond: 50}, headers: map[string]string{"header.X-RateLimit-Limit": "unlimited"}},
		{name: "window nearly used", rate: Rate{PerSecond: 8},
			headers: map[string]string{"header.X-RateLimit-Limit": "600", "header.X-RateLimit-Remaining": "100", "header.X-RateLimit-Reset": "30"},
			note:    "the org's window has 100 requests left for the next 30s; the snapshot at 8/s would send 240"},
		{name: "window ample", rate: Rate{PerSecond: 8},
			headers: map[string]string{"header.X-RateLimit-Limit": "600", "header.X-RateLimit-Remaining": "500", "header.X-RateLimit-Reset": "30"}},
		{name: "not paced", rate: Rate{}, headers: map[string]string{"header.X-RateLimit-Limit": "600", "header.X-RateLimit-Remaining": "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rate
			r.PerMinute = r.PerSecond * 60
			if r.PerSecond > 0 {
				r.Limit, r.LimitFrom = PlatformLimit, "platform"
			}
			readRateHeaders(tc.headers, &r)
			res := TenantResult{Rate: r}
			checkRate(&res)
			why, note := strings.Join(res.Why, ";"), strings.Join(res.Notes, ";")
			if (tc.why == "") != (why == "") || !strings.Contains(why, tc.why) || (tc.note == "") != (note == "") || !strings.Contains(note, tc.note) {
				t.Errorf("why %q note %q; want %q %q", why, note, tc.why, tc.note)
			}
		})
	}
	r := Rate{}
	readRateHeaders(map[string]string{"header.X-RateLimit-Remaining": "12", "header.X-RateLimit-Reset": "oops"}, &r)
	if r.Remaining == nil || *r.Remaining != 12 || r.ResetSeconds != nil {
		t.Errorf("headers read: %+v", r)
	}
}

// A store the snapshot would refuse or fail to open is not ready: a file
// that is not a store, a newer schema, a -wal beside it that is not a file.
func TestStoreTheSnapshotCannotOpenIsNotReady(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte("junk, not a database, but longer than a header of one........."), 0o600); err != nil {
		t.Fatal(err)
	}
	if s := checkStore(junk, nil, plenty); s.Ready || !strings.Contains(strings.Join(s.Why, ";"), "junk.db") {
		t.Errorf("junk: %+v", s)
	}

	newer := filepath.Join(dir, "newer.db")
	st, err := evidence.Open(context.Background(), newer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if s := checkStore(newer, nil, plenty); s.Ready || !strings.Contains(strings.Join(s.Why, ";"), "newer than this backfill understands") {
		t.Errorf("newer schema: %+v", s)
	}

	sidecar := filepath.Join(dir, "s.db")
	st, err = evidence.Open(context.Background(), sidecar)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	os.Remove(sidecar + "-wal")
	if err := os.Mkdir(sidecar+"-wal", 0o700); err != nil {
		t.Fatal(err)
	}
	if s := checkStore(sidecar, nil, plenty); s.Ready || !strings.Contains(strings.Join(s.Why, ";"), "s.db-wal is not a regular file") {
		t.Errorf("a directory for its -wal: %+v", s)
	}

	good := filepath.Join(dir, "good.db")
	st, err = evidence.Open(context.Background(), good)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if s := checkStore(good, nil, plenty); !s.Ready {
		t.Errorf("a good store: %+v", s)
	}
	// Its header is read, the store is not opened: nothing is left beside it.
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Lstat(good + suffix); err == nil {
			t.Errorf("preflight left %s", good+suffix)
		}
	}
}
