package cli

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"backfill/apply/plan"
	"backfill/internal/fixture"
	"backfill/internal/version"
)

// TestTranscripts runs every case under testdata/transcripts/<command>/<case>/
// in-process, in parallel, and compares what it printed. A case holds:
//
//	cmd     the arguments after "backfill", one per line
//	env     optional: NAME=value lines, the only variables the run sees
//	code    its exit status
//	stdout  what the run prints on stdout (absent: nothing)
//	stderr  what it prints on stderr (absent: nothing)
//	files   the files the run leaves in the temporary directory that were
//	        not there before it, one per line (absent: none)
//
// "$TMP" in cmd and env is the case's temporary directory; the run is given
// --evidence $TMP/evidence.db first, and relative paths name files in the
// package directory, so inputs are written as $TMP/<name>. In stdout and
// stderr that directory, the version line and the Go version read "$TMP",
// "$VERSION" and "$GO". Every case's directory holds good.yaml, an inventory
// that loads (its one tenant's database is never reached by a case);
// transcriptSetup may prepare more for every case of one command.
// `go test ./internal/cli -run TestTranscripts -update` rewrites stdout,
// stderr, code and files from the runs.
func TestTranscripts(t *testing.T) {
	t.Parallel()
	root := filepath.Join("testdata", "transcripts")
	cmds, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		t.Run(c.Name(), func(t *testing.T) {
			t.Parallel()
			cases, err := os.ReadDir(filepath.Join(root, c.Name()))
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range cases {
				dir := filepath.Join(root, c.Name(), tc.Name())
				t.Run(tc.Name(), func(t *testing.T) {
					t.Parallel()
					runTranscript(t, c.Name(), dir)
				})
			}
		})
	}
}

// transcriptSetup prepares the temporary directory of every case of one
// command (the directory name) before the run.
var transcriptSetup = map[string]func(t *testing.T, tmp string){
	// An inventory that does not load: no collector, and a variable that
	// is not set on line 4.
	"preflight": func(t *testing.T, tmp string) {
		writeFile(t, filepath.Join(tmp, "bad.yaml"), "version: 1\ntenants:\n  - name: x\n    dsn: \"${NOT_SET}\"\n")
	},
	// The golden plan as written, and a copy with one reason edited.
	"show": func(t *testing.T, tmp string) {
		golden := fixture.Plan(plan.FormatVersion)
		writeFile(t, filepath.Join(tmp, "plan.json"), string(golden))
		edited := strings.Replace(string(golden), `"reason": "`, `"reason": "edited: `, 1)
		writeFile(t, filepath.Join(tmp, "edited.json"), edited)
	},
	// An inventory whose line 4 names a variable that is not set, and file
	// collectors that would read a pseudo-filesystem or a relative path
	// (refused on the collector's line, before a store exists).
	"snapshot": func(t *testing.T, tmp string) {
		writeFile(t, filepath.Join(tmp, "inv.yaml"), "version: 1\ntenants:\n  - name: a\n    dsn: \"${MISSING_DSN}\"\n    collector:\n      file: \"/x/{workspace_id}\"\n")
		for name, collector := range map[string]string{
			"pseudo-path": `file: "/proc/{workspace_id}/environ"`,
			"pseudo-root": "file:\n        path: \"/dev/shm/{workspace_id}/config.yaml\"\n        root: /dev",
			"relative":    `file: "mirror/{workspace_id}/config.yaml"`,
		} {
			writeFile(t, filepath.Join(tmp, name+".yaml"), "version: 1\ntenants:\n  - name: t\n    dsn: \"host=127.0.0.1 dbname=x\"\n    collector:\n      "+collector+"\n")
		}
	},
}

// goodInventory loads, and names a database no case reaches.
const goodInventory = "version: 1\ntenants:\n  - name: a\n    dsn: \"host=127.0.0.1 port=1 dbname=a connect_timeout=1\"\n    collector:\n      file:\n        path: \"/srv/mirror/{workspace_id}/config.yaml\"\n        root: /srv/mirror\n"

func runTranscript(t *testing.T, command, dir string) {
	tmp := t.TempDir()
	writeFile(t, filepath.Join(tmp, "good.yaml"), goodInventory)
	if setup := transcriptSetup[command]; setup != nil {
		setup(t, tmp)
	}
	expand := func(s string) string { return strings.ReplaceAll(s, "$TMP", tmp) }
	args := lines(t, filepath.Join(dir, "cmd"), true)
	for i := range args {
		args[i] = expand(args[i])
	}
	env := map[string]string{}
	for _, kv := range lines(t, filepath.Join(dir, "env"), false) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("%s/env: %q is not NAME=value", dir, kv)
		}
		env[k] = expand(v)
	}
	before := tree(t, tmp)

	res := run(t, env, append([]string{"--evidence", filepath.Join(tmp, "evidence.db")}, args...)...)

	var created []string
	for _, p := range tree(t, tmp) {
		if !slices.Contains(before, p) {
			created = append(created, p)
		}
	}
	v := version.Get()
	norm := func(s string) string {
		s = strings.ReplaceAll(s, tmp, "$TMP")
		s = strings.ReplaceAll(s, v.String(), "$VERSION")
		if v.Go != "" {
			s = strings.ReplaceAll(s, v.Go, "$GO")
		}
		return s
	}
	got := map[string]string{
		"stdout": norm(res.stdout),
		"stderr": norm(res.stderr),
		"code":   strconv.Itoa(res.code) + "\n",
		"files":  "",
	}
	if len(created) > 0 {
		got["files"] = strings.Join(created, "\n") + "\n"
	}
	for _, name := range []string{"stdout", "stderr", "code", "files"} {
		path := filepath.Join(dir, name)
		if *update {
			if got[name] == "" {
				os.Remove(path)
				continue
			}
			if err := os.WriteFile(path, []byte(got[name]), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil && !(os.IsNotExist(err) && name != "code") {
			t.Fatalf("%v (go test ./internal/cli -run 'TestTranscripts/%s/%s' -update writes it)", err, command, filepath.Base(dir))
		}
		if string(want) != got[name] {
			t.Errorf("%s differs; backfill %s\n--- want ---\n%s--- got ---\n%s", name, strings.Join(args, " "), want, got[name])
		}
	}
}

// lines reads a file of one item per line; a missing optional file is empty.
func lines(t *testing.T, path string, required bool) []string {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) && !required {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// tree lists the files beneath root, relative to it.
func tree(t *testing.T, root string) []string {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
