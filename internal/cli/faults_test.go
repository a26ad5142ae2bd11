package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backfill/apply/plan"
	"backfill/internal/evidence"
	"backfill/internal/filesapi"
	"backfill/internal/fixture"
	"backfill/internal/pgtest"
)

// mountTmpfs mounts a tmpfs of the given size on a fresh directory and
// unmounts it when the test ends (before t.TempDir is removed: cleanups run
// last-registered first). It skips the test where mounting is not allowed.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: mounting a small tmpfs to fill needs root")
	}
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Skipf("SKIPPED: cannot mount a tmpfs on %s (%v); a container without CAP_SYS_ADMIN cannot run this test", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			// Something still holds a file open; detach so the temp dir can go.
			if err2 := syscall.Unmount(dir, syscall.MNT_DETACH); err2 != nil {
				t.Errorf("unmount %s: %v, then %v", dir, err, err2)
			}
		}
	})
	return dir
}

// freeBytes is what an unprivileged writer may still put on dir's filesystem.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// bigDistinctConfigs gives every live workspace of f a config of about size
// bytes, each different, so that content deduplication cannot save space.
func bigDistinctConfigs(t *testing.T, f *fleet, size int) {
	t.Helper()
	for key := range f.live {
		tenant, id, _ := strings.Cut(key, "/")
		var b strings.Builder
		b.WriteString(seoConfig)
		for n := 0; b.Len() < size; n++ {
			fmt.Fprintf(&b, "# padding %s line %06d\n", key, n)
		}
		if err := filesapi.WriteConfig(f.roots[tenant], id, []byte(b.String())); err != nil {
			t.Fatal(err)
		}
		f.live[key] = b.String()
	}
}

// checkOneCaptureEach fails unless every live workspace of f has exactly one
// successful capture, holding the bytes that were live.
func checkOneCaptureEach(t *testing.T, f *fleet) {
	t.Helper()
	per := map[string]int{}
	for _, r := range capturedRows(t, f.evidence) {
		per[r.key]++
		if r.sha256 != sha(f.live[r.key]) {
			t.Errorf("%s: captured bytes differ from the live config", r.key)
		}
	}
	for key := range f.live {
		if per[key] != 1 {
			t.Errorf("%s has %d successful captures, want exactly 1", key, per[key])
		}
	}
}

func TestFaultDiskFullDuringSnapshot(t *testing.T) {
	t.Parallel()
	small := mountTmpfs(t, 8<<20)
	f := newFleet(t, 8, 0)
	bigDistinctConfigs(t, f, 64<<10)
	f.evidence = filepath.Join(small, "evidence.db")

	// The store made first, so that what its schema and migrations take is
	// not counted in the room left: room for the listings and about half
	// the 24 configs of 64 KiB in the WAL (each some 80 KiB there with its
	// capture row), so that neither the first batch (a few captures) nor
	// all of them fit in the wrong place.
	st, err := evidence.Open(context.Background(), f.evidence)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(small, "filler")
	if err := os.WriteFile(filler, make([]byte, freeBytes(t, small)-1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	res := f.snapshot(t, "--concurrency", "1")
	t.Logf("disk-full run: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	if res.code != 1 {
		t.Fatalf("exit %d, want 1 (evidence store failure)", res.code)
	}
	if !strings.Contains(res.stderr, "evidence store "+f.evidence) || !strings.Contains(res.stderr, "disk is full") {
		t.Errorf("stderr does not name the evidence store and the disk-full cause:\n%s", res.stderr)
	}
	before := capturedRows(t, f.evidence)
	if len(before) == 0 || len(before) >= len(f.live) {
		t.Fatalf("%d of %d captured before the disk filled; want a partial run", len(before), len(f.live))
	}
	// The summary names every workspace left without evidence, including
	// those read but lost with the batch that did not fit.
	recorded := map[string]bool{}
	for _, r := range before {
		recorded[r.key] = true
	}
	for key := range f.live {
		if !recorded[key] && !strings.Contains(res.stdout, key+":") {
			t.Errorf("%s has no capture and the summary does not name it", key)
		}
	}
	// Still full: what was recorded verifies as it stands.
	if v := run(t, nil, "verify", "--evidence", f.evidence); v.code != 0 {
		t.Fatalf("verify on the full disk: %d\n%s%s", v.code, v.stdout, v.stderr)
	}

	// The operator frees space and runs the same command again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	again := f.snapshot(t, "--concurrency", "1")
	if again.code != 0 || !strings.Contains(again.stdout, fmt.Sprintf("captured earlier %d", len(before))) {
		t.Fatalf("re-run: exit %d\n%s%s", again.code, again.stdout, again.stderr)
	}
	if v := run(t, nil, "verify", "--evidence", f.evidence); v.code != 0 {
		t.Fatalf("verify after the re-run: %d\n%s%s", v.code, v.stdout, v.stderr)
	}
	after := capturedRows(t, f.evidence)
	for id, r := range before {
		if after[id] != r {
			t.Errorf("capture %d recorded before the disk filled changed or vanished: %+v -> %+v", id, r, after[id])
		}
	}
	checkOneCaptureEach(t, f)
}

func TestConcurrentSnapshotsOnOneStore(t *testing.T) {
	t.Parallel()
	bin := backfillBinary(t)
	// About 3.6 s of captures: well past the second run's one-second wait
	// for a lock being released.
	f := newFleet(t, 60, 40*time.Millisecond)
	args := []string{"--evidence", f.evidence, "snapshot", "--inventory", f.inventory, "--concurrency", "2"}
	first := exec.Command(bin, args...)
	first.Env = processEnv(f.env)
	var firstOut syncBuffer // read while the process may still write
	first.Stdout, first.Stderr = &firstOut, &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var firstErr error
	go func() { firstErr = first.Wait(); close(exited) }()
	// A failing test must not leave the process writing into its temp dir.
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			first.Process.Kill()
			<-exited
		}
	})
	// The first run holds the store once it records anything.
	deadline := time.Now().Add(60 * time.Second)
	for countRows(t, f.evidence, "SELECT count(*) FROM captures") < 1 {
		select {
		case <-exited:
			t.Fatalf("first snapshot ended before it captured anything (%v):\n%s", firstErr, firstOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("first snapshot made no progress:\n%s", firstOut.String())
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}

	second := exec.Command(bin, args...)
	second.Env = processEnv(f.env)
	var secondOut, secondErr strings.Builder
	second.Stdout, second.Stderr = &secondOut, &secondErr
	err := second.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if code == 0 {
			t.Fatal("the first snapshot finished before the second started; the test proves nothing")
		}
	default:
	}
	if code != 1 || !strings.Contains(secondErr.String(), f.evidence) || !strings.Contains(secondErr.String(), "another snapshot, audit or apply is running") {
		t.Fatalf("second snapshot: exit %d, want 1 naming the store and the running snapshot\nstdout:\n%s\nstderr:\n%s", code, secondOut.String(), secondErr.String())
	}
	t.Logf("second snapshot refused: %s", secondErr.String())
	<-exited
	if firstErr != nil {
		t.Fatalf("first snapshot: %v\n%s", firstErr, firstOut.String())
	}
	if !strings.Contains(firstOut.String(), "snapshot complete") {
		t.Fatalf("first snapshot:\n%s", firstOut.String())
	}
	// The refused run recorded nothing: two listings per tenant, from the
	// first (not listed yet, then listed).
	if n := countRows(t, f.evidence, "SELECT count(*) FROM listings"); n != 6 {
		t.Errorf("%d listings, want the first run's 6", n)
	}
	if v := run(t, nil, "verify", "--evidence", f.evidence); v.code != 0 {
		t.Fatalf("verify: %d\n%s%s", v.code, v.stdout, v.stderr)
	}
	checkOneCaptureEach(t, f)
}

// addOwnClusterTenant adds tenant "delta" to f on a PostgreSQL cluster of
// its own, so that the test can stop and restart its server, with n live
// workspaces read by the file collector.
func addOwnClusterTenant(t *testing.T, f *fleet, n int) *pgtest.Cluster {
	t.Helper()
	cl, err := pgtest.Start()
	if err != nil {
		t.Skipf("SKIPPED: no PostgreSQL cluster of its own: %v", err)
	}
	t.Cleanup(cl.Close)
	dsn, err := cl.CreateDB(context.Background(), "delta", true)
	if err != nil {
		t.Fatal(err)
	}
	f.dsns["delta"] = dsn
	root := filepath.Join(f.dir, "live", "delta")
	f.roots["delta"] = root
	var rows []ws
	for i := 0; i < n; i++ {
		id := uuidFor(4, i)
		rows = append(rows, ws{id: id, name: fmt.Sprintf("delta-ws-%d", i)})
		if err := filesapi.WriteConfig(root, id, []byte(seoConfig)); err != nil {
			t.Fatal(err)
		}
		f.live["delta/"+id] = seoConfig
	}
	insertRows(t, dsn, rows...)
	inv, err := os.ReadFile(f.inventory)
	if err != nil {
		t.Fatal(err)
	}
	inv = fmt.Appendf(inv, "  - name: delta\n    dsn: %q\n    collector:\n      file: \"%s/{workspace_id}/config.yaml\"\n", dsn, root)
	if err := os.WriteFile(f.inventory, inv, 0o600); err != nil {
		t.Fatal(err)
	}
	return cl
}

// lockTable holds an ACCESS EXCLUSIVE lock on workspaces, which even a
// plain SELECT waits for, until the returned func is called. Errors on
// release are ignored: the server may have been stopped under the session.
func lockTable(t *testing.T, dsn string) (release func()) {
	return holdLock(t, dsn, "LOCK TABLE workspaces IN ACCESS EXCLUSIVE MODE")
}

func TestFaultPostgresRestartedDuringSnapshot(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 6, 5*time.Millisecond)
	cl := addOwnClusterTenant(t, f, 4)
	// delta's listing waits on a lock while the other tenants are listed and
	// captured; then delta's server goes down under it.
	release := lockTable(t, f.dsns["delta"])
	done := make(chan result, 1)
	go func() { done <- f.snapshot(t, "--concurrency", "4") }()
	waitForLockWait(t, f.dsns["delta"])
	if err := cl.Stop(); err != nil {
		t.Fatal(err)
	}
	release()
	res := <-done
	if res.code != 3 || !strings.Contains(res.stdout, "tenant delta not listed") || !strings.Contains(res.stdout, "captured now 18,") {
		t.Fatalf("exit %d, want 3 with delta not listed and the 18 others captured\n%s%s", res.code, res.stdout, res.stderr)
	}
	t.Logf("with delta's server down:\n%s", res.stdout)
	st := run(t, nil, "status", "--evidence", f.evidence)
	if !strings.Contains(st.stdout, "last listing failed") {
		t.Errorf("status does not show delta's failed listing:\n%s", st.stdout)
	}

	if err := cl.Restart(); err != nil {
		t.Fatal(err)
	}
	again := f.snapshot(t)
	if again.code != 0 || !strings.Contains(again.stdout, "captured now 4, captured earlier 18") {
		t.Fatalf("re-run after the restart: exit %d\n%s%s", again.code, again.stdout, again.stderr)
	}
	if v := run(t, nil, "verify", "--evidence", f.evidence); v.code != 0 {
		t.Fatalf("verify: %d\n%s%s", v.code, v.stdout, v.stderr)
	}
	checkOneCaptureEach(t, f)
}

// TestFaultPostgresRestartedInsideApplyTransaction stops a tenant's server
// while its apply transaction has written one row and waits on the next:
// TestApplyTenantDatabaseStoppedMidApply covers a server that is down when
// its tenant's turn comes; this is the server going away mid-transaction.
func TestFaultPostgresRestartedInsideApplyTransaction(t *testing.T) {
	f := newPlanFixture(t, "acme")
	f.planAndApprove(t)
	// acme's items run in id order: seo-1 is updated, then the update of
	// seo-2-restarted waits on this lock.
	release := lockRow(t, f.dsns["acme"], f.ids["seo-2-restarted"])
	done := make(chan result, 1)
	go func() { done <- f.apply(t, "--execute", "--lock-timeout", "60s") }()
	waitForLockWait(t, f.dsns["acme"])
	if err := f.clusters["acme"].Stop(); err != nil {
		t.Fatal(err)
	}
	release()
	res := <-done
	if res.code != 3 || !strings.Contains(res.stdout, "tenant acme: failed 2") || !strings.Contains(res.stdout, "rolled back") {
		t.Fatalf("exit %d, want 3 with acme failed and rolled back\n%s%s", res.code, res.stdout, res.stderr)
	}
	t.Logf("with acme's server stopped mid-transaction:\n%s", res.stdout)
	if s := f.row(t, "concierge", "org-concierge"); s.template != "platform-agent" {
		t.Errorf("the other tenant was not applied: %+v", s)
	}

	if err := f.clusters["acme"].Restart(); err != nil {
		t.Fatal(err)
	}
	// The update of seo-1 died with its transaction.
	if s := f.row(t, "acme", "seo-1"); s.template != "" || s.writes != 0 {
		t.Fatalf("seo-1 holds a write from the aborted transaction: %+v", s)
	}
	again := f.apply(t, "--execute")
	if again.code != 0 || !strings.Contains(again.stdout, "tenant acme: applied 2") {
		t.Fatalf("re-run after the restart: %d\n%s%s", again.code, again.stdout, again.stderr)
	}
	for tenant, names := range agreed {
		for _, n := range names {
			if s := f.row(t, tenant, n); s.writes != 1 || s.template == "" {
				t.Errorf("%s: %+v, want written exactly once", n, s)
			}
		}
	}
	if v := runAt(t, nil, "verify"); v.code != 0 {
		t.Fatalf("verify: %s", v.stdout)
	}
}

// dropProxy forwards TCP connections on loopback to the server of dsn,
// closing the first drop of them at once, as a restarting pooler or a
// failover would. It returns a DSN through the proxy and its connection
// count.
func dropProxy(t *testing.T, dsn string, drop int32) (string, *atomic.Int32) {
	t.Helper()
	return pgtest.FaultyProxy(t, dsn, drop, func(client net.Conn) { client.Close() })
}

// A session dropped before it started while plan reads a tenant is tried
// again: the tenant is planned, not reported unreachable.
func TestPlanRetriesATenantRead(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 0)
	if res := f.snapshot(t); res.code != 0 {
		t.Fatal(res.stderr)
	}
	proxied, conns := dropProxy(t, f.dsns["gamma"], 1)
	f.repoint(t, "gamma", proxied)
	cp := writeFile(t, filepath.Join(f.dir, "cp.csv"), "tenant,workspace_id,template\n")
	planPath := filepath.Join(f.dir, "plan.json")
	res := runAt(t, f.env, "--evidence", f.evidence, "plan", "--inventory", f.inventory, "--cp", cp, "--catalog", fixture.CatalogDir(t),
		"--out", planPath, "--author", "ops")
	if res.code != 0 || conns.Load() < 2 {
		t.Fatalf("exit %d after %d connections to gamma\n%s%s", res.code, conns.Load(), res.stdout, res.stderr)
	}
	p, err := plan.LoadPlan(planPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range p.Databases {
		if d.Unreachable != "" {
			t.Errorf("tenant %s planned unreachable: %s", d.Tenant, d.Unreachable)
		}
	}
}

// A connection dropped while listing a tenant is retried like a capture
// would be; a server's refusal is not.
func TestSnapshotRetriesATenantListing(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 0)
	proxied, conns := dropProxy(t, f.dsns["gamma"], 1)
	f.repoint(t, "gamma", proxied)
	res := f.snapshot(t, "--retries", "2")
	if res.code != 0 || conns.Load() < 2 {
		t.Fatalf("exit %d after %d connections\n%s%s", res.code, conns.Load(), res.stdout, res.stderr)
	}
	if got := capturedSet(t, f, f.evidence); len(got) != len(f.live) {
		t.Fatalf("captured %d of %d", len(got), len(f.live))
	}

	g := newFleet(t, 1, 0)
	cfg, _ := pgx.ParseConfig(g.dsns["gamma"])
	proxied, conns = dropProxy(t, strings.Replace(g.dsns["gamma"], "/"+cfg.Database+"?", "/no_such_database?", 1), 0)
	g.repoint(t, "gamma", proxied)
	res = g.snapshot(t, "--retries", "2")
	if res.code != 3 || !strings.Contains(res.stderr+res.stdout, "no_such_database") || conns.Load() != 1 {
		t.Fatalf("exit %d after %d connections, want 3 after 1\n%s%s", res.code, conns.Load(), res.stdout, res.stderr)
	}
}
