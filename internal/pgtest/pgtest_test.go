package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// startExtra starts a cluster private to the test, treating failure like
// NewDB does.
func startExtra(t *testing.T) *Cluster {
	t.Helper()
	c, err := Start()
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestTenantDBHasSchema(t *testing.T) {
	t.Parallel()
	conn := connect(t, NewTenantDB(t))
	ctx := context.Background()
	var id string
	if err := conn.QueryRow(ctx,
		`INSERT INTO workspaces (name, status) VALUES ('w1', 'online') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	var name, status string
	if err := conn.QueryRow(ctx,
		`SELECT name, status::text FROM workspaces WHERE id = $1`, id).Scan(&name, &status); err != nil {
		t.Fatal(err)
	}
	if name != "w1" || status != "online" {
		t.Fatalf("read back (%q, %q), want (w1, online)", name, status)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO workspaces (name, status) VALUES ('w2', 'bogus')`); err == nil {
		t.Fatal("status outside the enum was accepted")
	}
}

func TestNewDBIsEmpty(t *testing.T) {
	t.Parallel()
	conn := connect(t, NewDB(t))
	var n int
	if err := conn.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("public schema has %d relations, want 0", n)
	}
}

func TestTenantDBsAreIndependent(t *testing.T) {
	t.Parallel()
	dsnA, dsnB := NewTenantDB(t), NewTenantDB(t)
	if dsnA == dsnB {
		t.Fatalf("same DSN twice: %s", dsnA)
	}
	a, b := connect(t, dsnA), connect(t, dsnB)
	ctx := context.Background()
	if _, err := a.Exec(ctx, `INSERT INTO workspaces (name) VALUES ('only-in-a')`); err != nil {
		t.Fatal(err)
	}
	var nA, nB int
	if err := a.QueryRow(ctx, `SELECT count(*) FROM workspaces`).Scan(&nA); err != nil {
		t.Fatal(err)
	}
	if err := b.QueryRow(ctx, `SELECT count(*) FROM workspaces`).Scan(&nB); err != nil {
		t.Fatal(err)
	}
	if nA != 1 || nB != 0 {
		t.Fatalf("rows: a=%d b=%d, want 1 and 0", nA, nB)
	}
}

// TestParallelTenantDBs races the lazy template build and many clones.
func TestParallelTenantDBs(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]bool{}
	for i := range 12 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			dsn := NewTenantDB(t)
			mu.Lock()
			dup := seen[dsn]
			seen[dsn] = true
			mu.Unlock()
			if dup {
				t.Fatalf("duplicate DSN %s", dsn)
			}
			var n int
			if err := connect(t, dsn).QueryRow(context.Background(), `SELECT count(*) FROM workspaces`).Scan(&n); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDropOnCleanup(t *testing.T) {
	t.Parallel()
	var dsn string
	t.Run("inner", func(t *testing.T) { dsn = NewDB(t) })
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	var exists bool
	admin := connect(t, NewDB(t))
	if err := admin.QueryRow(context.Background(),
		`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, cfg.Database).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("database %s still exists after its test ended", cfg.Database)
	}
}

func TestStopRestart(t *testing.T) {
	t.Parallel()
	c := startExtra(t)
	ctx := context.Background()
	dsn, err := c.CreateDB(ctx, "fault", true)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO workspaces (name, status) VALUES ('survivor', 'online')`); err != nil {
		t.Fatal(err)
	}

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT 1`); err == nil {
		t.Fatal("open connection still works after Stop")
	}
	conn.Close(ctx)
	if conn, err := pgx.Connect(ctx, dsn); err == nil {
		conn.Close(ctx)
		t.Fatal("connected after Stop")
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(); err == nil {
		t.Fatal("Restart of a running server succeeded")
	}
	var status string
	if err := connect(t, dsn).QueryRow(ctx,
		`SELECT status::text FROM workspaces WHERE name = 'survivor'`).Scan(&status); err != nil {
		t.Fatal(err)
	}
	if status != "online" {
		t.Fatalf("status %q after restart, want online", status)
	}
	// The template survives a restart too.
	if _, err := c.CreateDB(ctx, "after_restart", true); err != nil {
		t.Fatal(err)
	}

	c.Close()
	if _, err := os.Stat(c.Dir()); !os.IsNotExist(err) {
		t.Fatalf("cluster dir %s not removed by Close: %v", c.Dir(), err)
	}
}

// TestDatabaseURL re-runs itself in a child test binary pointed at an extra
// cluster through EnvDatabaseURL, so the child takes the existing-server path.
func TestDatabaseURL(t *testing.T) {
	if os.Getenv("PGTEST_URL_CHILD") == "1" {
		if c := Shared(); c != nil {
			t.Fatalf("Shared() = %v, want nil with %s", c, EnvDatabaseURL)
		}
		conn := connect(t, NewTenantDB(t))
		if _, err := conn.Exec(context.Background(), `INSERT INTO workspaces (name, status) VALUES ('w', 'online')`); err != nil {
			t.Fatal(err)
		}
		connect(t, NewDB(t))
		return
	}
	t.Parallel()
	c := startExtra(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestDatabaseURL$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "PGTEST_URL_CHILD=1", EnvDatabaseURL+"="+c.DSN("postgres"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestDatabaseURL") {
		t.Fatalf("child run failed: %v\n%s", err, out)
	}
	rows, err := connect(t, c.DSN("postgres")).Query(context.Background(),
		`SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'`)
	if err != nil {
		t.Fatal(err)
	}
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(dbs) != 0 {
		t.Fatalf("child left databases behind: %v", dbs)
	}
}

func TestNewURLServer(t *testing.T) {
	s, err := newURLServer("postgres://u:p@db.example:5433/main?sslmode=disable&dbname=x")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.dsn("t_1"), "postgres://u:p@db.example:5433/t_1?sslmode=disable"; got != want {
		t.Fatalf("dsn = %q, want %q", got, want)
	}
	if _, err := newURLServer("host=/tmp dbname=x"); err == nil {
		t.Fatal("keyword/value DSN accepted")
	}
}

// recordTB captures what unavailable does instead of ending the test.
type recordTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordTB) Helper()                        {}
func (r *recordTB) Fatalf(format string, a ...any) { r.fatal = fmt.Sprintf(format, a...) }
func (r *recordTB) Skipf(format string, a ...any)  { r.skip = fmt.Sprintf(format, a...) }

func TestUnavailable(t *testing.T) {
	reason := fmt.Errorf("no binaries")
	for _, tc := range []struct {
		ci       string
		wantFail bool
	}{{"true", true}, {"1", true}, {"", false}, {"false", false}} {
		t.Setenv("CI", tc.ci)
		var r recordTB
		unavailable(&r, reason)
		msg := r.skip
		if tc.wantFail {
			msg = r.fatal
		}
		if msg == "" || (r.fatal != "" && r.skip != "") || !strings.Contains(msg, "no binaries") {
			t.Errorf("CI=%q: fatal=%q skip=%q", tc.ci, r.fatal, r.skip)
		}
	}
}

func TestDBName(t *testing.T) {
	long := "TestSomething/with spaces & UPPER/" + strings.Repeat("x", 100)
	a, b := dbName(long), dbName(long)
	if a == b {
		t.Fatalf("dbName not unique: %s", a)
	}
	for _, n := range []string{a, b, dbName("TestX#01"), dbName("")} {
		if len(n) > 63 || strings.Trim(n, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			t.Errorf("bad name %q", n)
		}
	}
	if got := dbName("TestA/b c"); !strings.HasPrefix(got, "testa_b_c_") {
		t.Errorf("dbName = %q", got)
	}
}
