package cli

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backfill/internal/filesapi"
	"backfill/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// result is one in-process run of the command line.
type result struct {
	code           int
	stdout, stderr string
}

// syncBuffer lets a test read output while a command is still writing it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// In-process runs may go in parallel (TestRunsInParallel shows it); a test
// that sets process state (t.Setenv, the working directory) may not.

// run executes backfill in-process with the given environment variables
// (and nothing else from the process environment for ${VAR} expansion).
func run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	return runCtx(context.Background(), t, env, args...)
}

func runCtx(ctx context.Context, t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	code := Run(ctx, append([]string{"backfill"}, args...), Env{
		Stdout: &out, Stderr: &errb,
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Now:       time.Now,
	})
	return result{code, out.String(), errb.String()}
}

// ws is a workspace row to insert into a tenant database.
type ws struct {
	id, name, runtime, template, status, kind, instance string
}

func uuidFor(tenant, n int) string {
	return fmt.Sprintf("%08d-0000-4000-8000-%012d", tenant, n)
}

// insertRows writes rows into a tenant database.
func insertRows(t testing.TB, dsn string, rows ...ws) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, r := range rows {
		if r.status == "" {
			r.status = "online"
		}
		if r.kind == "" {
			r.kind = "workspace"
		}
		if r.runtime == "" {
			r.runtime = "claude-code"
		}
		var inst *string
		if r.instance != "" {
			inst = &r.instance
		}
		_, err := conn.Exec(ctx, `INSERT INTO workspaces (id, name, runtime, template, status, kind, instance_id)
  VALUES ($1, $2, $3, $4, $5::workspace_status, $6, $7)`, r.id, r.name, r.runtime, r.template, r.status, r.kind, inst)
		if err != nil {
			t.Fatal(err)
		}
	}
}

// writeFile writes content and returns its path.
func writeFile(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// filesServer serves root over the platform's files API on loopback.
func filesServer(t testing.TB, root, token string, latency time.Duration) *httptest.Server {
	srv := httptest.NewServer((&filesapi.Server{Root: root, Token: token, Latency: latency}).Handler())
	t.Cleanup(srv.Close)
	return srv
}

// withPassword plants a password in a DSN; the test cluster trusts local
// connections, so the value is carried but never checked.
func withPassword(dsn, password string) string {
	return strings.Replace(dsn, "postgres://postgres@", "postgres://postgres:"+password+"@", 1)
}

const seoConfig = `name: SEO Agent
description: Researches keywords, audits pages and drafts search-optimised content.
version: 1.4.0
tier: 2
runtime: claude-code
runtime_config:
  model: sonnet
  timeout: 0
skills:
  - keyword-research
`

const defaultConfig = `name: Claude Code Agent
version: 1.0.0
tier: 2
runtime: claude-code
runtime_config:
  model: sonnet
  timeout: 0
template_schema_version: 1
`
