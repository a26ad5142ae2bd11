package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"backfill/internal/pgtest"
	"backfill/internal/tenantdb"
)

// TestPrivilegeReadOnlyTransactionRefusesWrites shows that what snapshot and
// plan run inside tenantdb.ReadOnly cannot write, whatever the role may do:
// the server refuses with read_only_sql_transaction.
func TestPrivilegeReadOnlyTransactionRefusesWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewTenantDB(t)
	id := uuidFor(1, 1)
	insertRows(t, dsn, ws{id: id, name: "one"})
	// The superuser: only the transaction mode stands in the way.
	conn, err := tenantdb.Connect(ctx, dsn, tenantdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	writes := []struct {
		sql  string
		args []any
	}{
		{tenantdb.SetTemplateSQL, []any{id, "seo-agent", "claude-code", "workspace"}},
		{tenantdb.ClearTemplateSQL, []any{id, ""}},
		{"INSERT INTO workspaces (name) VALUES ('sneaked-in')", nil},
		{"DELETE FROM workspaces", nil},
		{"CREATE TABLE sneaked_in (x int)", nil},
	}
	for _, w := range writes {
		err := tenantdb.ReadOnly(ctx, conn, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, w.sql, w.args...)
			return err
		})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
			t.Errorf("%s inside ReadOnly: %v, want SQLSTATE 25006 (read_only_sql_transaction)", w.sql, err)
		}
	}
	// The session is still usable and nothing changed.
	rows, err := tenantdb.ListAll(ctx, dsn, tenantdb.Options{})
	if err != nil || len(rows) != 1 || rows[0].Template != "" {
		t.Fatalf("rows after the refused writes: %+v %v", rows, err)
	}
}

// roleDSN is dsn connecting as role with password.
func roleDSN(t *testing.T, dsn, role, password string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	return u.String()
}

// grantPhases applies the README's "Least privilege" grants to one tenant
// database, after revoking what PostgreSQL grants PUBLIC by default, so that
// the two roles hold exactly these privileges and nothing else.
func grantPhases(t *testing.T, dsn, read, write string) {
	t.Helper()
	db := currentDatabase(t, dsn)
	execSQL(t, dsn, fmt.Sprintf(`REVOKE ALL ON DATABASE %[1]s FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT CONNECT ON DATABASE %[1]s TO %[2]s, %[3]s;
GRANT USAGE ON SCHEMA public TO %[2]s, %[3]s;
GRANT SELECT ON workspaces TO %[2]s, %[3]s;
GRANT UPDATE (template, updated_at) ON workspaces TO %[3]s;`, db, read, write))
}

func currentDatabase(t *testing.T, dsn string) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var db string
	if err := conn.QueryRow(context.Background(), "SELECT quote_ident(current_database())").Scan(&db); err != nil {
		t.Fatal(err)
	}
	return db
}

// rowsNow reads template and updated_at of every row, as the superuser.
func rowsNow(t *testing.T, dsn string) map[string]rowState {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), "SELECT id::text, template, updated_at FROM workspaces")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]rowState{}
	for rows.Next() {
		var id string
		var s rowState
		if err := rows.Scan(&id, &s.template, &s.updatedAt); err != nil {
			t.Fatal(err)
		}
		out[id] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPrivilegeMinimalGrantsPerPhase runs every phase through the command
// line as roles holding exactly the grants the README documents.
func TestPrivilegeMinimalGrantsPerPhase(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 0)
	tenants := []string{"alpha", "beta", "gamma"}
	cpDSN := pgtest.NewDB(t)
	execSQL(t, cpDSN, `CREATE TABLE cp_claims (tenant text NOT NULL, workspace_id uuid, template text NOT NULL);
INSERT INTO cp_claims VALUES ('alpha', NULL, 'seo-agent'), ('beta', NULL, 'seo-agent'), ('gamma', NULL, 'seo-agent');
CREATE TABLE cp_other (x text);`)

	// Roles are cluster-wide: unique names, dropped with everything granted
	// to them (this cleanup runs before the databases are dropped).
	suffix := make([]byte, 4)
	rand.Read(suffix)
	read, write := "bf_read_"+hex.EncodeToString(suffix), "bf_write_"+hex.EncodeToString(suffix)
	// noSelect has the write grant without SELECT, to show apply needs both.
	noSelect := "bf_noselect_" + hex.EncodeToString(suffix)
	admin := f.dsns["alpha"]
	var created []string
	t.Cleanup(func() {
		if len(created) == 0 {
			return
		}
		roles := strings.Join(created, ", ")
		for _, dsn := range []string{cpDSN, f.dsns["alpha"], f.dsns["beta"], f.dsns["gamma"]} {
			execSQL(t, dsn, "DROP OWNED BY "+roles)
		}
		execSQL(t, admin, "DROP ROLE "+roles)
	})
	conn, err := pgx.Connect(context.Background(), admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{read, write, noSelect} {
		if _, err = conn.Exec(context.Background(), fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", role, plantedPGPassword)); err != nil {
			break
		}
		created = append(created, role)
	}
	conn.Close(context.Background())
	if err != nil {
		t.Skipf("SKIPPED: this server does not let the test create roles: %v", err)
	}
	for _, tn := range tenants {
		grantPhases(t, f.dsns[tn], read, write)
		execSQL(t, f.dsns[tn], fmt.Sprintf(`GRANT CONNECT ON DATABASE %[1]s TO %[2]s;
GRANT USAGE ON SCHEMA public TO %[2]s;
GRANT UPDATE (template, updated_at) ON workspaces TO %[2]s;`, currentDatabase(t, f.dsns[tn]), noSelect))
	}
	// The CP source: SELECT on the table the query reads, and nothing more.
	cpDB := currentDatabase(t, cpDSN)
	execSQL(t, cpDSN, fmt.Sprintf(`REVOKE ALL ON DATABASE %[1]s FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT CONNECT ON DATABASE %[1]s TO %[2]s;
GRANT USAGE ON SCHEMA public TO %[2]s;
GRANT SELECT ON cp_claims TO %[2]s;`, cpDB, read))

	// One inventory per role; "mixed" has alpha on the read role, beta on
	// the role without SELECT, gamma on the write role.
	invText, err := os.ReadFile(f.inventory)
	if err != nil {
		t.Fatal(err)
	}
	inventory := func(name string, roleOf func(tenant string) string) string {
		var out strings.Builder
		tenant := ""
		for _, line := range strings.SplitAfter(string(invText), "\n") {
			if n, ok := strings.CutPrefix(line, "  - name: "); ok {
				tenant = strings.TrimSpace(n)
			}
			if strings.Contains(line, "dsn:") {
				replaced := strings.Replace(line, "postgres://postgres:", "postgres://"+roleOf(tenant)+":", 1)
				if replaced == line {
					t.Fatalf("cannot set the role in %q", line)
				}
				line = replaced
			}
			out.WriteString(line)
		}
		return writeFile(t, filepath.Join(f.dir, name), out.String())
	}
	invRead := inventory("inv-read.yaml", func(string) string { return read })
	invWrite := inventory("inv-write.yaml", func(string) string { return write })
	invMixed := inventory("inv-mixed.yaml", func(tn string) string {
		return map[string]string{"alpha": read, "beta": noSelect, "gamma": write}[tn]
	})
	writeCatalog(t, filepath.Join(f.dir, "catalog"))
	env := map[string]string{"USER": "alice"}
	for k, v := range f.env {
		env[k] = v
	}
	cli := func(args ...string) result {
		t.Helper()
		return run(t, env, append([]string{"--evidence", f.evidence}, args...)...)
	}
	planPath := filepath.Join(f.dir, "plan.json")
	wantCode := func(what string, res result, code int, wants ...string) {
		t.Helper()
		if res.code != code {
			t.Fatalf("%s: exit %d, want %d\n%s%s", what, res.code, code, res.stdout, res.stderr)
		}
		for _, w := range wants {
			if !strings.Contains(res.stdout, w) {
				t.Fatalf("%s: output lacks %q\n%s%s", what, w, res.stdout, res.stderr)
			}
		}
	}

	// Phase one and plan: the read role.
	wantCode("snapshot as the read role", cli("snapshot", "--inventory", invRead), 0, "snapshot complete")
	// The audit names each database it lists, with the read role's grants.
	wantCode("audit as the read role", cli("audit", "--inventory", invRead), 0, "audit complete")
	wantCode("plan as the read role", cli("plan", "--inventory", invRead, "--catalog", filepath.Join(f.dir, "catalog"),
		"--cp", roleDSN(t, cpDSN, read, plantedPGPassword), "--cp-query", "SELECT tenant, workspace_id, template FROM cp_claims",
		"--out", planPath), 0, "agree")
	// A database's claims are read again only when named again.
	if res := cli("approve", planPath, "--by", "bob"); res.code != 2 || !strings.Contains(res.stderr, "approve needs --catalog DIR and --cp SOURCE") || strings.Contains(res.stderr, plantedPGPassword) {
		t.Fatalf("approve without its inputs named: exit %d\n%s", res.code, res.stderr)
	}
	if res := cli("apply", "--inventory", invRead, "--plan", planPath); res.code != 1 || !strings.Contains(res.stderr, "pass --cp DSN and --cp-query QUERY") {
		t.Fatalf("apply of a plan from a CP database, without it: exit %d\n%s", res.code, res.stderr)
	}
	cpAgain := []string{"--cp", roleDSN(t, cpDSN, read, plantedPGPassword), "--cp-query", "SELECT tenant, workspace_id, template FROM cp_claims"}
	wantCode("approve", cli(append([]string{"approve", planPath, "--catalog", filepath.Join(f.dir, "catalog"), "--by", "bob"}, cpAgain...)...), 0)
	wantCode("apply dry run as the read role", cli(append([]string{"apply", "--inventory", invRead, "--plan", planPath}, cpAgain...)...), 0, "would-write 6")

	// The CP role reads only what it was granted.
	res := cli("plan", "--inventory", invRead, "--catalog", filepath.Join(f.dir, "catalog"),
		"--cp", roleDSN(t, cpDSN, read, plantedPGPassword), "--cp-query", "SELECT x AS tenant, x AS workspace_id, x AS template FROM cp_other",
		"--out", filepath.Join(f.dir, "other.json"))
	if res.code != 1 || !strings.Contains(res.stderr, "permission denied") {
		t.Fatalf("a CP query beyond the grant: exit %d, want 1 with permission denied\n%s", res.code, res.stderr)
	}

	// apply --execute: the read role's tenant fails and nothing of it is
	// written; so does the tenant whose role may UPDATE but not SELECT (the
	// compare-and-swap's WHERE reads id, template and status); the write
	// role's tenant is applied.
	before := map[string]map[string]rowState{"alpha": rowsNow(t, f.dsns["alpha"]), "beta": rowsNow(t, f.dsns["beta"])}
	res = cli(append([]string{"apply", "--inventory", invMixed, "--plan", planPath, "--execute"}, cpAgain...)...)
	t.Logf("apply --execute, alpha on the read role, beta without SELECT:\n%s", res.stdout)
	wantCode("apply --execute with alpha on the read role", res, 3, "tenant alpha: failed 2", "tenant beta: failed 2", "tenant gamma: applied 2")
	if strings.Count(res.stdout, "permission denied for table workspaces") != 2 {
		t.Errorf("want alpha and beta refused with permission denied:\n%s", res.stdout)
	}
	for tn, rows := range before {
		if after := rowsNow(t, f.dsns[tn]); fmt.Sprint(after) != fmt.Sprint(rows) {
			t.Fatalf("%s changed without the grant:\nbefore %v\nafter  %v", tn, rows, after)
		}
	}

	// The write role finishes the plan, then undoes it.
	wantCode("apply --execute as the write role", cli(append([]string{"apply", "--inventory", invWrite, "--plan", planPath, "--execute"}, cpAgain...)...), 0,
		"tenant alpha: applied 2", "tenant beta: applied 2", "tenant gamma: already-applied 2")
	for _, tn := range tenants {
		for id, s := range rowsNow(t, f.dsns[tn]) {
			if s.template != "seo-agent" && !strings.HasSuffix(id, "999") {
				t.Errorf("%s/%s after apply: %+v", tn, id, s)
			}
		}
	}
	wantCode("rollback --execute as the write role", cli("rollback", "--inventory", invWrite, "--plan", planPath, "--execute"), 0,
		"rolled-back 6")
	for _, tn := range tenants {
		n := 0
		for _, s := range rowsNow(t, f.dsns[tn]) {
			if s.template == "" {
				n++
			}
		}
		// Two of each tenant's three live rows were empty before apply; the
		// removed row has been empty all along.
		if n != 3 {
			t.Errorf("%s: %d empty templates after rollback, want 3", tn, n)
		}
	}
	if v := cli("verify"); v.code != 0 {
		t.Fatalf("verify: %s%s", v.stdout, v.stderr)
	}
	// A run after one that died at COMMIT asks the server how that
	// transaction ended (the dry run as the read role); both roles may ask.
	ctx := context.Background()
	committed := tenantTx(t, f.dsns["gamma"], "commit")
	for _, role := range []string{read, write} {
		conn, err := pgx.Connect(ctx, roleDSN(t, f.dsns["gamma"], role, plantedPGPassword))
		if err != nil {
			t.Fatal(err)
		}
		var st string
		err = tenantdb.ReadOnly(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tenantdb.TxID(ctx, tx); err != nil {
				return err
			}
			st, err = tenantdb.TxStatus(ctx, tx, committed)
			return err
		})
		conn.Close(ctx)
		if err != nil || st != "committed" {
			t.Fatalf("transaction status as %s: %q %v", role, st, err)
		}
	}
}
