// Package inventory loads the tenant inventory: which tenant databases
// backfill works on, and how it collects each workspace's config file.
//
// The file is YAML, decoded strictly: unknown or duplicate keys are errors,
// because a misspelt key in an operator's file would otherwise be silently
// ignored and backfill would run against the wrong target. ${NAME} references
// are expanded from the environment after parsing, in string values only, so
// a secret holding YAML syntax cannot change the document's structure.
//
//	version: 1
//	defaults:
//	  collectors:          # tried in order until one captures evidence
//	    - exec: ["docker", "exec", "{container}", "dd", "if=/configs/config.yaml", "iflag=nofollow", "status=none"]
//	    - file: "/var/lib/docker/volumes/ws-{workspace_id}-configs/_data/config.yaml"
//	tenants:
//	  - name: jrs-seo
//	    dsn: "postgres://backfill:${JRS_PG_PASSWORD}@jrs-db:5432/molecule?sslmode=require"
//	    collector:
//	      http:
//	        url: "https://configs.jrs.example/{workspace_id}/config.yaml"
//	        headers: {Authorization: "Bearer ${JRS_ADMIN_TOKEN}"}
//	        json_field: content
//	  - name: concierge
//	    dsn: "${CONCIERGE_DSN}"
//	    collector:
//	      file: "/mnt/concierge/{workspace_id}/configs/config.yaml"
//	  - name: hosted
//	    dsn: "${HOSTED_DSN}"
//	    collector:
//	      files_api:
//	        base_url: "https://hosted.example"
//	        headers: {Authorization: "Bearer ${HOSTED_TOKEN}", X-Molecule-Org-Id: "${HOSTED_ORG}"}
//	        rate: 8
//
// A file collector may also be a mapping, {path: ..., root: ...}, whose root
// is the directory its reads must stay beneath. An exec collector may be a
// mapping, {argv: [...], env: [NAME, ...]}, naming the variables its command
// gets besides PATH, HOME, LANG and TZ.
package inventory

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"backfill/internal/collector"
	"backfill/internal/inputfile"
	"backfill/internal/secret"
)

// Inventory is a loaded, validated inventory file.
type Inventory struct {
	// Path is the file the inventory came from, as given to Load or Parse.
	Path string
	// Tenants are in file order.
	Tenants []Tenant

	// envValues are the values of every ${NAME} expanded, in first-use
	// order; they are secrets whatever field they landed in.
	envValues []string
	// digest is the sha256 hex of the file as read.
	digest string
	// databasesOnly: loaded by LoadDatabases, with no collectors.
	databasesOnly bool
}

// DatabasesOnly reports whether the inventory was loaded by LoadDatabases or
// ParseDatabases: its tenants have names and DSNs and no collectors.
func (inv *Inventory) DatabasesOnly() bool { return inv != nil && inv.databasesOnly }

// Digest is the sha256 hex of the inventory file's bytes as read: a plan
// records it. A copy of the Inventory cut down to some tenants keeps the
// whole file's digest.
func (inv *Inventory) Digest() string { return inv.digest }

// Tenant is one tenant database and how to collect its workspaces' configs.
type Tenant struct {
	// Name is a unique slug: [A-Za-z0-9._-]+, never "." or ".." and never
	// starting with "-".
	Name string
	// DSN is expanded: it holds secrets; never log it (use secret.RedactDSN).
	DSN string
	// Chain is the effective collectors, tried in order for each workspace
	// until one captures evidence (the tenant's collector or collectors,
	// else the defaults'), ${NAME}-expanded. Their placeholders are left
	// for the caller. A single collector is a chain of one.
	Chain []collector.Spec
	// RawChain is the same collectors before ${NAME} expansion: safe to
	// store or log as target descriptions, since secrets belong in the
	// environment. A secret written literally in the file is still there;
	// pass it through a Redactor fed with Secrets to catch that.
	RawChain []collector.Spec
	// Collector and Raw are the first of Chain and RawChain, for callers
	// that use one collector.
	Collector collector.Spec
	Raw       collector.Spec
	// Line is the line of the tenant's entry in the file.
	Line int
}

// Collectors returns the tenant's chain, expanded and as written: Chain
// and RawChain, or Collector and Raw alone when the chain is unset (a
// Tenant built by hand).
func (t Tenant) Collectors() (exp, raw []collector.Spec) {
	if len(t.Chain) > 0 && len(t.Chain) == len(t.RawChain) {
		return t.Chain, t.RawChain
	}
	return []collector.Spec{t.Collector}, []collector.Spec{t.Raw}
}

// clone returns c with its slices and map copied, so tenants sharing the
// defaults cannot alter each other's collector.
func clone(c collector.Spec) collector.Spec {
	c.Argv = slices.Clone(c.Argv)
	c.Env = slices.Clone(c.Env)
	c.Environ = slices.Clone(c.Environ)
	c.Headers = maps.Clone(c.Headers)
	return c
}

// MaxBytes bounds an inventory file: thousands of tenants fit in a few.
const MaxBytes = 16 << 20

// Load reads and validates the inventory at path. getenv resolves ${NAME}
// references; pass os.LookupEnv in production (nil means the same).
func Load(path string, getenv func(string) (string, bool)) (*Inventory, error) {
	return load(path, getenv, false)
}

func load(path string, getenv func(string) (string, bool), databasesOnly bool) (*Inventory, error) {
	data, err := inputfile.Read(path, MaxBytes)
	if err != nil {
		// The *PathError names the file; there is no line to give.
		return nil, fmt.Errorf("reading inventory: %w", err)
	}
	return parse(path, data, getenv, databasesOnly)
}

// Parse validates data as an inventory file called name (used in error
// messages and as Inventory.Path). getenv resolves ${NAME} references; nil
// means os.LookupEnv.
//
// Every problem found is reported, each as an *Error naming the file, the
// line and, where one is involved, the tenant; several are joined with
// errors.Join. No error ever contains an expanded value.
func Parse(name string, data []byte, getenv func(string) (string, bool)) (*Inventory, error) {
	return parse(name, data, getenv, false)
}

// LoadDatabases is Load for the commands that reach tenant databases and
// collect nothing (plan, apply, rollback, inspect, publish): it reads each
// tenant's name and DSN and leaves the collectors out. Their keys must still
// be ones an inventory may have, but nothing under them is read, so the
// files API tokens and an exec collector's variables need not be set where
// these commands run, and a tenant may have no collector at all (a write
// inventory holding the write role's DSNs needs none). The tenants' Chain,
// RawChain, Collector and Raw are empty.
func LoadDatabases(path string, getenv func(string) (string, bool)) (*Inventory, error) {
	return load(path, getenv, true)
}

// ParseDatabases is Parse as LoadDatabases reads: names and DSNs only.
func ParseDatabases(name string, data []byte, getenv func(string) (string, bool)) (*Inventory, error) {
	return parse(name, data, getenv, true)
}

func parse(name string, data []byte, getenv func(string) (string, bool), databasesOnly bool) (*Inventory, error) {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	p := &parser{file: name, getenv: getenv, databasesOnly: databasesOnly}
	inv := p.parse(data)
	if err := p.err(); err != nil {
		return nil, err
	}
	inv.databasesOnly = databasesOnly
	inv.Path = name
	sum := sha256.Sum256(data)
	inv.digest = hex.EncodeToString(sum[:])
	return inv, nil
}

// Secrets returns every secret value the inventory holds: each expanded
// environment value used, each DSN password (as written and decoded), each
// header value, each value an exec collector's env list passes, and each
// credential written literally in a header or URL (secret.HeaderCredentials,
// secret.URLCredentials). Feed them to a secret.Redactor before writing
// anything.
func (inv *Inventory) Secrets() []string {
	if inv == nil {
		return nil
	}
	var out []string
	seen := make(map[string]bool)
	add := func(vs ...string) {
		for _, v := range vs {
			if v != "" && !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
	}
	add(inv.envValues...)
	for _, t := range inv.Tenants {
		// Parse rejected unparsable DSNs, so the error cannot happen here
		// unless the caller edited the DSN; then the whole DSN is the secret.
		pw, err := secret.DSNPasswords(t.DSN)
		if err != nil {
			add(t.DSN)
		}
		add(pw...)
		exp, raw := t.Collectors()
		for _, c := range exp {
			for _, k := range slices.Sorted(maps.Keys(c.Headers)) {
				add(c.Headers[k])
			}
		}
		// Credentials written literally rather than as ${NAME}: the token of
		// "Bearer abc", a URL's password, a token= query value.
		for _, c := range raw {
			for _, k := range slices.Sorted(maps.Keys(c.Headers)) {
				add(secret.HeaderCredentials(k, c.Headers[k])...)
			}
			add(secret.URLCredentials(c.URL)...)
			add(secret.URLCredentials(c.BaseURL)...)
		}
	}
	return out
}

// Tenant returns the tenant called name.
func (inv *Inventory) Tenant(name string) (Tenant, bool) {
	if inv == nil {
		return Tenant{}, false
	}
	for _, t := range inv.Tenants {
		if t.Name == name {
			return t, true
		}
	}
	return Tenant{}, false
}

// Error is one problem in an inventory file. Msg never holds a secret.
type Error struct {
	// File is the inventory's name as given to Load or Parse.
	File string
	// Line is 1-based.
	Line int
	// Tenant names the tenant involved, or is empty.
	Tenant string
	// Msg describes the problem.
	Msg string
}

// Error formats e as file:line: tenant "name": msg.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	if e.Tenant != "" {
		fmt.Fprintf(&b, "tenant %q: ", e.Tenant)
	}
	b.WriteString(e.Msg)
	return b.String()
}
