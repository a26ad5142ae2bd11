// Package catalog loads the template catalog that identities are resolved
// against: the platform's template cache layout, one folder per template
// (DIR/seo-agent/config.yaml), and a manifest whose workspace_templates
// entries may give each template's runtime: DIR/manifest.json, or one kept
// elsewhere (the platform's cache has none in it) passed as a file.
//
// Names are matched with ASCII-only case folding: folding the rest of Unicode
// would let look-alikes such as the Kelvin sign (U+212A) match a 'k', and a
// wrong match here writes a wrong template into a tenant's database.
package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"backfill/internal/identity/configyaml"
	"backfill/internal/inputfile"
)

const (
	manifestFile  = "manifest.json"
	configFile    = "config.yaml"
	defaultSuffix = "-default"
	// maxManifestSize bounds manifest.json; the real one is under 2 KiB.
	maxManifestSize = 1 << 20
)

// Template is one catalog template.
type Template struct {
	Name        string // canonical name = folder name
	Runtime     string
	DisplayName string // the `name:` in its config.yaml, trimmed
	Default     bool   // it is its runtime's default template
}

// Catalog is a loaded template catalog. It is read-only after Load, and a nil
// *Catalog behaves as an empty one.
type Catalog struct {
	templates []Template // sorted by Name
	byKey     map[string]int
	byDisplay map[string]int
	shapes    map[string]map[string]bool // by Name: see configyaml.Doc.Shape
	digest    string
}

// manifest is the part of manifest.json that matters here; other keys (repo,
// ref, private, version) are ignored.
type manifest struct {
	WorkspaceTemplates []manifestEntry `json:"workspace_templates"`
}

type manifestEntry struct {
	Name    string  `json:"name"`
	Runtime *string `json:"runtime"` // nil: the name without "-default"
}

// file is one file Load read, kept for the digest.
type file struct {
	rel     string // slash-separated, relative to the catalog folder
	content []byte
}

// Load reads the catalog in dir. Hidden entries and files other than
// manifest.json are ignored; every other folder must be a template. Symlinks
// are followed like anything else: the catalog is the operator's own folder.
//
// Load fails, naming the file or folder, on: a folder without config.yaml, a
// config.yaml that is not a YAML mapping with a string `name:`, two templates
// with the same display name (ASCII case-insensitively), two template names
// that Lookup could not tell apart (`hermes` and `hermes-default`), invalid
// manifest JSON, a manifest entry without a name, with an empty runtime, with
// no folder, or listed twice, and a catalog with no templates at all (almost
// certainly the wrong --catalog folder).
func Load(dir string) (*Catalog, error) { return LoadWith(dir, "") }

// LoadWith is Load with the manifest read from manifestPath instead of
// DIR/manifest.json (which must then be absent, so that two manifests never
// disagree unnoticed); "" is Load.
//
// A template's runtime is the manifest's, else its own config.yaml's
// `runtime:`, else its name without "-default" when that names a runtime
// some other template declares or the folder is called <runtime>-default.
// A template whose runtime none of these gives is an error naming it: a
// guess would turn every workspace made from it into runtime-mismatch.
func LoadWith(dir, manifestPath string) (*Catalog, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	var (
		files   []file
		folders []string
		man     *manifest
	)
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		info, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		switch {
		case info.IsDir():
			folders = append(folders, name)
		case name == manifestFile:
			if manifestPath != "" {
				return nil, fmt.Errorf("catalog: %s has its own %s and --manifest %s was given too: use one", dir, manifestFile, manifestPath)
			}
			manifestPath = path
		}
	}
	if manifestPath != "" {
		b, err := inputfile.Read(manifestPath, maxManifestSize)
		if err != nil {
			return nil, fmt.Errorf("catalog: manifest: %w", err)
		}
		man = &manifest{}
		if err := json.Unmarshal(b, man); err != nil {
			return nil, fmt.Errorf("catalog: %s: invalid JSON: %w", manifestPath, err)
		}
		// Framed as manifest.json wherever it lives: the digest names the
		// catalog's content, not where its files were kept.
		files = append(files, file{rel: manifestFile, content: b})
	}
	if len(folders) == 0 {
		return nil, fmt.Errorf("catalog: %s has no template folders", dir)
	}

	runtimes, err := manifestRuntimes(man, folders, manifestPath)
	if err != nil {
		return nil, err
	}

	c := &Catalog{byKey: map[string]int{}, byDisplay: map[string]int{}, shapes: map[string]map[string]bool{}}
	declared := map[string]bool{} // runtimes the manifest or a config states
	for _, rt := range runtimes {
		declared[Key(rt)] = true
	}
	var undecided []string
	for _, name := range folders {
		if Key(name) == "" {
			return nil, fmt.Errorf("catalog: template folder %s: name %q leaves nothing to match once %q is dropped", filepath.Join(dir, name), name, defaultSuffix)
		}
		path := filepath.Join(dir, name, configFile)
		// Room for a BOM, which configyaml does not count.
		b, err := inputfile.Read(path, configyaml.MaxSize+3)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("catalog: template folder %s has no %s", filepath.Join(dir, name), configFile)
		}
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		doc, err := configyaml.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("catalog: %s: %w", path, err)
		}
		display, err := displayName(doc)
		if err != nil {
			return nil, fmt.Errorf("catalog: %s: %w", path, err)
		}
		files = append(files, file{rel: name + "/" + configFile, content: b})
		c.shapes[name] = doc.Shape()

		rt, ok := runtimes[name]
		if !ok {
			if v, has := doc.Get("runtime"); has {
				if s, isStr := configyaml.Str(v); isStr && strings.TrimSpace(s) != "" {
					rt, ok = strings.TrimSpace(s), true
				}
			}
		}
		if ok {
			declared[Key(rt)] = true
		} else {
			rt = trimDefault(name)
			if !strings.EqualFold(rt, name) {
				declared[Key(rt)] = true // <runtime>-default states its runtime in its name
			} else {
				undecided = append(undecided, name)
			}
		}
		c.templates = append(c.templates, Template{
			Name:        name,
			Runtime:     rt,
			DisplayName: display,
			Default:     Key(name) == Key(rt),
		})
	}
	sort.Slice(c.templates, func(i, j int) bool { return c.templates[i].Name < c.templates[j].Name })
	for i, t := range c.templates {
		if j, dup := c.byKey[Key(t.Name)]; dup {
			return nil, fmt.Errorf("catalog: %s: template names %q and %q both resolve to %q, so a lookup would be ambiguous",
				dir, c.templates[j].Name, t.Name, Key(t.Name))
		}
		c.byKey[Key(t.Name)] = i
		if j, dup := c.byDisplay[foldASCII(t.DisplayName)]; dup {
			return nil, fmt.Errorf("catalog: %s: templates %q and %q share the display name %q, so a config's name could not tell them apart",
				dir, c.templates[j].Name, t.Name, t.DisplayName)
		}
		c.byDisplay[foldASCII(t.DisplayName)] = i
	}
	for _, name := range undecided {
		if !declared[Key(name)] {
			where := "DIR/manifest.json or --manifest"
			if manifestPath != "" {
				where = manifestPath
			}
			return nil, fmt.Errorf("catalog: template %s: its runtime cannot be derived: no runtime for it in %s, no `runtime:` in %s, and %q is not the name of a runtime another template declares",
				name, where, filepath.Join(dir, name, configFile), name)
		}
	}
	c.digest = digest(files)
	return c, nil
}

// manifestRuntimes checks the manifest against the folders and returns the
// runtime it gives each template that has one.
func manifestRuntimes(man *manifest, folders []string, path string) (map[string]string, error) {
	out := map[string]string{}
	if man == nil {
		return out, nil
	}
	isFolder := make(map[string]bool, len(folders))
	for _, f := range folders {
		isFolder[f] = true
	}
	listed := map[string]bool{}
	for i, e := range man.WorkspaceTemplates {
		where := fmt.Sprintf("%s: workspace_templates[%d]", path, i)
		if strings.TrimSpace(e.Name) == "" {
			return nil, fmt.Errorf("catalog: %s has no name", where)
		}
		where += fmt.Sprintf(" (%q)", e.Name)
		if listed[e.Name] {
			return nil, fmt.Errorf("catalog: %s is listed twice", where)
		}
		listed[e.Name] = true
		// Exact match: the folder name is the canonical name, and a near
		// miss is more likely a stale manifest than a spelling variant.
		if !isFolder[e.Name] {
			return nil, fmt.Errorf("catalog: %s has no template folder %s", where, filepath.Join(filepath.Dir(path), e.Name))
		}
		if e.Runtime != nil {
			rt := strings.TrimSpace(*e.Runtime)
			if rt == "" {
				return nil, fmt.Errorf("catalog: %s has an empty runtime", where)
			}
			out[e.Name] = rt
		}
	}
	return out, nil
}

// displayName returns the trimmed `name:` of a template's config.yaml, read by
// the same rules as a live config so both sides of a match agree.
func displayName(doc *configyaml.Doc) (string, error) {
	v, ok := doc.Get("name")
	if !ok {
		return "", errors.New("no `name:` key")
	}
	s, ok := configyaml.Str(v)
	if !ok {
		return "", fmt.Errorf("`name:` is %s, not a string", v.ShortTag())
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("`name:` is empty")
	}
	return s, nil
}

// digest hashes the files in path order, each framed by the lengths of its
// path and content so that no two different catalogs frame to the same bytes.
func digest(files []file) string {
	sort.Slice(files, func(i, j int) bool { return files[i].rel < files[j].rel })
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%d:%s\n%d:", len(f.rel), f.rel, len(f.content))
		h.Write(f.content)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Templates returns every template, sorted by Name.
func (c *Catalog) Templates() []Template {
	if c == nil {
		return nil
	}
	return append([]Template(nil), c.templates...)
}

// Lookup resolves a template name as written anywhere (an explicit key, a
// control-plane record): trimmed, compared ASCII-lower-cased with a trailing
// "-default" stripped, so "claude-code", " Claude-Code-Default " and
// "claude-code-default" are one template. It returns the canonical template.
func (c *Catalog) Lookup(name string) (Template, bool) {
	if c == nil {
		return Template{}, false
	}
	k := Key(name)
	if k == "" {
		return Template{}, false
	}
	i, ok := c.byKey[k]
	if !ok {
		return Template{}, false
	}
	return c.templates[i], true
}

// ByDisplayName matches a config's `name:` value against display names:
// trimmed, ASCII case-insensitive, exact otherwise. No Unicode folding or
// normalisation, so "SEO Agеnt" with a Cyrillic 'е' matches nothing.
func (c *Catalog) ByDisplayName(name string) (Template, bool) {
	if c == nil {
		return Template{}, false
	}
	k := foldASCII(name)
	if k == "" {
		return Template{}, false
	}
	i, ok := c.byDisplay[k]
	if !ok {
		return Template{}, false
	}
	return c.templates[i], true
}

// DefaultFor returns the runtime's default template: the one named
// `<runtime>-default`, else the one named like the runtime, provided its own
// runtime is that runtime. Load guarantees there is at most one.
func (c *Catalog) DefaultFor(runtime string) (Template, bool) {
	t, ok := c.Lookup(runtime)
	if !ok || !t.Default {
		return Template{}, false
	}
	return t, true
}

// Shape returns the shape of a template's config.yaml (see
// configyaml.Doc.Shape), nil for a name not in the catalog.
func (c *Catalog) Shape(name string) map[string]bool {
	if c == nil {
		return nil
	}
	return c.shapes[name]
}

// Digest is a sha256 hex over every file Load read, framed with its relative
// path and in path order, so a plan can record exactly which catalog it used.
func (c *Catalog) Digest() string {
	if c == nil {
		return ""
	}
	return c.digest
}

// Key is the form template names compare in: trimmed, ASCII-lower-cased,
// one trailing "-default" dropped. Callers comparing names the catalog does
// not hold use it so that they fold exactly as Lookup does.
func Key(name string) string {
	return trimDefault(foldASCII(name))
}

// trimDefault drops one trailing "-default", in any ASCII case.
func trimDefault(name string) string {
	if n := len(name) - len(defaultSuffix); n >= 0 && lowerASCII(name[n:]) == defaultSuffix {
		return name[:n]
	}
	return name
}

// foldASCII trims and lower-cases ASCII letters only; see the package comment
// for why the rest of Unicode is left alone.
func foldASCII(s string) string {
	return lowerASCII(strings.TrimSpace(s))
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
