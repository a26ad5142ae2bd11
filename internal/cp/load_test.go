package cp

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"backfill/internal/pgtest"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// cpDB returns the DSN of a fresh database holding a cp_claims table.
func cpDB(t *testing.T) string {
	t.Helper()
	dsn := pgtest.NewDB(t)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(t.Context(), `
		CREATE TABLE cp_claims (id serial, tenant text, workspace_id uuid, template text);
		INSERT INTO cp_claims (tenant, workspace_id, template) VALUES
			('jrs-seo', NULL, 'seo-agent'),
			('molecules-seo', NULL, 'seo-agent'),
			('concierge', NULL, 'platform-agent'),
			('concierge', '`+strings.ToUpper(wsA)+`', ' concierge-agent '),
			('concierge', '`+wsA+`', 'other-agent');
		CREATE TABLE t (x int);`)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

func TestLoadPostgres(t *testing.T) {
	dsn := cpDB(t)
	// Columns in another order than the file header, matched by name.
	recs, err := Load(t.Context(), dsn, `SELECT template, workspace_id, tenant FROM cp_claims ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	want := []Claim{
		{"concierge", "", "platform-agent", "query row 3"},
		{"concierge", wsA, "concierge-agent", "query row 4"},
		{"concierge", wsA, "other-agent", "query row 5"},
		{"jrs-seo", "", "seo-agent", "query row 1"},
		{"molecules-seo", "", "seo-agent", "query row 2"},
	}
	if got := recs.Claims(); !slices.Equal(got, want) {
		t.Errorf("Claims() =\n%q\nwant\n%q", got, want)
	}
	if tpl, level, src := recs.For("concierge", wsA); !slices.Equal(tpl, []string{"concierge-agent", "other-agent"}) || level != LevelWorkspace || !slices.Equal(src, []string{"query row 4", "query row 5"}) {
		t.Errorf("For(concierge, wsA) = %q, %q, %q", tpl, level, src)
	}

	// The same claims from a file digest the same: the digest ignores the source.
	file := mustLoad(t, "cp.csv", header+"jrs-seo,,seo-agent\nmolecules-seo,,seo-agent\nconcierge,,platform-agent\n"+
		"concierge,"+wsA+",concierge-agent\nconcierge,"+wsA+",other-agent\n")
	if recs.Digest() != file.Digest() {
		t.Error("query and file with the same claims digest differently")
	}

	// postgresql:// is accepted too.
	alt := "postgresql://" + strings.TrimPrefix(dsn, "postgres://")
	if r, err := Load(t.Context(), alt, `SELECT 'a' AS tenant, NULL AS workspace_id, 'b' AS template`); err != nil || r.Len() != 1 {
		t.Errorf("postgresql:// source: %v", err)
	}
}

func TestLoadPostgresErrors(t *testing.T) {
	dsn := cpDB(t)
	label := dsnLabel(t, dsn)
	tests := []struct{ name, query, want string }{
		{"no query", "  ", label + ": no query"},
		{"two columns", `SELECT tenant, template FROM cp_claims`, label + ": query: returns 2 columns (tenant, template), want 3"},
		{"four columns", `SELECT id, tenant, workspace_id, template FROM cp_claims`, "returns 4 columns (id, tenant, workspace_id, template), want 3"},
		{"unnamed columns", `SELECT tenant, workspace_id, template AS tpl FROM cp_claims`, "returns columns tenant, workspace_id, tpl, want tenant, workspace_id, template in any order (use AS to name them)"},
		{"column twice", `SELECT tenant, workspace_id, tenant FROM cp_claims`, "returns columns tenant, workspace_id, tenant"},
		{"null tenant", `SELECT NULL::text AS tenant, NULL AS workspace_id, 'x' AS template`, label + ": query row 1: tenant is NULL"},
		{"null template", `SELECT * FROM (VALUES ('a', NULL, 'x'), ('b', NULL, NULL)) v(tenant, workspace_id, template)`, "query row 2: template is NULL"},
		{"empty template", `SELECT 'a' AS tenant, NULL AS workspace_id, '' AS template`, label + ": query row 1: template is empty"},
		{"bad workspace id", `SELECT 'a' AS tenant, 'abc' AS workspace_id, 'x' AS template`, label + `: query row 1: workspace_id "abc" is not a UUID`},
		{"sql error", `SELECT nope AS tenant, NULL AS workspace_id, 'x' AS template`, label + `: query: ERROR: column "nope" does not exist (SQLSTATE 42703)`},
		{"two statements", `SELECT 1; SELECT 2`, "--cp-query: line 1: ';' ends the statement before the end of the query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(t.Context(), dsn, tt.query)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v\nwant it to contain %q", err, tt.want)
			}
		})
	}

	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := Load(ctx, dsn, `SELECT 'a' AS tenant, NULL AS workspace_id, 'x' AS template`)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	})
}

// dsnLabel is how errors should name dsn: scheme, host and database only.
func dsnLabel(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host
	if host == "" {
		host = u.Query().Get("host") // pgtest's own cluster listens on a unix socket
	}
	return "cp postgres://" + host + u.Path
}

// TestLoadPostgresHidesPassword checks every error path that could quote the
// connection string or a value derived from it.
func TestLoadPostgresHidesPassword(t *testing.T) {
	const secret = "s3cr3t-Pa55word"
	check := func(t *testing.T, err error, wantLabel string) {
		t.Helper()
		if err == nil {
			t.Fatal("no error")
		}
		for e := err; e != nil; e = errors.Unwrap(e) {
			if msg := e.Error(); strings.Contains(msg, secret) || strings.Contains(msg, url.QueryEscape(secret)) {
				t.Fatalf("error shows the password: %s", msg)
			}
		}
		if !strings.Contains(err.Error(), wantLabel) {
			t.Errorf("error %q does not name %q", err, wantLabel)
		}
	}

	// Nothing listens on port 1 of the loopback address.
	t.Run("unreachable host, password in userinfo", func(t *testing.T) {
		_, err := Load(t.Context(), "postgres://cp_reader:"+secret+"@127.0.0.1:1/control?connect_timeout=5", "SELECT 1")
		check(t, err, "cp postgres://127.0.0.1:1/control: connect:")
	})
	t.Run("unreachable host, password in parameters", func(t *testing.T) {
		_, err := Load(t.Context(), "postgresql://127.0.0.1:1/control?user=cp&password="+url.QueryEscape(secret)+"&connect_timeout=5", "SELECT 1")
		check(t, err, "cp postgres://127.0.0.1:1/control: connect:")
	})
	t.Run("escaped password", func(t *testing.T) {
		odd := secret + "/@:?"
		_, err := Load(t.Context(), "postgres://cp:"+url.PathEscape(odd)+"@127.0.0.1:1/control?connect_timeout=5", "SELECT 1")
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("bad parameter", func(t *testing.T) {
		_, err := Load(t.Context(), "postgres://cp:"+secret+"@127.0.0.1:1/control?sslmode=bogus", "SELECT 1")
		check(t, err, "cp postgres://127.0.0.1:1/control: connection string:")
	})
	t.Run("invalid URL", func(t *testing.T) {
		_, err := Load(t.Context(), "postgres://cp:"+secret+"@[::1/control", "SELECT 1")
		check(t, err, "postgres source is not a valid URL")
	})
	t.Run("no query", func(t *testing.T) {
		_, err := Load(t.Context(), "postgres://cp:"+secret+"@127.0.0.1:1/control", "")
		check(t, err, "cp postgres://127.0.0.1:1/control: no query")
	})

	// A real server: the password is in the DSN, and the server's own error
	// message quotes it back as a value.
	dsn := pgtest.NewDB(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pw := secret
	if p, ok := u.User.Password(); ok {
		pw = p // a test server that needs its own password keeps it
	} else {
		u.User = url.UserPassword(u.User.Username(), secret)
	}
	withPW := u.String()
	label := dsnLabel(t, dsn)
	t.Run("server error quoting the password", func(t *testing.T) {
		_, err := Load(t.Context(), withPW, `SELECT '`+pw+`'::int AS tenant, NULL AS workspace_id, 'x' AS template`)
		if err == nil || strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "invalid input syntax for type integer") {
			t.Fatalf("error %v", err)
		}
		check(t, err, label+": query:")
	})
	t.Run("value quoting the password", func(t *testing.T) {
		_, err := Load(t.Context(), withPW, `SELECT 'a' AS tenant, '`+pw+`' AS workspace_id, 'x' AS template`)
		if err == nil || strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "is not a UUID") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		v := *u
		v.User = url.UserPassword(u.User.Username(), secret+"-wrong")
		_, err := Load(t.Context(), v.String(), `SELECT 'a' AS tenant, NULL AS workspace_id, 'x' AS template`)
		if err == nil {
			t.Skip("the test server trusts every connection, so a wrong password is not refused")
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("error shows the password: %v", err)
		}
	})
}

func TestIsDatabase(t *testing.T) {
	for src, want := range map[string]bool{
		"postgres://h/db":                     true,
		"postgresql://h/db":                   true,
		"host=h dbname=cp user=reader":        true,
		" dbname = cp ":                       true,
		"search_path=x host=h":                true, // a connection keyword anywhere
		"host=h password='unterminated":       true, // broken, but a DSN: never read as a path
		"dbname=cp.csv":                       true,
		"cp.csv":                              false,
		"/data/run=3/cp.csv":                  false,
		"./dbname=cp.csv":                     false,
		"a=b":                                 false,
		"search_path=x":                       false,
		"":                                    false,
		"/tmp/TestX/host=1/cp.yaml":           false,
		"postgres.csv":                        false,
		"C:\\cp\\host=h.json":                 false,
		"sslmode=disable":                     true,
		"application_name=backfill dbname=cp": true,
	} {
		if got := IsDatabase(src); got != want {
			t.Errorf("IsDatabase(%q) = %v, want %v", src, got, want)
		}
	}
}

// TestLoadKeywordValueDSN reads claims through a libpq key=value string and
// checks how errors name it.
func TestLoadKeywordValueDSN(t *testing.T) {
	dsn := cpDB(t)
	src := kvDSN(t, dsn, "")
	recs, err := Load(t.Context(), src, `SELECT tenant, workspace_id, template FROM cp_claims ORDER BY id`)
	if err != nil || recs.Len() != 5 {
		t.Fatalf("key=value source: %d claims, %v", recs.Len(), err)
	}
	fromURL, err := Load(t.Context(), dsn, `SELECT tenant, workspace_id, template FROM cp_claims ORDER BY id`)
	if err != nil || fromURL.Digest() != recs.Digest() {
		t.Errorf("URL and key=value sources read different claims: %v", err)
	}

	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	label := fmt.Sprintf("cp host=%s port=%d dbname=%s: ", quoteKeywordValue(cfg.Host), cfg.Port, cfg.Database)
	_, err = Load(t.Context(), src, `SELECT nope AS tenant, NULL AS workspace_id, 'x' AS template`)
	if err == nil || !strings.HasPrefix(err.Error(), label+`query: ERROR: column "nope" does not exist`) {
		t.Errorf("error %v, want it to start with %q", err, label)
	}
	if _, err := Load(t.Context(), src, ""); err == nil || !strings.HasPrefix(err.Error(), label+"no query") {
		t.Errorf("no query: error %v", err)
	}
}

func TestLoadKeywordValueHidesPassword(t *testing.T) {
	const secret = "kv-s3cr3t-Pa55"
	for _, tt := range []struct{ src, want string }{
		{"host=127.0.0.1 port=1 dbname=control user=cp password=" + secret + " connect_timeout=5",
			"cp host=127.0.0.1 port=1 dbname=control: connect:"},
		{`host=127.0.0.1 port=1 dbname='my control' password='` + secret + `\'x' connect_timeout=5`,
			"cp host=127.0.0.1 port=1 dbname='my control': connect:"},
		{"host=127.0.0.1 port=1 password=" + secret + " sslmode=bogus", "cp host=127.0.0.1 port=1: connection string:"},
		{"host=127.0.0.1 password='" + secret, "postgres source is not a valid key=value connection string"},
	} {
		_, err := Load(t.Context(), tt.src, claimsSQL)
		if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%q): error %v, want it to contain %q and not the password", strings.Fields(tt.src)[0], err, tt.want)
		}
	}
}
