package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"backfill/apply/plan"

	"github.com/jackc/pgx/v5"

	"backfill/internal/pgtest"
)

// cpVictimDB returns the DSN of a CP database holding the fixture's cp.csv
// as cp_claims, an empty victim table and a function that writes to it.
func cpVictimDB(t *testing.T, f *planFixture) string {
	t.Helper()
	dsn := pgtest.NewDB(t)
	execSQL(t, dsn, `CREATE TABLE cp_claims (tenant text, workspace_id text, template text);
CREATE TABLE victim (note text);
CREATE FUNCTION scribble() RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  INSERT INTO victim VALUES ('scribbled');
  RETURN 'acme';
END $$;`)
	b, err := os.ReadFile(filepath.Join(f.dir, "cp.csv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
		v := strings.Split(line, ",")
		execSQL(t, dsn, `INSERT INTO cp_claims VALUES ($1, $2, $3)`, v[0], v[1], v[2])
	}
	return dsn
}

func cpVictimNotes(t *testing.T, dsn string) []string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, _ := conn.Query(context.Background(), `SELECT note FROM victim`)
	notes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return notes
}

// keywordValueDSN rewrites a pgtest URL as a libpq key=value string.
func keywordValueDSN(t *testing.T, dsn, extra string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := func(v string) string { return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'" }
	return fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=disable %s", q(cfg.Host), cfg.Port, q(cfg.Database), q(cfg.User), extra)
}

// TestPlanCPQueryReadOnly runs plan with a CP database: a key=value DSN reads
// the same claims as the CSV and records no password, and no --cp-query gets
// a write through, whatever the DSN asks for.
func TestPlanCPQueryReadOnly(t *testing.T) {
	f := newPlanFixture(t)
	cpDSN := cpVictimDB(t, f)
	const password = "kv-cp-Pw-5150"
	runPlan := func(src, query, out string) result {
		t.Helper()
		return runAt(t, f.env, "plan", "--inventory", "inventory.yaml", "--catalog", "catalog",
			"--cp", src, "--cp-query", query, "--out", out)
	}

	if res := f.plan(t); res.code != 0 {
		t.Fatalf("plan from cp.csv: %d\n%s", res.code, res.stderr)
	}
	fromCSV, err := plan.LoadPlan("plan.json")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("key=value DSN end to end", func(t *testing.T) {
		src := keywordValueDSN(t, cpDSN, "password="+password)
		res := runPlan(src, "SELECT tenant, workspace_id, template FROM cp_claims;", "kv.json")
		if res.code != 0 {
			t.Fatalf("plan: exit %d\n%s", res.code, res.stderr)
		}
		p, err := plan.LoadPlan("kv.json")
		if err != nil {
			t.Fatal(err)
		}
		if p.Inputs.CP.SHA256 != fromCSV.Inputs.CP.SHA256 || p.Inputs.CP.Claims != fromCSV.Inputs.CP.Claims {
			t.Errorf("CP input %+v, want the claims of cp.csv %+v", p.Inputs.CP, fromCSV.Inputs.CP)
		}
		if !strings.Contains(p.Inputs.CP.Source, "password=xxxxx") || !strings.HasPrefix(p.Inputs.CP.Source, "host=") {
			t.Errorf("CP source %q, want the DSN with its password masked", p.Inputs.CP.Source)
		}
		raw, _ := os.ReadFile("kv.json")
		if strings.Contains(string(raw)+res.stdout+res.stderr, password) {
			t.Error("the password reached the plan or the output")
		}
	})

	refused := []struct{ name, src, query, want string }{
		{"simple protocol escape", withPassword(cpDSN, password) + "&default_query_exec_mode=simple_protocol",
			"SELECT tenant, workspace_id, template FROM cp_claims; ROLLBACK; BEGIN READ WRITE; INSERT INTO victim VALUES ('escaped'); COMMIT",
			"--cp-query: line 1: ';' ends the statement"},
		{"simple protocol escape, key=value", keywordValueDSN(t, cpDSN, "default_query_exec_mode=simple_protocol password="+password),
			"SELECT tenant, workspace_id, template FROM cp_claims; ROLLBACK; BEGIN READ WRITE; INSERT INTO victim VALUES ('escaped'); COMMIT;",
			"--cp-query: line 1: ';' ends the statement"},
		{"data-modifying CTE", keywordValueDSN(t, cpDSN, ""),
			"WITH w AS (INSERT INTO victim VALUES ('cte') RETURNING note) SELECT tenant, workspace_id, template FROM cp_claims, w",
			"--cp-query: line 1: INSERT writes"},
		{"select into", cpDSN, "SELECT tenant, workspace_id, template INTO stolen FROM cp_claims", "SELECT … INTO creates a table"},
		{"writing function", keywordValueDSN(t, cpDSN, "default_query_exec_mode=simple_protocol options='-c default_transaction_read_only=off'"),
			"SELECT scribble() AS tenant, NULL AS workspace_id, 'seo-agent' AS template",
			"cannot execute INSERT in a read-only transaction"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			res := runPlan(tt.src, tt.query, "refused.json")
			if res.code != 1 || !strings.Contains(res.stderr, tt.want) || strings.Contains(res.stdout+res.stderr, password) {
				t.Errorf("exit %d, want 1 with %q and no password\n%s", res.code, tt.want, res.stderr)
			}
			if notes := cpVictimNotes(t, cpDSN); len(notes) != 0 {
				t.Fatalf("the CP database was written: victim holds %q", notes)
			}
			if _, err := os.Stat("refused.json"); err == nil {
				t.Error("a refused CP query still wrote a plan")
			}
		})
	}
}
