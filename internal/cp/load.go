package cp

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Load reads claims from a file path (format from its extension, see Parse)
// or, when src starts with postgres:// or postgresql://, from the rows of
// query, run in a READ ONLY transaction. ctx bounds the database work.
//
// The query must return exactly three columns named tenant, workspace_id and
// template, in any order (alias them with AS). Columns are matched by name,
// not position, so that a query listing them in another order cannot swap
// templates and tenants unnoticed. Any column type is read as its text form,
// so a uuid workspace_id works; a NULL workspace_id is a tenant-wide claim.
//
// Errors about the database never contain the connection string's password:
// they name the source by host and database only.
func Load(ctx context.Context, src, query string) (*Records, error) {
	if isPostgres(src) {
		return loadPostgres(ctx, src, query)
	}
	if strings.TrimSpace(query) != "" {
		// A query next to a file would be ignored; refusing it catches a
		// --cp that was meant to be a database.
		return nil, fmt.Errorf("%s: a CP query needs a postgres:// source, not a file", src)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, err
	}
	return Parse(src, data)
}

func isPostgres(src string) bool {
	return strings.HasPrefix(src, "postgres://") || strings.HasPrefix(src, "postgresql://")
}

// dsnInfo is what may be said about a connection string in errors.
type dsnInfo struct {
	label   string   // "postgres://host:port/db"
	secrets []string // values to blank out of any message
}

// describeDSN finds the password in every spelling it may take in the URL, so
// that scrub can remove it from messages written by pgx or the server.
func describeDSN(src string) (dsnInfo, error) {
	u, err := url.Parse(src)
	if err != nil {
		// url.Error quotes the whole URL, password included: say nothing of it.
		return dsnInfo{label: "postgres source"}, errors.New("cp: postgres source is not a valid URL")
	}
	q := u.Query()
	host := u.Host
	if host == "" {
		host = q.Get("host") // a unix socket directory
	}
	info := dsnInfo{label: "postgres://" + host + u.Path}
	var raw []string
	if p, ok := u.User.Password(); ok {
		raw = append(raw, p)
	}
	for k, vs := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			raw = append(raw, vs...)
		}
	}
	for _, s := range raw {
		// Also as it may be written escaped in the URL, in case a message
		// quotes the URL undecoded.
		for _, v := range []string{s, url.QueryEscape(s), url.PathEscape(s), url.UserPassword("", s).String()[1:]} {
			if v != "" && !slices.Contains(info.secrets, v) {
				info.secrets = append(info.secrets, v)
			}
		}
	}
	// Longest first, so a secret containing another is replaced whole.
	slices.SortFunc(info.secrets, func(a, b string) int { return len(b) - len(a) })
	return info, nil
}

func (d dsnInfo) scrub(msg string) string {
	for _, s := range d.secrets {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}

// fail reports a database error by host and database, scrubbed. The pgx error
// is not wrapped, as unwrapping it could reach the raw connection string; only
// a context error is, so callers can still tell a timeout or cancellation.
func (d dsnInfo) fail(ctx context.Context, what string, err error) error {
	// Only the foreign text is scrubbed: a short password such as "postgres"
	// would otherwise mangle the label too.
	msg := fmt.Sprintf("cp %s: %s: %s", d.label, what, d.scrub(err.Error()))
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", msg, ctxErr)
	}
	return errors.New(msg)
}

func loadPostgres(ctx context.Context, src, query string) (*Records, error) {
	d, err := describeDSN(src)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(query) == "" {
		return nil, fmt.Errorf("cp %s: no query: a postgres source needs one returning tenant, workspace_id, template", d.label)
	}
	cfg, err := pgx.ParseConfig(src)
	if err != nil {
		return nil, d.fail(ctx, "connection string", err)
	}
	// Read-only for the whole session as well as the transaction, so nothing
	// the query sets can make it writable.
	cfg.RuntimeParams["default_transaction_read_only"] = "on"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, d.fail(ctx, "connect", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()

	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, d.fail(ctx, "begin read-only transaction", err)
	}
	// Nothing is written, so the transaction is always rolled back.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	// One text format code applies to every column, whatever its type.
	rows, err := tx.Query(ctx, query, pgx.QueryResultFormats{pgx.TextFormatCode})
	if err != nil {
		return nil, d.fail(ctx, "query", err)
	}
	defer rows.Close()
	col, err := queryColumns(rows.FieldDescriptions())
	if err != nil {
		// A query failing as it runs (not as it is prepared) has no columns
		// yet; its own error is the one to report.
		rows.Close()
		if qerr := rows.Err(); qerr != nil {
			return nil, d.fail(ctx, "query", qerr)
		}
		return nil, fmt.Errorf("cp %s: query: %w", d.label, err)
	}
	var b builder
	for n := 1; rows.Next(); n++ {
		var v [3]pgtype.Text
		dest := make([]any, len(fieldNames))
		for f, c := range col {
			dest[c] = &v[f]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, d.fail(ctx, "query row "+strconv.Itoa(n), err)
		}
		source := "query row " + strconv.Itoa(n)
		for _, f := range []int{idxTenant, idxTemplate} {
			if !v[f].Valid {
				return nil, fmt.Errorf("cp %s: %s: %s is NULL", d.label, source, fieldNames[f])
			}
		}
		c, err := newClaim(v[idxTenant].String, v[idxWorkspaceID].String, v[idxTemplate].String,
			func(string) string { return source }, source)
		if err != nil {
			// The message quotes values from the database.
			return nil, fmt.Errorf("cp %s: %s", d.label, d.scrub(err.Error()))
		}
		b.add(c)
	}
	if err := rows.Err(); err != nil {
		return nil, d.fail(ctx, "query", err)
	}
	return b.records(), nil
}

// queryColumns maps each field (in fieldNames order) to its result column.
func queryColumns(fds []pgconn.FieldDescription) ([3]int, error) {
	col := [3]int{-1, -1, -1}
	names := make([]string, len(fds))
	for i, fd := range fds {
		names[i] = fd.Name
	}
	if len(fds) != len(fieldNames) {
		return col, fmt.Errorf("returns %d columns (%s), want 3: tenant, workspace_id, template", len(fds), strings.Join(names, ", "))
	}
	for i, n := range names {
		f := fieldIndex(n)
		if f < 0 || col[f] >= 0 {
			return col, fmt.Errorf("returns columns %s, want tenant, workspace_id, template in any order (use AS to name them)", strings.Join(names, ", "))
		}
		col[f] = i
	}
	return col, nil
}
