package catalog

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// loadBound is how long one Load of a fuzzed catalog may take. Such a catalog
// is a few small files and loads in well under a millisecond; the slack
// covers fuzzing's instrumentation on a busy machine.
const loadBound = 2 * time.Second

// maxFuzzTemplates is how many template folders one input may lay out.
const maxFuzzTemplates = 3

// FuzzLoad lays the fuzzer's bytes out as a small catalog and loads it. It
// checks that Load never panics, returns within loadBound, names the catalog
// folder in every error (each error is about a file or folder in it), and
// that an accepted catalog holds exactly its visible folders and resolves
// each template by its own name and display name. Its seeds in
// testdata/fuzz/FuzzLoad run with every plain `go test`.
//
// The input is sections separated by NUL bytes. A section's first line names
// what the rest of it is: "manifest.json" for the manifest, anything else a
// template folder whose config.yaml is the rest. A folder section without a
// newline has no config.yaml at all.
func FuzzLoad(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		visible := layOut(t, dir, data)

		c, d, err := timedLoad(dir)
		if d > loadBound {
			// Wall time also counts a busy machine's pauses; an input that
			// is really slow is slow twice in a row.
			if _, d2, _ := timedLoad(dir); d2 > loadBound {
				t.Fatalf("Load took %v, then %v", d, d2)
			}
		}
		if err != nil {
			if c != nil {
				t.Fatalf("Load returned a catalog and an error: %v", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "catalog: ") || !strings.Contains(msg, dir) {
				t.Fatalf("error does not name the catalog folder %s: %v", dir, err)
			}
			return
		}

		tmpls := c.Templates()
		if len(tmpls) != len(visible) {
			t.Fatalf("%d templates from %d visible folders %v", len(tmpls), len(visible), visible)
		}
		for _, tm := range tmpls {
			if !visible[tm.Name] {
				t.Fatalf("template %q is not one of the visible folders %v", tm.Name, visible)
			}
			if tm.Runtime == "" || strings.TrimSpace(tm.DisplayName) != tm.DisplayName || tm.DisplayName == "" {
				t.Fatalf("template with an empty runtime or untrimmed display name: %+v", tm)
			}
			if got, ok := c.Lookup(tm.Name); !ok || got != tm {
				t.Fatalf("Lookup(%q) = %+v, %v; want %+v", tm.Name, got, ok, tm)
			}
			// Lookup trims and folds ASCII case, so a name spelled as a
			// person might type it resolves to the same template.
			if got, ok := c.Lookup(" " + upperASCII(tm.Name) + "\t"); !ok || got != tm {
				t.Fatalf("Lookup of %q spelled loosely = %+v, %v; want %+v", tm.Name, got, ok, tm)
			}
			if got, ok := c.ByDisplayName(tm.DisplayName); !ok || got != tm {
				t.Fatalf("ByDisplayName(%q) = %+v, %v; want %+v", tm.DisplayName, got, ok, tm)
			}
			if tm.Default {
				if got, ok := c.DefaultFor(tm.Runtime); !ok || got != tm {
					t.Fatalf("DefaultFor(%q) = %+v, %v; want %+v", tm.Runtime, got, ok, tm)
				}
			}
		}
		again, err := Load(dir)
		if err != nil || again.Digest() != c.Digest() || len(again.Templates()) != len(tmpls) {
			t.Fatalf("a second Load of the same folder differs: %v", err)
		}
		if len(c.Digest()) != 64 {
			t.Fatalf("digest %q is not a sha256 hex", c.Digest())
		}
	})
}

func timedLoad(dir string) (*Catalog, time.Duration, error) {
	start := time.Now()
	c, err := Load(dir)
	return c, time.Since(start), err
}

// layOut writes the sections of data into dir (see FuzzLoad) and returns the
// template folders Load should see: those not hidden by a leading dot.
func layOut(t *testing.T, dir string, data []byte) map[string]bool {
	t.Helper()
	visible := map[string]bool{}
	made := map[string]bool{}
	manifest := false
	for i, sec := range bytes.Split(data, []byte{0}) {
		head, rest, hasConfig := bytes.Cut(sec, []byte("\n"))
		name := string(head)
		if name == manifestFile {
			if !manifest {
				manifest = true
				write(t, filepath.Join(dir, manifestFile), rest)
			}
			continue
		}
		if len(made) == maxFuzzTemplates {
			continue
		}
		name = folderName(name, i)
		if made[name] {
			continue
		}
		made[name] = true
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, ".") {
			visible[name] = true
		}
		if hasConfig {
			write(t, filepath.Join(dir, name, configFile), rest)
		}
	}
	return visible
}

// folderName makes a section's first line a name the file system accepts
// as one folder, keeping everything else about it (case, spaces, non-ASCII)
// for Load to deal with.
func folderName(s string, i int) string {
	s = strings.ReplaceAll(s, "/", "_")
	if len(s) > 200 {
		s = s[:200]
	}
	if s == "" || s == "." || s == ".." {
		s = fmt.Sprintf("t%d", i)
	}
	return s
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func upperASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}
