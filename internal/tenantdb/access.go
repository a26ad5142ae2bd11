package tenantdb

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"backfill/internal/workspace"
)

// ListedColumns are the columns of public.workspaces a listing (ListLiveIdentified,
// ListAll) reads: the role that snapshots and plans needs SELECT on each,
// and on nothing else. rowColumns is the query text over the same list.
var ListedColumns = []string{"id", "name", "runtime", "template", "status", "kind", "instance_id", "updated_at"}

// Access is what a session's role may do with public.workspaces, as far as
// a listing needs: read from the catalogs and the privilege functions, so
// that a missing grant is named rather than met as "permission denied"
// part-way through a snapshot.
type Access struct {
	Role        string // current_user
	SchemaUsage bool   // USAGE on schema public
	Table       bool   // public.workspaces exists
	// MissingColumns are listed columns the table lacks; NoSelect those the
	// role may not SELECT (a table-level grant covers every column).
	MissingColumns []string
	NoSelect       []string
	// ReadOnly: the transaction the check ran in is read-only, as every
	// listing's is.
	ReadOnly bool
}

// OK reports whether the role may run a listing.
func (a Access) OK() bool {
	return a.SchemaUsage && a.Table && len(a.MissingColumns) == 0 && len(a.NoSelect) == 0
}

// Missing names what the role lacks, one entry per grant, for an operator
// to act on; empty when OK.
func (a Access) Missing() []string {
	var out []string
	if !a.SchemaUsage {
		out = append(out, "USAGE on schema public")
	}
	switch {
	case !a.Table:
		out = append(out, "table public.workspaces (not found)")
	case len(a.NoSelect) == len(ListedColumns):
		out = append(out, "SELECT on public.workspaces")
	case len(a.NoSelect) > 0:
		out = append(out, "SELECT on public.workspaces ("+strings.Join(a.NoSelect, ", ")+")")
	}
	if len(a.MissingColumns) > 0 {
		out = append(out, "columns "+strings.Join(a.MissingColumns, ", ")+" of public.workspaces (not found)")
	}
	return out
}

// Fix is the statement an administrator runs to give the role what it
// lacks, or "" when nothing a GRANT gives is missing.
func (a Access) Fix() string {
	var stmts []string
	role := pgx.Identifier{a.Role}.Sanitize()
	if !a.SchemaUsage {
		stmts = append(stmts, "GRANT USAGE ON SCHEMA public TO "+role+";")
	}
	if a.Table && len(a.NoSelect) > 0 {
		stmts = append(stmts, "GRANT SELECT ON public.workspaces TO "+role+";")
	}
	return strings.Join(stmts, " ")
}

// CheckAccess reads what the session's role may do with public.workspaces.
// It looks the table up in the catalogs rather than through regclass,
// which fails outright without USAGE on the schema, and asks
// has_column_privilege per column, since SELECT on exactly the listed
// columns is enough. It reads nothing from the table.
func CheckAccess(ctx context.Context, tx pgx.Tx) (Access, error) {
	var a Access
	var table *uint32
	var readOnly string
	err := tx.QueryRow(ctx, `SELECT current_user::text, has_schema_privilege('public', 'USAGE'),
  (SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relname = 'workspaces' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')),
  current_setting('transaction_read_only')`).Scan(&a.Role, &a.SchemaUsage, &table, &readOnly)
	if err != nil {
		return a, err
	}
	a.ReadOnly = readOnly == "on"
	if table == nil {
		return a, nil
	}
	a.Table = true
	rows, err := tx.Query(ctx, `SELECT w.col, a.attnum IS NOT NULL, coalesce(has_column_privilege($1::oid, a.attnum, 'SELECT'), false)
  FROM unnest($2::text[]) WITH ORDINALITY AS w(col, ord)
  LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = $1::oid AND a.attname = w.col AND a.attnum > 0 AND NOT a.attisdropped
  ORDER BY w.ord`, *table, ListedColumns)
	if err != nil {
		return a, err
	}
	defer rows.Close()
	for rows.Next() {
		var col string
		var exists, sel bool
		if err := rows.Scan(&col, &exists, &sel); err != nil {
			return a, err
		}
		switch {
		case !exists:
			a.MissingColumns = append(a.MissingColumns, col)
		case !sel:
			a.NoSelect = append(a.NoSelect, col)
		}
	}
	if err := rows.Err(); err != nil {
		return a, fmt.Errorf("privileges on public.workspaces: %w", err)
	}
	return a, nil
}

// LiveRows is ListLiveIdentified's query run in tx, for a caller that checks the
// session before listing in the same transaction.
func LiveRows(ctx context.Context, tx pgx.Tx) ([]workspace.Row, error) {
	rows, err := tx.Query(ctx, liveQuery)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, ScanRow)
}
