package cp

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// claimsSQL returns one claim; the tests below append their attempts to write.
const claimsSQL = `SELECT 'a' AS tenant, NULL AS workspace_id, 'b' AS template`

// escapeSQL leaves the READ ONLY transaction and commits a write of its own,
// which only the simple protocol would run.
const escapeSQL = claimsSQL + `; ROLLBACK; BEGIN READ WRITE; INSERT INTO victim VALUES ('escaped'); COMMIT`

// victimDB returns the DSN of a database with an empty victim table and a
// volatile function that writes to it.
func victimDB(t *testing.T) string {
	t.Helper()
	dsn := cpDB(t)
	execSQL(t, dsn, `CREATE TABLE victim (note text);
		CREATE FUNCTION scribble() RETURNS text LANGUAGE plpgsql VOLATILE AS $$
		BEGIN
			INSERT INTO victim VALUES ('scribbled');
			RETURN 'a';
		END $$;`)
	return dsn
}

func execSQL(t *testing.T, dsn, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatal(err)
	}
}

// assertVictimEmpty fails the test if anything was written to victim.
func assertVictimEmpty(t *testing.T, dsn string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var notes []string
	rows, _ := conn.Query(t.Context(), `SELECT note FROM victim`)
	notes, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(notes) != 0 {
		t.Fatalf("victim holds %q (err %v), want nothing written", notes, err)
	}
}

// kvDSN rewrites a pgtest URL as a libpq key=value string, adding extra.
func kvDSN(t *testing.T, dsn, extra string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	s := fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=disable",
		quoteKeywordValue(cfg.Host), cfg.Port, quoteKeywordValue(cfg.Database), quoteKeywordValue(cfg.User))
	if cfg.Password != "" {
		s += " password=" + quoteKeywordValue(cfg.Password)
	}
	return strings.TrimSpace(s + " " + extra)
}

// withParam adds a query parameter to a pgtest URL.
func withParam(dsn, kv string) string {
	if strings.Contains(dsn, "?") {
		return dsn + "&" + kv
	}
	return dsn + "?" + kv
}

var execModes = []string{"simple_protocol", "exec", "cache_statement", "cache_describe", "describe_exec"}

// TestRunQueryForcesExtendedProtocol bypasses checkQuery: whatever execution
// mode the DSN asks for, the server receives the query through Parse, which
// refuses a second statement, so nothing after the SELECT runs.
func TestRunQueryForcesExtendedProtocol(t *testing.T) {
	dsn := victimDB(t)
	for _, mode := range execModes {
		for form, src := range map[string]string{
			"url":       withParam(dsn, "default_query_exec_mode="+mode),
			"key=value": kvDSN(t, dsn, "default_query_exec_mode="+mode),
		} {
			t.Run(mode+" "+form, func(t *testing.T) {
				d, err := describeDSN(src)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := runQuery(t.Context(), d, src, claimsSQL); err != nil {
					t.Fatalf("a single SELECT fails: %v", err)
				}
				_, err = runQuery(t.Context(), d, src, escapeSQL)
				if err == nil || !strings.Contains(err.Error(), "cannot insert multiple commands into a prepared statement") {
					t.Errorf("error %v, want the server to refuse several statements", err)
				}
				assertVictimEmpty(t, dsn)
			})
		}
	}
}

// TestLoadRefusesEscapeBeforeConnecting: the same query through Load is
// refused by checkQuery, before any connection (the host here refuses them).
func TestLoadRefusesEscapeBeforeConnecting(t *testing.T) {
	dsn := victimDB(t)
	for _, src := range []string{
		withParam(dsn, "default_query_exec_mode=simple_protocol"),
		kvDSN(t, dsn, "default_query_exec_mode=simple_protocol"),
		"postgres://cp@127.0.0.1:1/cp?default_query_exec_mode=simple_protocol",
	} {
		for _, q := range []string{escapeSQL, escapeSQL + ";", "SELECT 1; SELECT 2"} {
			_, err := Load(t.Context(), src, q)
			if err == nil || !strings.HasPrefix(err.Error(), "--cp-query: line 1: ';' ends the statement") {
				t.Errorf("Load(%q): error %v, want --cp-query refused", q, err)
			}
		}
	}
	assertVictimEmpty(t, dsn)
}

// TestLoadRefusesDataModifyingCTE: refused by checkQuery, and the READ ONLY
// transaction stops it too when checkQuery is bypassed.
func TestLoadRefusesDataModifyingCTE(t *testing.T) {
	dsn := victimDB(t)
	q := `WITH x AS (INSERT INTO victim VALUES ('cte') RETURNING 1) ` + claimsSQL + ` FROM x`
	_, err := Load(t.Context(), dsn, q)
	if err == nil || !strings.Contains(err.Error(), "--cp-query: line 1: INSERT writes") {
		t.Errorf("Load: error %v, want --cp-query refused", err)
	}
	d, _ := describeDSN(dsn)
	_, err = runQuery(t.Context(), d, dsn, q)
	if err == nil || !strings.Contains(err.Error(), "in a read-only transaction (SQLSTATE 25006)") {
		t.Errorf("runQuery: error %v, want a read-only transaction error", err)
	}
	assertVictimEmpty(t, dsn)
}

// TestLoadStopsWritingFunction: a function call passes checkQuery, as it
// should, and the READ ONLY transaction stops its write, even when the DSN
// asks for a writable session (and other string quoting) by every means it has.
func TestLoadStopsWritingFunction(t *testing.T) {
	dsn := victimDB(t)
	// A database default is overridden by the session's startup parameter,
	// and the transaction is read-only whatever the session says.
	execSQL(t, dsn, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = off', current_database()); END $$`)
	writable := "default_transaction_read_only=off&options=" + strings.NewReplacer(" ", "%20", "=", "%3D").Replace("-c default_transaction_read_only=off -c transaction_read_only=off -c standard_conforming_strings=off")
	for _, src := range []string{dsn, withParam(dsn, writable), kvDSN(t, dsn, `default_transaction_read_only=off standard_conforming_strings=off options='-c default_transaction_read_only=off'`)} {
		for _, q := range []string{
			`SELECT scribble() AS tenant, NULL AS workspace_id, 'b' AS template`,
			`SELECT tenant, workspace_id, template FROM cp_claims WHERE scribble() IS NOT NULL`,
		} {
			_, err := Load(t.Context(), src, q)
			if err == nil || !strings.Contains(err.Error(), "cannot execute INSERT in a read-only transaction (SQLSTATE 25006)") {
				t.Errorf("Load(%q): error %v, want a read-only transaction error", q, err)
			}
		}
		// Every read-only setting holds inside the query, and the lexer and
		// the server read backslashes alike.
		recs, err := Load(t.Context(), src, `SELECT current_setting('transaction_read_only') || current_setting('default_transaction_read_only')
			|| current_setting('standard_conforming_strings') AS tenant, NULL AS workspace_id, 'x' AS template`)
		if err != nil || recs.Tenants()[0] != "ononon" {
			t.Errorf("settings inside the query: %q %v, want on, on, on", recs.Tenants(), err)
		}
	}
	assertVictimEmpty(t, dsn)
}

// TestCheckQueryAgreesWithServer prepares every query checkQuery accepts on
// a real server: each is exactly one statement there too (a syntax error
// would mean the lexer and PostgreSQL read it differently).
func TestCheckQueryAgreesWithServer(t *testing.T) {
	dsn := cpDB(t)
	cfg, err := readOnlyConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, tt := range cpQueryCases {
		if tt.want != "" {
			continue
		}
		_, err := conn.Prepare(t.Context(), "", tt.query)
		if err != nil && (strings.Contains(err.Error(), "42601") || strings.Contains(err.Error(), "multiple commands")) {
			t.Errorf("%s: checkQuery accepts %q, the server reads it otherwise: %v", tt.name, tt.query, err)
		}
	}
}
