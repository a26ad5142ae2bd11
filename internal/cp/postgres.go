package cp

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"backfill/internal/secret"
)

// IsDatabase reports whether Load reads src as a PostgreSQL connection string
// rather than a file: a postgres:// or postgresql:// URL, or a libpq
// key=value string with at least one connection keyword (host=…, dbname=…,
// user=…; see connKeywords). So a file whose name holds '=' is still a file
// unless its name reads as such a DSN (prefix it with ./ then).
func IsDatabase(src string) bool {
	if isURL(src) {
		return true
	}
	if set, err := secret.DSNSettings(src); err == nil {
		for k := range set {
			if connKeywords[k] {
				return true
			}
		}
	}
	// One that does not parse (an unterminated quote, say) is still a
	// connection string when it opens with a connection keyword: read as a
	// path, its password would be quoted in the "no such file" error.
	key, _, ok := strings.Cut(src, "=")
	return ok && connKeywords[strings.TrimSpace(key)]
}

func isURL(src string) bool {
	return strings.HasPrefix(src, "postgres://") || strings.HasPrefix(src, "postgresql://")
}

// connKeywords are the connection parameters of libpq and pgx. Runtime
// parameters (search_path=…) are valid in a DSN too, but alone they do not
// make a string a DSN rather than a path.
var connKeywords = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true, "password": true,
	"passfile": true, "service": true, "servicefile": true, "connect_timeout": true,
	"client_encoding": true, "options": true, "application_name": true, "fallback_application_name": true,
	"keepalives": true, "keepalives_idle": true, "keepalives_interval": true, "keepalives_count": true,
	"tcp_user_timeout": true, "require_auth": true, "channel_binding": true, "replication": true,
	"gssencmode": true, "gsslib": true, "gssdelegation": true, "krbsrvname": true, "requirepeer": true,
	"sslmode": true, "sslnegotiation": true, "sslcompression": true, "sslcert": true, "sslkey": true,
	"sslpassword": true, "sslcertmode": true, "sslrootcert": true, "sslcrl": true, "sslcrldir": true,
	"sslsni": true, "ssl_min_protocol_version": true, "ssl_max_protocol_version": true,
	"target_session_attrs": true, "load_balance_hosts": true, "min_read_buffer_size": true,
	"statement_cache_capacity": true, "description_cache_capacity": true, "default_query_exec_mode": true,
}

// dsnInfo is what may be said about a connection string in errors.
type dsnInfo struct {
	label   string   // "postgres://host:port/db" or "host=… port=… dbname=…"
	secrets []string // passwords to mask in any message (secret.MaskPasswords)
}

// describeDSN finds the password in every spelling it may take in the
// connection string, so that scrub can remove it from messages written by pgx
// or the server.
func describeDSN(src string) (dsnInfo, error) {
	if !isURL(src) {
		return describeKeywordValue(src)
	}
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
	if p, ok := u.User.Password(); ok {
		info.addSecret(p)
	}
	for k, vs := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			for _, v := range vs {
				info.addSecret(v)
			}
		}
	}
	return info, nil
}

// describeKeywordValue is describeDSN for host=… dbname=… strings; the label
// names the host, port and database as the URL form's does.
func describeKeywordValue(src string) (dsnInfo, error) {
	set, err := secret.DSNSettings(src)
	if err != nil {
		// err never quotes src.
		return dsnInfo{label: "postgres source"}, fmt.Errorf("cp: postgres source is not a valid key=value connection string: %v", err)
	}
	var parts []string
	for _, k := range []string{"host", "hostaddr", "port", "dbname"} {
		if v, ok := set[k]; ok {
			parts = append(parts, k+"="+quoteKeywordValue(v))
		}
	}
	info := dsnInfo{label: strings.Join(parts, " ")}
	if info.label == "" {
		info.label = "postgres source"
	}
	pws, err := secret.DSNPasswords(src)
	if err != nil {
		return dsnInfo{label: "postgres source"}, fmt.Errorf("cp: postgres source is not a valid key=value connection string: %v", err)
	}
	for _, p := range pws {
		info.addSecret(p)
	}
	return info, nil
}

// quoteKeywordValue writes v as libpq would read it back.
func quoteKeywordValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r\v\f'\\") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

func (d *dsnInfo) addSecret(s string) {
	if s != "" && !slices.Contains(d.secrets, s) {
		d.secrets = append(d.secrets, s)
	}
}

func (d dsnInfo) scrub(msg string) string { return secret.MaskPasswords(msg, d.secrets...) }

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
		return nil, fmt.Errorf("cp %s: no query: a postgres source needs --cp-query returning tenant, workspace_id, template", d.label)
	}
	// Before connecting: a query that could write never reaches the server.
	if err := checkQuery(query); err != nil {
		return nil, err
	}
	return runQuery(ctx, d, src, query)
}

// readOnlyConfig parses src and overrides whatever in it could let the query
// write or run more than one statement.
func readOnlyConfig(src string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(src)
	if err != nil {
		return nil, err
	}
	// The extended protocol's Parse message takes one statement only; the
	// simple protocol, which a DSN can ask for with default_query_exec_mode,
	// would run "SELECT …; ROLLBACK; BEGIN READ WRITE; INSERT …" whole.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeDescribeExec
	// Read-only for the whole session as well as the transaction. These
	// startup parameters also win over the same settings given in options=.
	cfg.RuntimeParams["default_transaction_read_only"] = "on"
	// So that backslashes in '…' mean to the server what they meant to
	// checkQuery's lexer.
	cfg.RuntimeParams["standard_conforming_strings"] = "on"
	return cfg, nil
}

// runQuery connects and reads the claims. It does not call checkQuery, so
// that tests can show the server-side guards hold on their own.
func runQuery(ctx context.Context, d dsnInfo, src, query string) (*Records, error) {
	cfg, err := readOnlyConfig(src)
	if err != nil {
		return nil, d.fail(ctx, "connection string", err)
	}
	// The password may also come from PGPASSWORD or a passfile.
	d.addSecret(cfg.Password)
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
	// BEGIN READ ONLY is what makes this transaction read-only; this only
	// keeps the default on within it too, should a role or database setting
	// have turned it off, so nothing the query inspects says otherwise.
	if _, err := tx.Exec(ctx, "SET LOCAL default_transaction_read_only = on"); err != nil {
		return nil, d.fail(ctx, "set read-only", err)
	}

	// The mode is given again here so that nothing set on the connection can
	// change it; one text format code applies to every column, whatever its type.
	rows, err := tx.Query(ctx, query, pgx.QueryExecModeDescribeExec, pgx.QueryResultFormats{pgx.TextFormatCode})
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
