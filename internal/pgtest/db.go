package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"sync"

	"github.com/jackc/pgx/v5"
)

// server is a PostgreSQL server we may create databases on: our own Cluster
// or an existing one from BACKFILL_TEST_DATABASE_URL.
type server struct {
	admin string              // DSN of a database to run CREATE/DROP DATABASE from
	dsn   func(string) string // DSN of a database on this server

	mu        sync.Mutex
	tmplReady bool
}

// templateName is derived from the schema so a server shared by checkouts
// with different schemas keeps one template per schema version.
var templateName = func() string {
	sum := sha256.Sum256([]byte(TenantSchema))
	return "bfpg_tenant_tmpl_" + hex.EncodeToString(sum[:6])
}()

// newURLServer wraps an existing server given as a postgres:// URL.
func newURLServer(raw string) (*server, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("pgtest: %s must be a postgres:// URL", EnvDatabaseURL)
	}
	return &server{
		admin: raw,
		dsn: func(db string) string {
			v := *u
			v.Path, v.RawPath = "/"+db, ""
			q := v.Query()
			q.Del("dbname") // would override the path
			v.RawQuery = q.Encode()
			return v.String()
		},
	}, nil
}

// createDB creates database name (empty, or a clone of the tenant template)
// and returns its DSN.
func (s *server) createDB(ctx context.Context, name string, tenant bool) (string, error) {
	admin, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		return "", fmt.Errorf("pgtest: connecting to server: %w", err)
	}
	defer admin.Close(context.Background())
	// template0 rather than the default template1, which an existing server
	// may have filled with objects.
	tmpl := "template0"
	if tenant {
		if err := s.ensureTemplate(ctx, admin); err != nil {
			return "", err
		}
		tmpl = templateName
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+quote(name)+" TEMPLATE "+quote(tmpl)); err != nil {
		return "", fmt.Errorf("pgtest: creating database %s: %w", name, err)
	}
	return s.dsn(name), nil
}

// dropDB drops database name, disconnecting any sessions still using it.
func (s *server) dropDB(ctx context.Context, name string) error {
	admin, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		return fmt.Errorf("pgtest: connecting to server: %w", err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(name)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgtest: dropping database %s: %w", name, err)
	}
	return nil
}

// ensureTemplate makes sure the tenant template database exists, building it
// once. Cloning a template is much faster than replaying the schema for every
// test database.
func (s *server) ensureTemplate(ctx context.Context, admin *pgx.Conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tmplReady {
		return nil
	}
	// Test binaries of several packages may share one server (go test runs
	// packages in parallel), so serialise the build across processes too.
	sum := sha256.Sum256([]byte(templateName))
	key := int64(binary.BigEndian.Uint64(sum[:8]))
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return fmt.Errorf("pgtest: locking tenant template: %w", err)
	}
	defer admin.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", key)

	var isTemplate bool
	err := admin.QueryRow(ctx, "SELECT datistemplate FROM pg_database WHERE datname = $1", templateName).Scan(&isTemplate)
	switch {
	case err == nil && isTemplate:
		s.tmplReady = true
		return nil
	case err == nil:
		// Left half-built by a crashed run: it is only marked a template once
		// the schema is in.
		if _, err := admin.Exec(ctx, "DROP DATABASE "+quote(templateName)+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("pgtest: dropping stale tenant template: %w", err)
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("pgtest: looking up tenant template: %w", err)
	}

	if _, err := admin.Exec(ctx, "CREATE DATABASE "+quote(templateName)+" TEMPLATE template0"); err != nil {
		return fmt.Errorf("pgtest: creating tenant template: %w", err)
	}
	conn, err := pgx.Connect(ctx, s.dsn(templateName))
	if err != nil {
		return fmt.Errorf("pgtest: connecting to tenant template: %w", err)
	}
	// Without arguments Exec uses the simple protocol, which runs the whole
	// multi-statement script.
	_, err = conn.Exec(ctx, TenantSchema)
	conn.Close(context.Background())
	if err != nil {
		return fmt.Errorf("pgtest: applying tenant schema: %w", err)
	}
	// No connections allowed: CREATE DATABASE ... TEMPLATE fails while anyone
	// is connected to the template.
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+quote(templateName)+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"); err != nil {
		return fmt.Errorf("pgtest: marking tenant template: %w", err)
	}
	s.tmplReady = true
	return nil
}

func quote(ident string) string { return pgx.Identifier{ident}.Sanitize() }

// pathEscape escapes a database name for the path of a postgres:// URL.
func pathEscape(db string) string { return url.PathEscape(db) }
