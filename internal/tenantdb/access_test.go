package tenantdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// exec runs q as the test's superuser.
func exec(t *testing.T, dsn, q string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// role creates a login role on dsn's server holding CONNECT on its
// database and nothing else (PUBLIC's defaults revoked), dropped when the
// test ends, and returns a DSN that logs in as it.
func role(t *testing.T, dsn string) (name, roleDSN string) {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name = "bf_access_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	var db string
	err = conn.QueryRow(context.Background(), "SELECT quote_ident(current_database())").Scan(&db)
	if err == nil {
		_, err = conn.Exec(context.Background(), "CREATE ROLE "+name+" LOGIN")
	}
	conn.Close(context.Background())
	if err != nil {
		t.Skipf("SKIPPED: this server does not let the test create roles: %v", err)
	}
	t.Cleanup(func() {
		exec(t, dsn, "DROP OWNED BY "+name)
		exec(t, dsn, "DROP ROLE "+name)
	})
	exec(t, dsn, fmt.Sprintf(`REVOKE ALL ON DATABASE %[1]s FROM PUBLIC; REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT CONNECT ON DATABASE %[1]s TO %[2]s`, db, name))
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(name)
	return name, u.String()
}

func access(t *testing.T, dsn string) Access {
	t.Helper()
	ctx := context.Background()
	conn, err := Connect(ctx, dsn, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var a Access
	err = ReadOnly(ctx, conn, func(tx pgx.Tx) error {
		a, err = CheckAccess(ctx, tx)
		return err
	})
	if err != nil {
		t.Fatalf("CheckAccess: %v", err)
	}
	return a
}

// TestCheckAccessNamesTheMissingGrant: CheckAccess names what a role lacks
// for a listing (schema USAGE, SELECT on the table or on some of its
// columns), reading nothing from the table; SELECT on exactly
// ListedColumns is enough for ListLiveIdentified, and without any one of them
// ListLiveIdentified fails, so the list and the listing's query cannot drift apart.
func TestCheckAccessNamesTheMissingGrant(t *testing.T) {
	dsn := seed(t)
	name, as := role(t, dsn)
	ctx := context.Background()

	a := access(t, as)
	if a.OK() || a.Role != name || !a.ReadOnly || !slices.Equal(a.Missing(), []string{"USAGE on schema public", "SELECT on public.workspaces"}) {
		t.Fatalf("no grants: %+v %q", a, a.Missing())
	}
	if want := "GRANT USAGE ON SCHEMA public TO \"" + name + "\"; GRANT SELECT ON public.workspaces TO \"" + name + "\";"; a.Fix() != want {
		t.Errorf("fix %q, want %q", a.Fix(), want)
	}

	exec(t, dsn, "GRANT USAGE ON SCHEMA public TO "+name+"; GRANT SELECT (id, name, runtime) ON workspaces TO "+name)
	a = access(t, as)
	if a.OK() || !slices.Equal(a.Missing(), []string{"SELECT on public.workspaces (template, status, kind, instance_id, updated_at)"}) {
		t.Fatalf("some columns: %+v %q", a, a.Missing())
	}
	if _, _, err := ListLiveIdentified(ctx, as, Options{}); !isPermissionDenied(err) {
		t.Fatalf("ListLiveIdentified with some columns: %v", err)
	}

	exec(t, dsn, fmt.Sprintf("GRANT SELECT (%s) ON workspaces TO %s", strings.Join(ListedColumns, ", "), name))
	if a = access(t, as); !a.OK() || len(a.Missing()) != 0 || a.Fix() != "" {
		t.Fatalf("the listed columns: %+v %q", a, a.Missing())
	}
	if rows, _, err := ListLiveIdentified(ctx, as, Options{}); err != nil || len(rows) != 2 {
		t.Fatalf("ListLiveIdentified with SELECT on the listed columns: %d rows, %v", len(rows), err)
	}
	for _, col := range ListedColumns {
		exec(t, dsn, fmt.Sprintf("REVOKE SELECT (%s) ON workspaces FROM %s", col, name))
		if a = access(t, as); a.OK() || !slices.Equal(a.NoSelect, []string{col}) {
			t.Errorf("without %s: %+v", col, a)
		}
		if _, _, err := ListLiveIdentified(ctx, as, Options{}); !isPermissionDenied(err) {
			t.Errorf("ListLiveIdentified without SELECT on %s: %v, want permission denied", col, err)
		}
		exec(t, dsn, fmt.Sprintf("GRANT SELECT (%s) ON workspaces TO %s", col, name))
	}

	// A table without one of the columns: named as missing, not as a grant.
	exec(t, dsn, "GRANT SELECT ON workspaces TO "+name+"; ALTER TABLE workspaces DROP COLUMN instance_id CASCADE")
	if a = access(t, as); a.OK() || !slices.Equal(a.MissingColumns, []string{"instance_id"}) || a.Fix() != "" {
		t.Fatalf("a missing column: %+v %q", a, a.Missing())
	}
	exec(t, dsn, "DROP TABLE workspaces CASCADE")
	if a = access(t, as); a.OK() || a.Table || !slices.Equal(a.Missing(), []string{"table public.workspaces (not found)"}) {
		t.Fatalf("no table: %+v %q", a, a.Missing())
	}
}

func isPermissionDenied(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42501"
}
