package main

import (
	"bytes"
	"embed"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path"
	"strings"

	"backfill/apply"
)

// The catalog is the one in internal/cli/testdata, copied here because
// go:embed cannot reach outside the package directory.
//
//go:embed catalog
var catalogFS embed.FS

// catalogConfig returns a template's config.yaml from the embedded catalog.
func catalogConfig(template string) []byte {
	b, err := fs.ReadFile(catalogFS, path.Join("catalog", template, "config.yaml"))
	if err != nil {
		panic("fleetsim: embedded catalog lacks " + template) // a build-time fact
	}
	return b
}

// defaultTemplate is the runtime's default template as the SPEC defines it:
// <runtime>-default, else the template named like the runtime.
func defaultTemplate(runtime string) string {
	if _, err := fs.Stat(catalogFS, path.Join("catalog", runtime+"-default", "config.yaml")); err == nil {
		return runtime + "-default"
	}
	return runtime
}

// Collectors a simulated tenant may use.
const (
	collectHTTP = "http"
	collectFile = "file"
)

// What happens to a row right after its capture, to reach the removed
// verdict with a single snapshot: the row is live when listed and captured,
// and gone or tombstoned by the time plan reads it.
const (
	afterRemove = "remove"
	afterDelete = "delete"
)

// fleetSpec is the whole fleet as data. design derives it from the size and
// seed alone, so the answer key is known before anything runs and the same
// flags always give the same fleet.
type fleetSpec struct {
	Seed    uint64
	Tenants []*tenantSpec
}

// tenantSpec is one simulated tenant.
type tenantSpec struct {
	Name       string
	Collector  string // collectHTTP or collectFile
	Claim      string // tenant-wide CP claim; "" for the tenant the CP has no record of
	ExtraCP    string // a second tenant-wide record naming the same template differently
	DSNEnv     string // the env variable holding the tenant's DSN
	Workspaces []*workspaceSpec
}

// workspaceSpec is one workspace row, its live config and what plan and
// apply must make of it.
type workspaceSpec struct {
	ID, Name, Runtime, Kind, Status string
	Template                        string // the DB value when the fleet starts
	InstanceID, ParentID            string
	Live                            []byte   // live /configs/config.yaml; nil: missing (gone)
	LiveDesc                        string   // what the live config is, for the key
	After                           string   // afterRemove, afterDelete or ""
	Claims                          []string // workspace-level CP claims, as written

	Case    string
	Verdict apply.Verdict // "" when the workspace is never planned
	Drift   bool
	Final   string // template after apply --execute
}

// custom reports whether the live config is something other than the
// runtime default: the restart wave overwrites those first, as they are the
// ones whose identity a restart destroys.
func (w *workspaceSpec) custom() bool {
	return !bytes.Equal(w.Live, catalogConfig(defaultTemplate(w.Runtime)))
}

// planned reports whether snapshot lists the workspace, so plan has an item
// for it: a row already removed before the snapshot is never seen.
func (w *workspaceSpec) planned() bool { return w.Verdict != "" }

// special is a case that reaches one corner of the verdict table; each
// appears once in the fleet.
type special struct {
	name  string
	needs string // collectHTTP, collectFile, "cp" (the tenant has CP records) or ""
	build func(w *workspaceSpec)
}

const (
	seoAgent      = "seo-agent"
	platformAgent = "platform-agent"
)

// stubConfig is what the platform generates for a workspace without a
// template: only stub keys, named after the workspace itself.
func stubConfig(name, description string) []byte {
	return fmt.Appendf(nil, "name: %q\ndescription: %q\nversion: 1.0.0\ntier: 4\nruntime: claude-code\nmodel: \"sonnet\"\nruntime_config:\n  model: \"sonnet\"\n  timeout: 0\n", name, description)
}

// specials lists the corner cases, constrained ones first so the greedy
// placement in assignSpecials always finds them a tenant when one exists.
var specials = []special{
	{"no-evidence-file", collectFile, func(w *workspaceSpec) {
		w.Name, w.Live, w.LiveDesc = "seo-lost", nil, "missing"
		w.Case, w.Verdict = "live config file missing: the file collector reports gone", apply.NoEvidence
	}},
	{"removed-after-capture", collectHTTP, func(w *workspaceSpec) {
		w.Name, w.Live, w.LiveDesc, w.After = "seo-sunset", catalogConfig(seoAgent), seoAgent, afterRemove
		w.Case, w.Verdict = "captured, then set to status 'removed' before plan", apply.Removed
	}},
	{"deleted-after-capture", collectHTTP, func(w *workspaceSpec) {
		w.Name, w.Live, w.LiveDesc, w.After = "seo-deleted", catalogConfig(seoAgent), seoAgent, afterDelete
		w.Case, w.Verdict = "captured, then its row deleted before plan", apply.Removed
	}},
	{"no-evidence-http", collectHTTP, func(w *workspaceSpec) {
		w.Name, w.Live, w.LiveDesc = "seo-vanished", nil, "missing"
		w.Case, w.Verdict = "live config missing: the files API answers 404 (gone)", apply.NoEvidence
	}},
	{"already-set", "cp", func(w *workspaceSpec) {
		w.Name, w.Template, w.Live, w.LiveDesc = "seo-postfix", seoAgent, catalogConfig(seoAgent), seoAgent
		w.Case, w.Verdict = "template already seo-agent, matching evidence and CP", apply.AlreadySet
	}},
	{"already-set-drift", "cp", func(w *workspaceSpec) {
		w.Name, w.Template, w.Live, w.LiveDesc = "seo-mislabelled", platformAgent, catalogConfig(seoAgent), seoAgent
		w.Case, w.Verdict, w.Drift = "template already platform-agent, but evidence and CP say seo-agent", apply.AlreadySet, true
	}},
	{"cp-ambiguous", "cp", func(w *workspaceSpec) {
		w.Name, w.Live, w.LiveDesc = "seo-two-claims", catalogConfig(seoAgent), seoAgent
		w.Claims = []string{seoAgent, platformAgent}
		w.Case, w.Verdict = "two workspace-level CP records name different templates", apply.CPAmbiguous
	}},
	{"conflict", "cp", func(w *workspaceSpec) {
		w.Name, w.Live, w.LiveDesc = "seo-claimed-other", catalogConfig(seoAgent), seoAgent
		w.Claims = []string{platformAgent}
		w.Case, w.Verdict = "evidence seo-agent, workspace-level CP record platform-agent", apply.Conflict
	}},
	{"conflict-default", "cp", func(w *workspaceSpec) {
		w.Name, w.Live, w.LiveDesc = "claude-claimed-seo", catalogConfig("claude-code-default"), "claude-code-default"
		w.Claims = []string{seoAgent}
		w.Case, w.Verdict = "evidence is the runtime default, workspace-level CP record seo-agent", apply.Conflict
	}},
	{"concierge-no-claim", "cp", func(w *workspaceSpec) {
		w.Name, w.Kind, w.Live, w.LiveDesc = "support-concierge", "platform", catalogConfig(platformAgent), platformAgent
		w.Case, w.Verdict = "concierge without a workspace-level CP record: the tenant-wide seo-agent applies", apply.Conflict
	}},
	{"concierge-already-set", "cp", func(w *workspaceSpec) {
		w.Name, w.Kind, w.Template, w.Live, w.LiveDesc = "billing-concierge", "platform", platformAgent, catalogConfig(platformAgent), platformAgent
		w.Claims = []string{platformAgent}
		w.Case, w.Verdict = "concierge already set to platform-agent", apply.AlreadySet
	}},
	{"agree-template-key", "cp", func(w *workspaceSpec) {
		w.Name, w.LiveDesc = "blog-writer", "template key seo-agent"
		w.Live = []byte("name: Blog Writer\ntemplate: seo-agent\nruntime: claude-code\ntier: 2\nskills:\n  - keyword-research\n")
		w.Case, w.Verdict, w.Final = "explicit template: seo-agent key, CP agrees", apply.Agree, seoAgent
	}},
	{"default-with-claim", "cp", func(w *workspaceSpec) {
		w.Name, w.Live, w.LiveDesc = "claude-claimed-default", catalogConfig("claude-code-default"), "claude-code-default"
		w.Claims = []string{"claude-code"}
		w.Case, w.Verdict = "runtime default, workspace-level CP record names the same default", apply.Default
	}},
	{"tombstone", "", func(w *workspaceSpec) {
		w.Name, w.Status, w.Live, w.LiveDesc = "seo-retired", "removed", nil, "missing"
		w.Case = "removed before the snapshot: never listed, so never planned"
	}},
	{"stub-named-like-template", "", func(w *workspaceSpec) {
		w.Name, w.LiveDesc = "SEO Agent", "stub"
		w.Live = stubConfig("SEO Agent", "marketing")
		w.Case, w.Verdict = "stub config whose name equals seo-agent's display name", apply.StubEvidence
	}},
	{"stub", "", func(w *workspaceSpec) {
		w.Name, w.LiveDesc = "scratchpad", "stub"
		w.Live = stubConfig("scratchpad", "notes")
		w.Case, w.Verdict = "stub config", apply.StubEvidence
	}},
	{"unknown-template-key", "", func(w *workspaceSpec) {
		w.Name, w.LiveDesc = "research-desk", "template key research-agent"
		w.Live = []byte("name: Research Desk\ntemplate: research-agent\nruntime: claude-code\ntier: 2\nskills:\n  - web-search\n")
		w.Case, w.Verdict = "explicit template key naming a template not in the catalog", apply.UnknownTemplate
	}},
	{"unknown-name", "", func(w *workspaceSpec) {
		w.Name, w.LiveDesc = "market-watch", "unrecognised name"
		w.Live = []byte("name: Market Watch\ndescription: Tracks competitors.\nversion: 0.2.0\ntier: 2\nruntime: claude-code\nprompt_files:\n  - prompts/watch.md\n")
		w.Case, w.Verdict = "display name matches no catalog template", apply.UnknownTemplate
	}},
	{"runtime-mismatch", "", func(w *workspaceSpec) {
		w.Name, w.Runtime, w.Live, w.LiveDesc = "hermes-seo", "hermes", catalogConfig(seoAgent), seoAgent
		w.Case, w.Verdict = "seo-agent (a claude-code template) on a hermes workspace", apply.RuntimeMismatch
	}},
	{"default-template-key", "", func(w *workspaceSpec) {
		w.Name, w.LiveDesc = "backend-engineer", "template key claude-code-default"
		w.Live = []byte("name: Backend Engineer 2\nrole: backend\ntemplate: claude-code-default\ntier: 3\nmodel: opus\nruntime: claude-code\n")
		w.Case, w.Verdict = "explicit template: claude-code-default key", apply.Default
	}},
}

// notSimulated names the verdicts the fleet cannot produce, with why.
var notSimulated = map[apply.Verdict]string{
	apply.UnstableEvidence: "needs two captures of one workspace naming different non-default templates; one snapshot gives one capture",
	apply.Unreachable:      "needs a tenant database down at plan time; the fleet keeps every tenant up (internal/cli tests stop one)",
}

var tenantNames = []string{"acme-seo", "globex", "initech", "umbrella-labs", "hooli", "stark", "wayne-ent", "wonka", "tyrell", "cyberdyne", "soylent", "oscorp"}

// tenantName gives the i-th tenant a plain slug (valid in the inventory and
// in a database name).
func tenantName(i int) string {
	if i < len(tenantNames) {
		return tenantNames[i]
	}
	return fmt.Sprintf("org-%02d", i+1)
}

// dsnEnv is the environment variable holding a tenant's DSN.
func dsnEnv(tenant string) string {
	return "FLEET_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(tenant)) + "_DSN"
}

// minTenants is what the mix needs: an http tenant and a file tenant with CP
// records, and the tenant the CP has no record of.
const minTenants = 3

// design lays out a fleet of the given size. Tenant i uses the file
// collector when i%4 == 1, the http collector otherwise; the last tenant has
// no CP record. Each tenant has a concierge (kind platform); the special
// cases are spread over the tenants that suit them; the rest are ordinary
// workspaces: seo-agent custom ones and runtime defaults.
func design(tenants, workspaces int, seed uint64) (*fleetSpec, error) {
	if tenants < minTenants {
		return nil, fmt.Errorf("--tenants must be at least %d, to have http and file collectors and a tenant without CP records", minTenants)
	}
	f := &fleetSpec{Seed: seed}
	for i := range tenants {
		t := &tenantSpec{Name: tenantName(i), Collector: collectHTTP, Claim: seoAgent}
		if i%4 == 1 {
			t.Collector = collectFile
		}
		if i == tenants-1 {
			t.Claim = ""
		}
		if i == 1 {
			// The same claim written another way is one claim, not two.
			t.ExtraCP = "SEO-Agent"
		}
		t.DSNEnv = dsnEnv(t.Name)
		f.Tenants = append(f.Tenants, t)
	}
	slots := make([]int, tenants)
	for i := range slots {
		slots[i] = workspaces / tenants
		if i < workspaces%tenants {
			slots[i]++
		}
	}
	placed, ok := assignSpecials(f.Tenants, slots)
	if !ok {
		min := workspaces + 1
		for ; ; min++ {
			s := make([]int, tenants)
			for i := range s {
				s[i] = min / tenants
				if i < min%tenants {
					s[i]++
				}
			}
			if _, ok := assignSpecials(f.Tenants, s); ok {
				break
			}
		}
		return nil, fmt.Errorf("--workspaces %d is too few for %d tenants: each tenant has a concierge and the %d special cases need room; use at least %d",
			workspaces, tenants, len(specials), min)
	}

	rng := rand.New(rand.NewPCG(seed, 0x666c656574))
	ids := map[string]bool{}
	newID := func() string {
		for {
			var b [16]byte
			binary.BigEndian.PutUint64(b[:8], rng.Uint64())
			binary.BigEndian.PutUint64(b[8:], rng.Uint64())
			b[6] = b[6]&0x0f | 0x40 // version 4
			b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
			id := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
			if !ids[id] {
				ids[id] = true
				return id
			}
		}
	}
	for ti, t := range f.Tenants {
		newWS := func() *workspaceSpec {
			id := newID()
			return &workspaceSpec{ID: id, Runtime: "claude-code", Kind: "workspace", Status: "online", InstanceID: "ws-" + id[:8]}
		}
		concierge := newWS()
		concierge.Name, concierge.Kind = "org-concierge", "platform"
		concierge.Live, concierge.LiveDesc = catalogConfig(platformAgent), platformAgent
		if t.Claim != "" {
			concierge.Claims = []string{platformAgent}
			concierge.Case, concierge.Verdict, concierge.Final = "the org's concierge, workspace-level CP record platform-agent", apply.Agree, platformAgent
		} else {
			concierge.Case, concierge.Verdict = "the org's concierge in the tenant the CP has no record of", apply.CPMissing
		}
		t.Workspaces = append(t.Workspaces, concierge)
		for _, sp := range placed[ti] {
			w := newWS()
			sp.build(w)
			w.Case = sp.name + ": " + w.Case
			t.Workspaces = append(t.Workspaces, w)
		}
		counter := map[string]int{}
		for len(t.Workspaces) < slots[ti] {
			w := newWS()
			t.Workspaces = append(t.Workspaces, w)
			ordinary(w, t, rng, counter)
			// Some workspaces hang under the concierge, as teams do.
			if rng.IntN(2) == 0 {
				w.ParentID = concierge.ID
			}
		}
		for _, w := range t.Workspaces {
			if w.Verdict != apply.Agree {
				w.Final = w.Template
			}
		}
	}
	return f, nil
}

// assignSpecials places each special on the suitable tenant with the fewest
// so far, keeping one slot per tenant for its concierge.
func assignSpecials(tenants []*tenantSpec, slots []int) ([][]special, bool) {
	placed := make([][]special, len(tenants))
	for _, sp := range specials {
		best := -1
		for i, t := range tenants {
			switch {
			case sp.needs == collectHTTP && t.Collector != collectHTTP,
				sp.needs == collectFile && t.Collector != collectFile,
				sp.needs == "cp" && t.Claim == "",
				len(placed[i])+1 > slots[i]-1:
				continue
			}
			if best < 0 || len(placed[i]) < len(placed[best]) {
				best = i
			}
		}
		if best < 0 {
			return nil, false
		}
		placed[best] = append(placed[best], sp)
	}
	return placed, true
}

var (
	seoWords = []string{"writer", "auditor", "research", "outreach", "briefs", "links"}
	defWords = []string{"dev", "ops", "triage", "docs", "review", "support"}
	statuses = []string{"online", "online", "online", "online", "online", "online", "offline", "paused", "hibernated", "degraded"}
)

// ordinary makes w one of the bulk of the fleet: a seo-agent workspace (most
// with an empty template, a few created after the fix) or a runtime default.
// openclaw is left out: its default config is stub-like, so it would come
// out as stub-evidence rather than default.
func ordinary(w *workspaceSpec, t *tenantSpec, rng *rand.Rand, counter map[string]int) {
	w.Status = statuses[rng.IntN(len(statuses))]
	name := func(prefix string, words []string) string {
		counter[prefix]++
		return fmt.Sprintf("%s-%s-%d", prefix, words[rng.IntN(len(words))], counter[prefix])
	}
	if rng.Float64() < 0.35 {
		w.Name, w.Live, w.LiveDesc = name("seo", seoWords), catalogConfig(seoAgent), seoAgent
		switch {
		case rng.Float64() < 0.12:
			w.Template = seoAgent
			w.Case, w.Verdict = "seo-agent workspace created after the fix", apply.AlreadySet
		case t.Claim != "":
			w.Case, w.Verdict, w.Final = "seo-agent workspace with template = '', tenant-wide CP record", apply.Agree, seoAgent
		default:
			w.Case, w.Verdict = "seo-agent workspace in the tenant the CP has no record of", apply.CPMissing
		}
		return
	}
	switch r := rng.Float64(); {
	case r < 0.5:
		w.Runtime = "claude-code"
	case r < 0.8:
		w.Runtime = "hermes"
	default:
		w.Runtime = "codex"
	}
	prefix := strings.TrimSuffix(w.Runtime, "-code")
	tmpl := defaultTemplate(w.Runtime)
	w.Name, w.Live, w.LiveDesc = name(prefix, defWords), catalogConfig(tmpl), tmpl
	w.Case, w.Verdict = "runtime default "+tmpl, apply.Default
}
