package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"

	"backfill/apply/plan"
)

// comparison is the outcome of holding the fleet against its answer key.
type comparison struct {
	Checked    int
	Mismatches []string
}

func (c *comparison) mismatch(w keyWorkspace, format string, args ...any) {
	c.Mismatches = append(c.Mismatches, fmt.Sprintf("%s/%s (%s): %s [%s]", w.Tenant, w.WorkspaceID, w.Name, fmt.Sprintf(format, args...), w.Case))
}

// fleetEnv reads DIR/env, falling back to the process environment for a
// variable it lacks, so check also works where the env file was not kept.
func fleetEnv(dir string, lookup func(string) (string, bool)) (func(string) (string, bool), error) {
	vals := map[string]string{}
	b, err := os.ReadFile(filepath.Join(dir, fileEnv))
	switch {
	case err == nil:
		if vals, err = parseEnvFile(b); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, fileEnv), err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	return func(k string) (string, bool) {
		if v, ok := vals[k]; ok {
			return v, true
		}
		return lookup(k)
	}, nil
}

// compareTemplates reads every tenant's rows as they are now and compares
// each template with the key. A row the key says was deleted must be gone,
// one it says was removed must be tombstoned, and no row may be unknown.
func compareTemplates(ctx context.Context, k *answerKey, lookup func(string) (string, bool)) (*comparison, error) {
	res := &comparison{}
	for _, t := range k.Tenants {
		dsn, ok := lookup(t.DSNEnv)
		if !ok || dsn == "" {
			return nil, fmt.Errorf("tenant %s: %s is not set (source DIR/env)", t.Name, t.DSNEnv)
		}
		rows, err := readTemplates(ctx, dsn)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", t.Name, err)
		}
		seen := map[string]bool{}
		for _, w := range k.Workspaces {
			if w.Tenant != t.Name {
				continue
			}
			seen[w.WorkspaceID] = true
			res.Checked++
			r, ok := rows[w.WorkspaceID]
			switch {
			case w.Row == rowDeleted && ok:
				res.mismatch(w, "row still exists, want it deleted")
			case w.Row == rowDeleted:
			case !ok:
				res.mismatch(w, "row is missing")
			case r.template != w.Template:
				res.mismatch(w, "template %q, want %q", r.template, w.Template)
			case w.Row == rowRemoved && r.status != "removed":
				res.mismatch(w, "status %s, want removed", r.status)
			}
		}
		for id, r := range rows {
			if !seen[id] {
				res.Mismatches = append(res.Mismatches, fmt.Sprintf("%s/%s (%s): row not in the answer key", t.Name, id, r.name))
			}
		}
	}
	return res, nil
}

type dbRow struct{ name, template, status string }

func readTemplates(ctx context.Context, dsn string) (map[string]dbRow, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT id::text, name, template, status::text FROM workspaces`)
	if err != nil {
		return nil, err
	}
	out := map[string]dbRow{}
	for rows.Next() {
		var id string
		var r dbRow
		if err := rows.Scan(&id, &r.name, &r.template, &r.status); err != nil {
			return nil, err
		}
		out[id] = r
	}
	return out, rows.Err()
}

// comparePlan holds a plan's verdicts against the key: every planned
// workspace has an item with the key's verdict and drift flag, and no
// other item exists.
func comparePlan(k *answerKey, p *plan.Plan) *comparison {
	res := &comparison{}
	items := map[string]plan.Item{}
	for _, it := range p.Items {
		items[it.Key()] = it
	}
	for _, w := range k.Workspaces {
		key := w.Tenant + "/" + w.WorkspaceID
		it, ok := items[key]
		delete(items, key)
		if w.Verdict == "" {
			if ok {
				res.mismatch(w, "planned as %s, want no item", it.Verdict)
			}
			continue
		}
		res.Checked++
		switch {
		case !ok:
			res.mismatch(w, "no plan item, want %s", w.Verdict)
		case it.Verdict != w.Verdict:
			res.mismatch(w, "verdict %s (%s), want %s", it.Verdict, it.Reason, w.Verdict)
		case it.Drift != w.Drift:
			res.mismatch(w, "drift %v, want %v", it.Drift, w.Drift)
		}
	}
	for key, it := range items {
		res.Mismatches = append(res.Mismatches, fmt.Sprintf("%s (%s): plan item %s not in the answer key", key, it.WorkspaceName, it.Verdict))
	}
	return res
}
