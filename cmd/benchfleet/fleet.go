package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"backfill/internal/filesapi"
	"backfill/internal/pgtest"
)

// benchTenant is one tenant database of a bench fleet.
type benchTenant struct {
	name string
	db   string // database name on the cluster
	dsn  string // through the cluster's unix socket
	ids  []string
}

// benchFleet is a set of tenant databases whose workspaces all have
// an empty template and a config in the files API's root.
type benchFleet struct {
	name    string
	tenants []benchTenant
	n       int
}

// seoConfig is the live config every bench workspace serves: a user's edit
// of the seo-agent template (internal/fixture), so that plan derives an
// identity and, with a tenant-level CP record, agrees on a write.
const seoConfig = "custom-seo-agent.yaml"

// config returns workspace id's config: seoConfig, its id in a comment so
// that every workspace's bytes differ as in a real fleet, padded with
// comment lines to size bytes.
func config(base []byte, id string, size int) []byte {
	b := append(bytes.Clone(base), "# workspace "+id+"\n"...)
	for len(b) < size {
		line := "# padding to the configured size\n"
		if rest := size - len(b); rest < len(line) {
			line = "#" + strings.Repeat(" ", max(rest-2, 0)) + "\n"
			line = line[:rest]
		}
		b = append(b, line...)
	}
	return b
}

// buildFleet creates tenants databases on c (named f<no>_t<i>) holding n
// workspaces between them and writes each workspace's config of size bytes
// under root.
func buildFleet(ctx context.Context, c *pgtest.Cluster, no int, name string, tenants, n, size int, root string, base []byte) (*benchFleet, error) {
	f := &benchFleet{name: name, n: n, tenants: make([]benchTenant, tenants)}
	for i := range f.tenants {
		t := &f.tenants[i]
		t.name = fmt.Sprintf("t%03d", i)
		t.db = fmt.Sprintf("f%d_t%03d", no, i)
	}
	for w := 0; w < n; w++ {
		t := &f.tenants[w%tenants]
		t.ids = append(t.ids, fmt.Sprintf("%08d-%04d-4000-8000-%012d", no, w%tenants, w))
	}
	// A few at a time: CREATE DATABASE copies a template and the machine
	// is shared.
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range f.tenants {
		wg.Add(1)
		sem <- struct{}{}
		go func(t *benchTenant) {
			defer wg.Done()
			defer func() { <-sem }()
			err := fillTenant(ctx, c, t, root, size, base)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("fleet %s tenant %s: %w", name, t.name, err)
				}
				mu.Unlock()
			}
		}(&f.tenants[i])
	}
	wg.Wait()
	return f, firstErr
}

func fillTenant(ctx context.Context, c *pgtest.Cluster, t *benchTenant, root string, size int, base []byte) error {
	dsn, err := c.CreateDB(ctx, t.db, true)
	if err != nil {
		return err
	}
	t.dsn = dsn
	rows := make([][]any, 0, len(t.ids))
	for i, id := range t.ids {
		rows = append(rows, []any{id, fmt.Sprintf("ws-%d", i), "claude-code", ""})
		if err := filesapi.WriteConfig(root, id, config(base, id, size)); err != nil {
			return err
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.CopyFrom(ctx, pgx.Identifier{"workspaces"}, []string{"id", "name", "runtime", "template"}, pgx.CopyFromRows(rows))
	return err
}

// writeInventory writes an inventory of f's tenants, each reached at
// dsn(tenant) and read with backfill's http collector (one GET a capture)
// from the files API at apiAddr. The token comes from $BENCH_TOKEN.
func writeInventory(path string, f *benchFleet, dsn func(*benchTenant) string, apiAddr string) error {
	var b strings.Builder
	b.WriteString("version: 1\ntenants:\n")
	for i := range f.tenants {
		t := &f.tenants[i]
		fmt.Fprintf(&b, "  - name: %s\n    dsn: %q\n    collector:\n      http:\n", t.name, dsn(t))
		fmt.Fprintf(&b, "        url: \"http://%s/configs/{workspace_id}/config.yaml\"\n", apiAddr)
		b.WriteString("        headers: {Authorization: \"Bearer ${BENCH_TOKEN}\"}\n        json_field: content\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// writeCP writes CP records naming seo-agent for every tenant of f.
func writeCP(path string, f *benchFleet) error {
	var b strings.Builder
	b.WriteString("tenant,workspace_id,template\n")
	for _, t := range f.tenants {
		b.WriteString(t.name + ",,seo-agent\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// writeURLs writes every workspace's files API URL at apiAddr, one a line.
func writeURLs(path string, f *benchFleet, apiAddr string) error {
	var b strings.Builder
	for _, t := range f.tenants {
		for _, id := range t.ids {
			fmt.Fprintf(&b, "http://%s/configs/%s/config.yaml\n", apiAddr, id)
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// writeDSNs writes each tenant's DSN of f, one a line, for the bare lister.
func writeDSNs(path string, f *benchFleet, dsn func(*benchTenant) string) error {
	var b strings.Builder
	for i := range f.tenants {
		b.WriteString(dsn(&f.tenants[i]) + "\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// proxiedDSN is t's database reached through the latency proxy at addr.
func proxiedDSN(addr string) func(*benchTenant) string {
	return func(t *benchTenant) string {
		return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", addr, t.db)
	}
}

func directDSN(t *benchTenant) string { return t.dsn }

// resetTemplates sets every workspace of f back to an empty template.
func resetTemplates(ctx context.Context, f *benchFleet) error {
	for _, t := range f.tenants {
		conn, err := pgx.Connect(ctx, t.dsn)
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, "UPDATE workspaces SET template = ''")
		conn.Close(context.Background())
		if err != nil {
			return err
		}
	}
	return nil
}

// countTemplate counts f's workspaces whose template is tmpl.
func countTemplate(ctx context.Context, f *benchFleet, tmpl string) (int, error) {
	total := 0
	for _, t := range f.tenants {
		conn, err := pgx.Connect(ctx, t.dsn)
		if err != nil {
			return 0, err
		}
		var n int
		err = conn.QueryRow(ctx, "SELECT count(*) FROM workspaces WHERE template = $1", tmpl).Scan(&n)
		conn.Close(context.Background())
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// copyStore copies an evidence store (and its WAL files, if any) from src
// to dst, with no process holding it open. The copy is synced before it is
// used: an operator's store has long been on disk, and writing back half a
// GB of dirty pages would otherwise be timed as part of the run that reads it.
func copyStore(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(src + suffix)
		if os.IsNotExist(err) && suffix != "" {
			continue
		}
		if err != nil {
			return err
		}
		if err := writeSynced(dst+suffix, b); err != nil {
			return err
		}
	}
	return nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
