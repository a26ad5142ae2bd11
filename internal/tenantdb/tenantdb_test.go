package tenantdb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"backfill/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func seed(t *testing.T) string {
	t.Helper()
	dsn := pgtest.NewTenantDB(t)
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(context.Background(), `INSERT INTO workspaces (id, name, template, status, kind, instance_id) VALUES
  ('00000000-0000-4000-8000-000000000001', 'set', 'seo-agent', 'online', 'workspace', 'ws-1'),
  ('00000000-0000-4000-8000-000000000002', 'empty', '', 'hibernated', 'platform', NULL),
  ('00000000-0000-4000-8000-000000000003', 'gone', '', 'removed', 'workspace', NULL)`)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

func TestListLiveSkipsRemovedAndPutsEmptyTemplatesFirst(t *testing.T) {
	rows, _, err := ListLiveIdentified(context.Background(), seed(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Name != "empty" || rows[1].Name != "set" {
		t.Fatalf("rows = %+v", rows)
	}
	if rows[0].Status != "hibernated" || rows[0].Kind != "platform" || rows[0].InstanceID != nil || rows[1].Instance() != "ws-1" {
		t.Fatalf("pre-image columns: %+v", rows)
	}
	all, err := ListAll(context.Background(), seed(t), Options{})
	if err != nil || len(all) != 3 {
		t.Fatalf("ListAll: %d rows, %v", len(all), err)
	}
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	dsn := seed(t)
	conn, err := Connect(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	err = ReadOnly(context.Background(), conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), SetTemplateSQL, "00000000-0000-4000-8000-000000000002", "seo-agent", "claude-code", "workspace")
		return err
	})
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "25006" {
		t.Fatalf("write in a READ ONLY transaction: %v, want SQLSTATE 25006", err)
	}
}

func TestSessionSettings(t *testing.T) {
	conn, err := Connect(context.Background(), seed(t), Options{LockTimeout: 1500 * time.Millisecond, StatementTimeout: 7 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for setting, want := range map[string]string{"application_name": "backfill", "lock_timeout": "1500ms", "statement_timeout": "7s"} {
		var got string
		if err := conn.QueryRow(context.Background(), "SELECT current_setting($1)", setting).Scan(&got); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", setting, got, err, want)
		}
	}
	if _, err := Connect(context.Background(), "postgres://u:hunter2@[bad", Options{}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad dsn error: %v", err)
	}
}

// TestDSNApplicationNameKept: a DSN's own application_name is kept, with
// backfill's appended; the search_path a DSN asks for is not used.
func TestDSNApplicationNameKept(t *testing.T) {
	dsn := seed(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	conn, err := Connect(context.Background(), dsn+sep+"application_name=ops-bastion&search_path=elsewhere", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for setting, want := range map[string]string{"application_name": "ops-bastion/backfill", "search_path": "pg_catalog, public"} {
		var got string
		if err := conn.QueryRow(context.Background(), "SELECT current_setting($1)", setting).Scan(&got); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", setting, got, err, want)
		}
	}
}

// Only failures that may pass on a second try are retried: a blip, not a
// server saying no.
func TestTransient(t *testing.T) {
	ctx := context.Background()
	tenant := pgtest.NewTenantDB(t)
	noSchema := pgtest.NewDB(t)
	noDB := strings.Replace(tenant, "/"+dbName(t, tenant)+"?", "/no_such_database?", 1)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	// A server that accepts and never answers: the connect times out.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// Two hosts: the first never answers, the second refuses (no such
	// database). pgx joins both errors into one.
	refusing, _ := pgtest.FaultyProxy(t, noDB, 0, nil)
	u, err := url.Parse(refusing)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = silent.Addr().String() + "," + u.Host
	silentThenRefused := u.String()
	cases := []struct {
		name      string
		ctx       context.Context
		dsn       string
		transient bool
		timedOut  bool // ConnectTimedOut
	}{
		{"connection refused", ctx, "postgres://u:p@127.0.0.1:1/x?connect_timeout=2", true, false},
		{"no workspaces table", ctx, noSchema, false, false},
		{"no such database", ctx, noDB, false, false},
		{"malformed DSN", ctx, "postgres://u:p@host:notaport/x", false, false},
		{"interrupted", cancelled, tenant, false, false},
		{"timed out", ctx, "postgres://u:p@" + silent.Addr().String() + "/x?sslmode=disable", false, true},
		{"socket missing while the server restarts", ctx, "postgres://u@/x?host=" + t.TempDir() + "&port=5432", true, false},
		{"no such host", ctx, "postgres://u:p@no-such-host.invalid/x?connect_timeout=2", false, false},
		{"one host timed out, the other refused", ctx, silentThenRefused, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ListLiveIdentified(tc.ctx, tc.dsn, Options{ConnectTimeout: time.Second})
			if err == nil {
				t.Fatal("no error")
			}
			if got := Transient(err); got != tc.transient {
				t.Errorf("Transient(%v) = %v, want %v", err, got, tc.transient)
			}
			want := tc.timedOut
			// A resolver that did not answer in time (a machine without
			// DNS) is a session that never started, as a silent server is.
			var dnsErr *net.DNSError
			if errors.As(err, &dnsErr) && dnsErr.IsTimeout {
				want = true
			}
			if got := ConnectTimedOut(err); got != want {
				t.Errorf("ConnectTimedOut(%v) = %v, want %v", err, got, want)
			}
		})
	}
	if Transient(nil) || !Transient(&pgconn.PgError{Code: "57P01"}) || Transient(&pgconn.PgError{Code: "42501"}) ||
		Transient(&pgconn.PgError{Code: "57014"}) {
		t.Error("SQLSTATE classes misjudged")
	}
	// A statement that timed out, or a context that ended after the
	// session started, is not a session that never started.
	if ConnectTimedOut(context.DeadlineExceeded) || ConnectTimedOut(&pgconn.PgError{Code: "57014"}) || ConnectTimedOut(nil) {
		t.Error("a timeout after connect taken for one while connecting")
	}
}

func dbName(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

// ListLiveIdentified reads its rows in text format (one round trip, nothing described
// first); they are the rows ListAll reads, to the microsecond, whatever the
// session's time zone.
func TestListLiveReadsWhatListAllReads(t *testing.T) {
	dsn := seed(t)
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(context.Background(), `UPDATE workspaces SET updated_at = '2026-03-29 01:30:00.123456+00'`)
	conn.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	live, _, err := ListLiveIdentified(context.Background(), dsn+sep+"timezone=Europe/Berlin", Options{})
	if err != nil {
		t.Fatal(err)
	}
	all, err := ListAll(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]string{}
	for _, r := range all {
		inst := r.Instance()
		r.InstanceID = nil
		byID[r.ID] = fmt.Sprintf("%+v %q", r, inst)
	}
	for _, r := range live {
		inst := r.Instance()
		r.InstanceID = nil
		if got := fmt.Sprintf("%+v %q", r, inst); got != byID[r.ID] {
			t.Errorf("ListLiveIdentified %s, ListAll %s", got, byID[r.ID])
		}
		if !r.UpdatedAt.Equal(time.Date(2026, 3, 29, 1, 30, 0, 123456000, time.UTC)) || r.UpdatedAt.Location() != time.UTC {
			t.Errorf("updated_at = %v", r.UpdatedAt)
		}
	}
}

// A snapshot's listing and a plan's read of a tenant each cost one round
// trip after connect, what a session that runs one query costs: remote
// tenants pay every round trip, hundreds of times over. The plan's read
// names the database it read as Identify does, and its rows are ListAll's.
func TestListingsAreOneRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := seed(t)
	proxied, turns := pgtest.TurnProxy(t, dsn)
	conn, err := pgx.Connect(ctx, proxied)
	if err != nil {
		t.Fatal(err)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol).Scan(&one); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if _, _, err := ListLiveIdentified(ctx, proxied, Options{}); err != nil {
		t.Fatal(err)
	}
	rows, db, err := ListAllIdentified(ctx, proxied, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s := turns.Ended(t, 3); s[1] != s[0] || s[2] != s[0] {
		t.Fatalf("round trips per session %v: one query's, ListLiveIdentified's, ListAllIdentified's; want all equal", s)
	}

	direct, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	tx, err := direct.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	want, err := Identify(ctx, tx)
	if err != nil || db != want || db.Name == "" || db.OID == 0 || db.TableOID == 0 || db.SystemIdentifier == "" {
		t.Fatalf("ListAllIdentified names %+v, Identify %+v (%v)", db, want, err)
	}
	all, err := ListAll(ctx, dsn, Options{})
	if err != nil || !reflect.DeepEqual(all, rows) || len(rows) != 3 {
		t.Fatalf("ListAllIdentified's rows differ from ListAll's (%v):\n%v\n%v", err, rows, all)
	}
}

// Target names hosts, ports and database, never the user or password,
// each host once whatever sslmode's fallbacks add, host names as DNS
// compares them and several hosts in any order alike.
func TestTarget(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://backfill:s3cret-pw@db1.example:6432/molecule?sslmode=require": "db1.example:6432/molecule",
		"postgres://backfill:s3cret-pw@db1.example/molecule":                      "db1.example:5432/molecule",
		"host=db1,db2 port=5432,5433 user=u password=s3cret-pw dbname=m":          "db1:5432,db2:5433/m",
		"host=DB2.,db1 port=5433,5432 dbname=m":                                   "db1:5432,db2:5433/m",
		"host=/tmp/Sock dbname=m":                                                 "/tmp/Sock:5432/m",
		"host=/tmp/sock port=5432 dbname=t sslmode=disable":                       "/tmp/sock:5432/t",
		"host=::1 dbname=v6":                                                      "[::1]:5432/v6",
		"postgres://%zz":                                                          "",
	} {
		got := Target(dsn)
		if got != want || strings.Contains(got, "s3cret") {
			t.Errorf("Target(%q) = %q, want %q", dsn, got, want)
		}
	}
}
