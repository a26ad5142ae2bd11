// Package tenantdb is backfill's access to a tenant's PostgreSQL database:
// read-only listings of its workspaces for snapshot and plan, and the
// compare-and-swap writes of apply.
package tenantdb

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"backfill/internal/secret"
	"backfill/internal/workspace"
)

// ApplicationName identifies backfill's sessions in pg_stat_activity.
const ApplicationName = "backfill"

// Options tune a tenant session.
type Options struct {
	ConnectTimeout   time.Duration // default 10s
	LockTimeout      time.Duration // 0: server default
	StatementTimeout time.Duration // 0: server default
	// ReadOnly makes every transaction of the session read-only, a second
	// guard beside BEGIN READ ONLY for sessions that must never write.
	ReadOnly bool
	// ConnectAttempts is how many times Connect tries to open the session
	// when an attempt fails before the session exists (refused, reset, or
	// timed out waiting for the server): nothing has been sent that could
	// change anything, so trying again is safe. 0 or 1: once.
	ConnectAttempts int
}

// connectRetryWait is the wait before a second attempt to connect, doubled
// before each later one.
const connectRetryWait = 500 * time.Millisecond

// ErrInvalidDSN is a DSN that does not parse. The DSN is not quoted: it may
// hold a password.
var ErrInvalidDSN = errors.New("invalid dsn (not shown: it may hold a password)")

// DSNError is why pgx cannot parse a DSN (an sslmode it does not know, a
// port that is not a number), without the DSN or its passwords. It is an
// ErrInvalidDSN.
type DSNError struct {
	Why string
	// Env marks a cause outside the DSN's text: a file it names or the
	// environment points to (a CA, a key, a service file) is missing or
	// unreadable on this machine, which may not be the one that connects.
	Env bool
}

func (e *DSNError) Error() string {
	return "invalid dsn: " + e.Why + " (the dsn is not shown: it may hold a password)"
}

// Is makes a DSNError an ErrInvalidDSN.
func (e *DSNError) Is(target error) bool { return target == ErrInvalidDSN }

// CheckDSN parses dsn as Connect will: nil when it parses, else a
// *DSNError. It reads no network, only the files the DSN names or the
// environment points to.
func CheckDSN(dsn string) error {
	_, err := pgx.ParseConfig(dsn)
	if err == nil {
		return nil
	}
	var pathErr *fs.PathError
	msg := err.Error()
	// pgconn's form is "cannot parse `DSN`: why"; the DSN (its password
	// masked) is the caller's to name, by file and line.
	if rest, ok := strings.CutPrefix(msg, "cannot parse `"); ok {
		if i := strings.Index(rest, "`: "); i >= 0 {
			msg = rest[i+3:]
		}
	}
	pws, perr := secret.DSNPasswords(dsn)
	if perr != nil {
		return &DSNError{Why: "it does not parse"}
	}
	return &DSNError{Why: secret.NewRedactor(pws...).Redact(msg),
		Env: errors.As(err, &pathErr) || strings.HasPrefix(msg, "failed to read service")}
}

// Connect opens one session to a tenant database with backfill's session
// settings. Errors never contain the DSN's password: pgx reports host, user
// and database only.
func Connect(ctx context.Context, dsn string, o Options) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can quote the DSN; say only what is wrong.
		return nil, CheckDSN(dsn)
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	cfg.ConnectTimeout = o.ConnectTimeout
	// A DSN's own application_name says who runs this; keep it and append
	// backfill's, so pg_stat_activity shows both.
	name := ApplicationName
	if own := cfg.RuntimeParams["application_name"]; own != "" && own != ApplicationName {
		name = own + "/" + ApplicationName
	}
	cfg.RuntimeParams["application_name"] = name
	libpqTLS(cfg)
	// Queries name public.workspaces; a fixed search_path also keeps
	// functions and operators from resolving into a schema a DSN chose.
	cfg.RuntimeParams["search_path"] = "pg_catalog, public"
	// A session runs each statement once or a few times: preparing it
	// first (pgx's default) costs a round trip per distinct statement, 50 ms
	// and more to a remote tenant. Exec mode sends parse, bind and execute
	// together, parameters still bound by the server, typed from their Go
	// types; results come back as text.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	if o.LockTimeout > 0 {
		cfg.RuntimeParams["lock_timeout"] = fmt.Sprintf("%dms", o.LockTimeout.Milliseconds())
	}
	if o.StatementTimeout > 0 {
		cfg.RuntimeParams["statement_timeout"] = fmt.Sprintf("%dms", o.StatementTimeout.Milliseconds())
	}
	if o.ReadOnly {
		cfg.RuntimeParams["default_transaction_read_only"] = "on"
	}
	wait := connectRetryWait
	for attempt := 1; ; attempt++ {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil || attempt >= o.ConnectAttempts || ctx.Err() != nil || !Retryable(err) {
			return conn, err
		}
		// A server with many sessions opening at once (a hundred tenant
		// databases on one instance) can keep one waiting past the timeout.
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, err
		}
		wait *= 2
	}
}

// rowColumns reads ListedColumns (access.go), whose SELECT grants a
// listing needs; the two change together.
//
// updated_at is only recorded, never compared; one outside what a Go time
// holds and JSON can encode (NULL, infinity, before year 1, year 10000 or
// later) reads as the epoch, since a single such row must not fail its
// tenant's listing or, encoded into the store, stop the run.
const rowColumns = `id::text, name, coalesce(runtime, ''), template, coalesce(status::text, ''), kind, instance_id,
  CASE WHEN isfinite(updated_at) AND updated_at >= '0001-01-01 00:00:00+00' AND updated_at < '10000-01-01 00:00:00+00'
    THEN updated_at ELSE 'epoch'::timestamptz END`

// ListLiveIdentified returns every workspace whose status is not
// 'removed', those with an empty template first, and names the database it
// read, in a READ ONLY transaction so that a bug here can never write. A
// snapshot's or audit's listing records that database, so that a DSN
// pointed at another one is noticed.
//
// After connect it is one round trip: BEGIN READ ONLY, the queries and
// ROLLBACK are sent together, since a remote tenant is tens of milliseconds
// away and a snapshot lists hundreds of them before capturing.
func ListLiveIdentified(ctx context.Context, dsn string, o Options) ([]workspace.Row, Database, error) {
	return readBatch(ctx, dsn, o, liveQuery, true)
}

// liveQuery lists the live workspaces, those with an empty template first.
const liveQuery = `SELECT ` + rowColumns + ` FROM public.workspaces
  WHERE status IS DISTINCT FROM 'removed' ORDER BY (template = '') DESC, id`

// ListAll returns every workspace row, removed ones included, by id, in a
// READ ONLY transaction.
func ListAll(ctx context.Context, dsn string, o Options) ([]workspace.Row, error) {
	rows, _, err := readBatch(ctx, dsn, o, allQuery, false)
	return rows, err
}

// ListAllIdentified is ListAll, also naming the database it read, in the
// same transaction: a plan records it so that apply can refuse a DSN that
// has since been pointed elsewhere.
func ListAllIdentified(ctx context.Context, dsn string, o Options) ([]workspace.Row, Database, error) {
	return readBatch(ctx, dsn, o, allQuery, true)
}

// allQuery lists every workspace row by id.
const allQuery = `SELECT ` + rowColumns + ` FROM public.workspaces ORDER BY id`

// readBatch runs query (rowColumns, no parameters) in a READ ONLY session,
// sending BEGIN READ ONLY, the identity query when asked, query and
// ROLLBACK as one batch: one round trip after connect.
func readBatch(ctx context.Context, dsn string, o Options, query string, identify bool) ([]workspace.Row, Database, error) {
	o.ReadOnly = true
	var db Database
	conn, err := Connect(ctx, dsn, o)
	if err != nil {
		return nil, db, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	queries := []string{"BEGIN READ ONLY"}
	if identify {
		queries = append(queries, identifyQuery)
	}
	queries = append(queries, query, "ROLLBACK")
	b := &pgconn.Batch{}
	for _, q := range queries {
		b.ExecParams(q, nil, nil, nil, nil)
	}
	mrr := conn.PgConn().ExecBatch(ctx, b)
	var out []workspace.Row
	for i := 0; mrr.NextResult(); i++ {
		// Results come in text format: no statement was described first.
		rows := pgx.RowsFromResultReader(conn.TypeMap(), mrr.ResultReader())
		switch queries[i] {
		case identifyQuery:
			db, err = pgx.CollectExactlyOneRow(rows, scanDatabase)
		case query:
			out, err = pgx.CollectRows(rows, ScanRow)
		default:
			rows.Close()
			err = rows.Err()
		}
		if err != nil {
			mrr.Close()
			return nil, db, err
		}
	}
	if err := mrr.Close(); err != nil {
		return nil, db, err
	}
	return out, db, nil
}

func list(ctx context.Context, dsn string, o Options, query string, args ...any) ([]workspace.Row, error) {
	o.ReadOnly = true
	conn, err := Connect(ctx, dsn, o)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var out []workspace.Row
	err = ReadOnly(ctx, conn, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, ScanRow)
		return err
	})
	return out, err
}

// Database names the database a session reached. The system identifier
// alone is shared by every database of a cluster, by its replicas and by
// restores of it; the name and OID tell a clone made with CREATE DATABASE
// … TEMPLATE, or a database renamed into another's place, from the original.
type Database struct {
	// SystemIdentifier is decimal text: JSON numbers lose precision past 2^53.
	SystemIdentifier string `json:"system_identifier"`
	Name             string `json:"database"`
	OID              uint32 `json:"oid"`
	// TableOID is public.workspaces' own OID: a table dropped and created
	// again, or restored from a dump, is another table.
	TableOID uint32 `json:"table_oid"`
}

// Target names where a DSN leads: its hosts and ports and its database,
// as the driver reads them (the environment's PG* variables and a service
// file included), without user or password; "" when the DSN does not
// parse. A physical copy of a database (a restore, a volume snapshot) has
// every part of the original's identity (Database): only where it runs
// tells them apart. Host names are compared as DNS does (case folded, a
// final dot dropped), and several hosts as a set, whatever their order.
func Target(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return ""
	}
	var hosts []string
	add := func(host string, port uint16) {
		if !strings.HasPrefix(host, "/") { // a socket directory is a path
			host = strings.TrimSuffix(strings.ToLower(host), ".")
		}
		hosts = append(hosts, net.JoinHostPort(host, strconv.Itoa(int(port))))
	}
	add(cfg.Host, cfg.Port)
	for _, f := range cfg.Fallbacks {
		add(f.Host, f.Port)
	}
	slices.Sort(hosts)
	// sslmode=prefer lists each host twice.
	return strings.Join(slices.Compact(hosts), ",") + "/" + cfg.Database
}

// identifyQuery names the database a session reached (Database).
const identifyQuery = `SELECT (SELECT system_identifier FROM pg_control_system())::text, current_database(),
  (SELECT oid FROM pg_database WHERE datname = current_database())::bigint, 'public.workspaces'::regclass::oid::bigint`

// Identify reads the database tx runs in.
func Identify(ctx context.Context, tx pgx.Tx) (Database, error) {
	rows, err := tx.Query(ctx, identifyQuery)
	if err != nil {
		return Database{}, err
	}
	return pgx.CollectExactlyOneRow(rows, scanDatabase)
}

func scanDatabase(r pgx.CollectableRow) (Database, error) {
	var d Database
	var oid, table int64
	err := r.Scan(&d.SystemIdentifier, &d.Name, &oid, &table)
	d.OID, d.TableOID = uint32(oid), uint32(table)
	return d, err
}

// Same reports whether d and e are the same database.
func (d Database) Same(e Database) bool { return d == e }

// Ident is the database's identity as text, stored in audits and compared
// as text from one audit to the next: its form never changes. The name
// comes last, so that any character in it is unambiguous.
func (d Database) Ident() string {
	if d == (Database{}) {
		return ""
	}
	return fmt.Sprintf("system %s, database oid %d, public.workspaces oid %d, name %s", d.SystemIdentifier, d.OID, d.TableOID, d.Name)
}

// String names the database for messages.
func (d Database) String() string {
	return fmt.Sprintf("database %q (oid %d, public.workspaces oid %d) of system %s", d.Name, d.OID, d.TableOID, d.SystemIdentifier)
}

// GetRow reads one workspace's row, READ ONLY; false when it does not
// exist.
func GetRow(ctx context.Context, dsn string, o Options, id string) (workspace.Row, bool, error) {
	rows, err := list(ctx, dsn, o, `SELECT `+rowColumns+` FROM public.workspaces WHERE id::text = $1`, id)
	if err != nil || len(rows) == 0 {
		return workspace.Row{}, false, err
	}
	return rows[0], true, nil
}

// ReadOnly runs fn in a READ ONLY transaction and always rolls it back.
func ReadOnly(ctx context.Context, conn *pgx.Conn, fn func(pgx.Tx) error) error {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return fn(tx)
}

// ScanRow reads the columns of rowColumns.
func ScanRow(r pgx.CollectableRow) (workspace.Row, error) {
	var w workspace.Row
	err := r.Scan(&w.ID, &w.Name, &w.Runtime, &w.Template, &w.Status, &w.Kind, &w.InstanceID, &w.UpdatedAt)
	w.UpdatedAt = w.UpdatedAt.UTC()
	if y := w.UpdatedAt.Year(); y < 1 || y > 9999 {
		// A query other than rowColumns's may bring one: JSON cannot
		// encode it.
		w.UpdatedAt = time.Unix(0, 0).UTC()
	}
	return w, err
}

// SetTemplateSQL is apply's compare-and-swap: it writes only over an empty
// template of a live row, so it can never overwrite a value someone set.
//
// It also requires the runtime and kind the plan reconciled against: the
// verdict rests on them (a template of another runtime is never written),
// and a row changed since, or a plan that misstates them, must not match.
// The table is named with its schema, so no search_path in a DSN can point
// the write at another table of the same database.
const SetTemplateSQL = `UPDATE public.workspaces SET template = $2, updated_at = now() WHERE id = $1 AND template = '' AND status <> 'removed'
  AND coalesce(runtime, '') = $3 AND kind = $4`

// ClearTemplateSQL is rollback's inverse compare-and-swap: it empties the
// template only while it still holds the value apply wrote.
const ClearTemplateSQL = `UPDATE public.workspaces SET template = '', updated_at = now() WHERE id = $1 AND template = $2`

// CurrentRows reads, in one round trip, the columns of each of ids' rows
// that apply's compare-and-swap looks at; exists[i] is false when ids[i]'s
// row is gone. Rows are matched to ids by position, so an id in any
// spelling PostgreSQL reads as a UUID gets its own answer.
func CurrentRows(ctx context.Context, tx pgx.Tx, ids []string) (rows []workspace.Row, exists []bool, err error) {
	rows, exists = make([]workspace.Row, len(ids)), make([]bool, len(ids))
	if len(ids) == 0 {
		return rows, exists, nil
	}
	rs, err := tx.Query(ctx, `SELECT u.i, w.template, coalesce(w.status::text, ''), coalesce(w.runtime, ''), w.kind
  FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, i) JOIN public.workspaces w ON w.id = u.id`, ids)
	if err != nil {
		return nil, nil, err
	}
	defer rs.Close()
	for rs.Next() {
		var i int64
		var r workspace.Row
		if err := rs.Scan(&i, &r.Template, &r.Status, &r.Runtime, &r.Kind); err != nil {
			return nil, nil, err
		}
		rows[i-1], exists[i-1] = r, true
	}
	return rows, exists, rs.Err()
}

// Tx names a transaction on one server: its epoch-extended id, and the
// server's system identifier and timeline, without which an id means nothing
// elsewhere (a promoted replica or a restore shares the system identifier
// but starts a new timeline, and may issue the same ids again).
type Tx struct {
	ID       int64
	System   int64
	Timeline string // hex, as in WAL file names
}

// txIDQuery names the transaction it runs in (assigning it an id if it has
// none yet), its server and its timeline.
const txIDQuery = `SELECT txid_current(), (SELECT system_identifier FROM pg_control_system()),
  substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)`

// TxID returns tx's transaction, which a later session can pass to TxStatus
// to learn whether it committed.
func TxID(ctx context.Context, tx pgx.Tx) (Tx, error) {
	return ScanTxID(tx.QueryRow(ctx, txIDQuery))
}

// QueueTxID adds TxID's query to b, for a caller that would rather not
// spend a round trip on it; read its answer with ScanTxID(results.QueryRow()).
func QueueTxID(b *pgx.Batch) { b.Queue(txIDQuery) }

// ScanTxID reads the row of TxID's query.
func ScanTxID(r pgx.Row) (Tx, error) {
	var t Tx
	err := r.Scan(&t.ID, &t.System, &t.Timeline)
	return t, err
}

// Statuses of TxStatus besides PostgreSQL's own "committed", "aborted" and
// "in progress".
const (
	TxForgotten     = ""                // too old: the server no longer keeps its status
	TxOtherServer   = "other server"    // another system identifier or timeline
	TxStandby       = "standby"         // a server in recovery, whose answer is not final
	TxOpenOrUnknown = "open or unknown" // not yet completed here: still running, or never issued
)

// TxStatus reports how transaction t ended, as far as this server can say.
// It neither writes nor takes a transaction id, so it runs in a dry run's
// READ ONLY transaction too.
func TxStatus(ctx context.Context, tx pgx.Tx, t Tx) (string, error) {
	var st string
	// CASE stops at the first true branch, so pg_walfile_name never runs on
	// a standby and txid_status never sees an id it would call "in the
	// future".
	err := tx.QueryRow(ctx, `SELECT CASE
  WHEN (SELECT system_identifier FROM pg_control_system()) <> $2 THEN $4
  WHEN pg_is_in_recovery() THEN $5
  WHEN substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) <> $3 THEN $4
  WHEN $1 >= txid_snapshot_xmax(txid_current_snapshot()) THEN $6
  ELSE coalesce(txid_status($1), $7) END`, t.ID, t.System, t.Timeline, TxOtherServer, TxStandby, TxOpenOrUnknown, TxForgotten).Scan(&st)
	return st, err
}
