package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// EnvDatabaseURL names the environment variable that points tests at an
// existing server (a postgres:// URL whose role may create databases)
// instead of a private cluster.
const EnvDatabaseURL = "BACKFILL_TEST_DATABASE_URL"

// shared is the test package's server, set up on first use so packages whose
// selected tests need no database never start one.
var shared struct {
	sync.Mutex
	done        bool
	cluster     *Cluster // nil when EnvDatabaseURL is used
	srv         *server
	err         error
	unavailable bool // err means no PostgreSQL here (skip or fail per CI), not a misconfiguration
}

var (
	mainCalled atomic.Bool
	dbSeq      atomic.Uint64
	// runID keeps names unique across test binaries sharing one server.
	runID = func() string {
		b := make([]byte, 4)
		rand.Read(b)
		return hex.EncodeToString(b)
	}()
)

// Main is for TestMain: func TestMain(m *testing.M) { pgtest.Main(m) }. It
// runs the tests, then stops the package's cluster if one was started, and
// exits with the tests' code. The cluster is started on the first NewDB,
// NewTenantDB or Shared call; when EnvDatabaseURL is set, databases are
// created on that server instead.
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	shared.Lock()
	if shared.cluster != nil {
		shared.cluster.Close()
		shared.cluster = nil
	}
	shared.Unlock()
	os.Exit(code)
}

// Shared returns the package's cluster, starting it if needed. It returns nil
// when EnvDatabaseURL is used or no cluster could be started (NewDB then
// skips or fails the test). Tests that need a cluster of their own, e.g. to
// stop it, should call Start instead.
func Shared() *Cluster {
	requireMain()
	setup()
	shared.Lock()
	defer shared.Unlock()
	return shared.cluster
}

// NewDB returns the DSN of a fresh empty database for this test. The database
// is dropped, with any sessions still open on it, when the test ends.
func NewDB(t testing.TB) string {
	t.Helper()
	return newDB(t, false)
}

// NewTenantDB is NewDB with TenantSchema applied.
func NewTenantDB(t testing.TB) string {
	t.Helper()
	return newDB(t, true)
}

func newDB(t testing.TB, tenant bool) string {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("pgtest: this package needs func TestMain(m *testing.M) { pgtest.Main(m) }")
		return ""
	}
	srv, err := setup()
	if err != nil {
		shared.Lock()
		unavail := shared.unavailable
		shared.Unlock()
		if unavail {
			unavailable(t, err)
		} else {
			t.Fatal(err)
		}
		return ""
	}
	name := dbName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn, err := srv.createDB(ctx, name, tenant)
	if err != nil {
		t.Fatal(err)
		return ""
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.dropDB(ctx, name); err != nil {
			t.Error(err)
		}
	})
	return dsn
}

// setup picks the package's server once: EnvDatabaseURL if set, else a
// cluster of our own.
func setup() (*server, error) {
	shared.Lock()
	defer shared.Unlock()
	if shared.done {
		return shared.srv, shared.err
	}
	shared.done = true
	if raw := os.Getenv(EnvDatabaseURL); raw != "" {
		shared.srv, shared.err = newURLServer(raw)
		return shared.srv, shared.err
	}
	c, err := Start()
	if err != nil {
		shared.err, shared.unavailable = err, true
		if !inCI() {
			// One line: the full reason, server log included, is in each skip message.
			fmt.Fprintf(os.Stderr, "pgtest: WARNING: database tests will be SKIPPED (set %s, or CI=true to fail): %s\n",
				EnvDatabaseURL, strings.TrimPrefix(firstLine(err.Error()), "pgtest: "))
		}
		return nil, err
	}
	shared.cluster, shared.srv = c, c.srv
	return shared.srv, nil
}

// unavailable fails the test under CI, where a missing database must not
// pass silently, and skips it elsewhere so the suite runs on bare machines.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if inCI() {
		t.Fatalf("%v (PostgreSQL is required when CI=true)", err)
		return
	}
	t.Skipf("%v (SKIPPED: install PostgreSQL or set %s; CI=true fails instead)", err, EnvDatabaseURL)
}

func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

func requireMain() {
	if !mainCalled.Load() {
		panic("pgtest: this package needs func TestMain(m *testing.M) { pgtest.Main(m) }")
	}
}

// dbName derives a database name from a test name: lower-case letters,
// digits and underscores (so it needs no quoting in psql sessions), unique
// per call, within PostgreSQL's 63-byte limit.
func dbName(testName string) string {
	suffix := fmt.Sprintf("_%s_%d", runID, dbSeq.Add(1))
	var b strings.Builder
	sep := false
	for _, r := range strings.ToLower(testName) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if sep && b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
			sep = false
		} else {
			sep = true
		}
	}
	base := b.String()
	if limit := 63 - len(suffix); len(base) > limit {
		base = strings.TrimRight(base[:limit], "_")
	}
	return base + suffix
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
