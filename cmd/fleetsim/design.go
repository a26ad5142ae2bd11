package main

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path"
	"strings"

	"gopkg.in/yaml.v3"

	"backfill/apply/plan"
	"backfill/internal/filesapi"
	"backfill/internal/fixture"
)

// templateFS is the tests' fixture catalog (internal/fixture): its template
// folders and its manifest.json, which fleetsim writes beside the cache, not
// in it.
var templateFS = fixture.Catalog()

// catalogConfig returns a template's config.yaml from the embedded catalog;
// it panics when there is none (a build-time fact).
func catalogConfig(template string) []byte { return fixture.Template(template) }

// defaultTemplate is the runtime's default template as the platform names
// it (README, Phase two, "Catalog"): <runtime>-default, else the template
// named like the runtime.
func defaultTemplate(runtime string) string {
	if _, err := fs.Stat(templateFS, path.Join(runtime+"-default", "config.yaml")); err == nil {
		return runtime + "-default"
	}
	return runtime
}

// Tenant kinds: how the tenant's workspace server runs its workspaces and
// which collector the inventory gives it.
const (
	// kindHosted: a hosted server (tenant guard on, org header required).
	// Workspaces run on EC2 (instance_id i-…, read over EIC) or as
	// containers named in instance_id, which the server's container lookup
	// never finds, so it answers from the host mirror. Collector: files_api.
	kindHosted = "hosted"
	// kindSelfExec: a self-hosted server (containers ws-<uuid>, instance_id
	// NULL, no host mirror, the org header ignored). Collector: exec
	// through docker, falling back to the config volume as a file.
	kindSelfExec = "self-hosted-exec"
	// kindSelfAPI: a self-hosted server read through its files API, which
	// can only answer for running containers and otherwise falls back to a
	// template folder. Collector: files_api.
	kindSelfAPI = "self-hosted-files-api"
)

// Collector names in the answer key.
const (
	collectFilesAPI = "files_api"
	collectExecFile = "exec,file"
)

// What happens to a row right after its capture, to reach the removed
// verdict with a single snapshot: the row is live when listed and captured,
// and gone or tombstoned by the time plan reads it.
const (
	afterRemove = "remove"
	afterDelete = "delete"
)

// Container states. A self-hosted workspace's container is ws-<uuid>; a
// hosted one's is named in instance_id (or is an EC2 instance).
const (
	containerRunning = "running"
	containerExited  = "exited" // docker exec: "container <id> is not running"
	containerAbsent  = "absent" // docker exec: "No such container: ws-<uuid>"
)

// Where the tool's collector gets a workspace's config (answer key
// read_from). Only the first five are evidence.
const (
	readExec        = "exec"                     // docker exec … cat
	readFile        = "file"                     // the config volume, read as a file
	readEIC         = filesapi.SourceEIC         // files API, EC2 instance
	readContainer   = filesapi.SourceContainer   // files API, running container
	readHostMirror  = filesapi.SourceHostMirror  // files API, host mirror
	readTemplateDir = filesapi.SourceTemplateDir // files API, a template folder: never evidence
	readNone        = "none"                     // nothing: gone
)

func isEvidence(readFrom string) bool {
	switch readFrom {
	case readExec, readFile, readEIC, readContainer, readHostMirror:
		return true
	}
	return false
}

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
	Kind       string // kindHosted, kindSelfExec or kindSelfAPI
	Claim      string // tenant-wide CP claim; "" for the tenant the CP has no record of
	ExtraCP    string // a second tenant-wide record naming the same template differently
	DSNEnv     string // env variables holding the tenant's DSN, files API token and org id
	TokenEnv   string
	OrgEnv     string
	Workspaces []*workspaceSpec
}

func (t *tenantSpec) hosted() bool { return t.Kind == kindHosted }

func (t *tenantSpec) collector() string {
	if t.Kind == kindSelfExec {
		return collectExecFile
	}
	return collectFilesAPI
}

// workspaceSpec is one workspace row, its live config and what plan and
// apply must make of it.
type workspaceSpec struct {
	ID, Name, Runtime, Kind, Status string
	// RuntimeDefaulted: the row is inserted without a runtime and gets the
	// column's default, hermes, as rows made by the platform's newer paths do.
	RuntimeDefaulted     bool
	Template             string // the DB value when the fleet starts
	InstanceID, ParentID string // "" for NULL
	EC2                  bool   // hosted on an EC2 instance (instance_id i-…)
	// NoMirror: a hosted workspace the server keeps no host mirror of (made
	// by a bundle import, never provisioned on this host).
	NoMirror bool
	Live     []byte   // the config.yaml the workspace holds; nil: none
	LiveDesc string   // what the live config is, for the key
	After    string   // afterRemove, afterDelete or ""
	Claims   []string // workspace-level CP claims, as written

	Case    string
	Verdict plan.Verdict // "" when the workspace is never planned
	Drift   bool
	Final   string // template after apply --execute
}

// container is the state of the workspace's container, from its status as
// the platform leaves it: pausing or hibernating removes a self-hosted
// container (its volume stays) and terminates hosted compute; an offline
// workspace's container has exited; failed stops nothing.
func (w *workspaceSpec) container() string {
	switch w.Status {
	case "paused", "hibernated", "hibernating", "removed":
		return containerAbsent
	case "offline":
		return containerExited
	}
	return containerRunning
}

// restartConfig is what a restart provisions: the runtime default, or for
// a concierge the runtime's base template renamed after it again.
func (w *workspaceSpec) restartConfig() []byte {
	if w.Kind == "platform" {
		return conciergeConfig(w.Runtime, w.Name)
	}
	return catalogConfig(defaultTemplate(w.Runtime))
}

// custom reports whether the live config is something a restart changes:
// the restart wave overwrites those first, as they are the ones whose
// identity a restart destroys.
func (w *workspaceSpec) custom() bool { return !bytes.Equal(w.Live, w.restartConfig()) }

// planned reports whether snapshot lists the workspace, so plan has an item
// for it: a row already removed before the snapshot is never seen.
func (w *workspaceSpec) planned() bool { return w.Verdict != "" }

// readFrom says where the tenant's collector gets the workspace's config
// while the fleet runs (before any restart): see the read* constants.
func (t *tenantSpec) readFrom(w *workspaceSpec) string {
	fallback := func() string {
		if _, ok := filesapi.ResolveTemplateFS(templateFS, w.Name); ok {
			return readTemplateDir
		}
		return readNone
	}
	switch {
	case w.Status == "removed":
		return readNone
	case t.Kind == kindSelfExec && w.Live == nil:
		return readNone
	case t.Kind == kindSelfExec && w.container() == containerRunning:
		return readExec
	case t.Kind == kindSelfExec:
		return readFile
	case t.Kind == kindSelfAPI && w.container() == containerRunning && w.Live != nil:
		return readContainer
	case t.Kind == kindSelfAPI:
		return fallback()
	case w.EC2 && w.container() == containerRunning && w.Live != nil:
		return readEIC
	case w.EC2:
		return readNone // the chain stops at EIC
	case !w.NoMirror && w.Live != nil:
		return readHostMirror
	case !w.NoMirror:
		return readNone // the mirror lacks the file: 404
	}
	return fallback()
}

// special is a case that reaches one corner of the verdict table or one of
// the platform's ways of misleading a client; each appears once.
type special struct {
	name  string
	needs func(*tenantSpec) bool // nil: any tenant
	build func(w *workspaceSpec, t *tenantSpec)
}

func isHosted(t *tenantSpec) bool   { return t.Kind == kindHosted }
func isSelfExec(t *tenantSpec) bool { return t.Kind == kindSelfExec }
func isSelfAPI(t *tenantSpec) bool  { return t.Kind == kindSelfAPI }
func isFilesAPI(t *tenantSpec) bool { return t.collector() == collectFilesAPI }
func hasCP(t *tenantSpec) bool      { return t.Claim != "" }

func all(preds ...func(*tenantSpec) bool) func(*tenantSpec) bool {
	return func(t *tenantSpec) bool {
		for _, p := range preds {
			if !p(t) {
				return false
			}
		}
		return true
	}
}

const (
	seoAgent      = "seo-agent"
	platformAgent = "platform-agent"
)

// stubModel is the model a stub names for a runtime.
var stubModel = map[string]string{"claude-code": "sonnet", "hermes": "nous-hermes-3-70b", "codex": "gpt-5", "openclaw": "sonnet"}

// stubConfig is what the platform generates for a workspace without a
// template: only stub keys, named after the workspace itself, the role as
// description; providers only for claude-code.
func stubConfig(name, description, runtime string) []byte {
	var b bytes.Buffer
	model := stubModel[runtime]
	fmt.Fprintf(&b, "name: %q\ndescription: %q\nversion: 1.0.0\ntier: 4\nruntime: %s\nmodel: %q\n", name, description, runtime, model)
	if runtime == "claude-code" {
		b.WriteString("providers:\n  - anthropic\n")
	}
	fmt.Fprintf(&b, "runtime_config:\n  model: %q\n  timeout: 0\n", model)
	return b.Bytes()
}

// conciergeRole is the concierge's role text, which the platform writes as
// its config's description.
const conciergeRole = "Routes the org's requests to the right workspace."

// conciergeConfig is a concierge's live config as the platform provisions
// it: the base template of its runtime with name set to the row's name,
// description to its role, and every required_env emptied.
func conciergeConfig(runtime, name string) []byte {
	var doc yaml.Node
	if err := yaml.Unmarshal(catalogConfig(defaultTemplate(runtime)), &doc); err != nil || len(doc.Content) == 0 {
		panic("fleetsim: embedded template does not parse: " + runtime)
	}
	m := doc.Content[0]
	set := func(key, value string) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				m.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value}
				return
			}
		}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key},
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value})
	}
	set("name", name)
	set("description", conciergeRole)
	var empty func(n *yaml.Node)
	empty = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "required_env" {
					n.Content[i+1] = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
					continue
				}
				empty(n.Content[i+1])
			}
			return
		}
		for _, c := range n.Content {
			empty(c)
		}
	}
	empty(m)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		panic(err) // a parsed document always encodes
	}
	enc.Close()
	return b.Bytes()
}

// renamed is a template's config with its name: line replaced, as a person
// renaming a workspace's config leaves it.
func renamed(template, name string) []byte {
	var out []string
	for _, line := range strings.Split(string(catalogConfig(template)), "\n") {
		if strings.HasPrefix(line, "name:") {
			line = "name: " + name
		}
		out = append(out, line)
	}
	return []byte(strings.Join(out, "\n"))
}

// specials lists the corner cases, constrained ones first so the greedy
// placement in assignSpecials always finds them a tenant when one exists.
var specials = []special{
	// Self-hosted through the files API: it only answers for running
	// containers, and then falls back to a template folder by name.
	{"container-listing-without-config", isSelfAPI, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Live, w.LiveDesc = "SEO-Agent", nil, "none: its running container's /configs has no config.yaml"
		w.Case, w.Verdict = "ListFiles answers from the running container (source container, no config.yaml listed), "+
			"but ReadFile's cat fails and falls through to template folder seo-agent: never evidence", plan.NoEvidence
	}},
	{"paused-self-hosted-files-api", isSelfAPI, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Status, w.Live, w.LiveDesc = "seo-paused", "paused", catalogConfig(seoAgent), seoAgent+" (in its volume, unread)"
		w.Case, w.Verdict = "self-hosted files API, paused: container removed, no host mirror, no template folder of that name: "+
			"404 file not found (container offline, no template); only exec→file reaches the volume", plan.NoEvidence
	}},
	// Self-hosted through docker exec, falling back to the config volume.
	{"no-evidence-volume", isSelfExec, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Status, w.Live, w.LiveDesc = "seo-lost", "hibernated", nil, "missing"
		w.Case, w.Verdict = "hibernated: docker says No such container, and its config volume holds no config.yaml: exec and file both gone", plan.NoEvidence
	}},
	{"hibernated-exec-file", all(isSelfExec, hasCP), func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Status, w.Live, w.LiveDesc = "seo-sleeper", "hibernated", catalogConfig(seoAgent), seoAgent
		w.Case, w.Verdict, w.Final = "hibernated: its container was removed (docker: No such container); "+
			"the file fallback reads the config volume: seo-agent, CP agrees", plan.Agree, seoAgent
	}},
	{"stopped-exec-file", all(isSelfExec, hasCP), func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Status, w.Live, w.LiveDesc = "seo-stopped", "offline", catalogConfig(seoAgent), seoAgent
		w.Case, w.Verdict, w.Final = "offline: its container exited (docker: is not running); "+
			"the file fallback reads the config volume: seo-agent, CP agrees", plan.Agree, seoAgent
	}},
	// Hosted.
	{"eic", all(isHosted, hasCP), func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.EC2, w.Live, w.LiveDesc = "seo-on-ec2", true, catalogConfig(seoAgent), seoAgent
		w.Case, w.Verdict, w.Final = "hosted on EC2 (instance_id i-…): read over EIC, seo-agent, CP agrees", plan.Agree, seoAgent
	}},
	{"hibernated-host-mirror", all(isHosted, hasCP), func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Status, w.Live, w.LiveDesc = "seo-dormant", "hibernated", catalogConfig(seoAgent), seoAgent
		w.Case, w.Verdict, w.Final = "hosted, hibernated: compute terminated, the host mirror (bundle of the last provision) answers; CP agrees", plan.Agree, seoAgent
	}},
	{"no-evidence-files-api", isHosted, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Status, w.NoMirror, w.Live, w.LiveDesc = "seo-vanished", "hibernated", true, nil, "none readable: compute terminated, no host mirror"
		w.Case, w.Verdict = "hosted, bundle-imported (no host mirror), hibernated, named like no template: "+
			"ListFiles 200 [] (source none), ReadFile 404 file not found (container offline, no template)", plan.NoEvidence
	}},
	// The trap: a stub workspace named like a template, its container down.
	{"template-dir-trap", all(isFilesAPI, hasCP), func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Status, w.Runtime, w.RuntimeDefaulted = "seo agent", "hibernated", "hermes", true
		w.Live, w.LiveDesc = stubConfig("seo agent", "keyword notes", "hermes"), "stub (unread)"
		how := "self-hosted, container removed"
		if t.hosted() {
			w.NoMirror = true
			how = "hosted, bundle-imported (no host mirror)"
		}
		w.Case, w.Verdict = "stub workspace named \"seo agent\" (runtime from the column default), hibernated, "+how+
			": ReadFile answers 200 from template folder seo-agent, with no header saying so; the tenant-wide CP claim is seo-agent, so only the source keeps this from agree", plan.NoEvidence
	}},
	{"removed-after-capture", isFilesAPI, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Live, w.LiveDesc, w.After = "seo-sunset", catalogConfig(seoAgent), seoAgent, afterRemove
		w.Case, w.Verdict = "captured, then set to status 'removed' before plan", plan.Removed
	}},
	{"deleted-after-capture", isFilesAPI, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Live, w.LiveDesc, w.After = "seo-deleted", catalogConfig(seoAgent), seoAgent, afterDelete
		w.Case, w.Verdict = "captured, then its row deleted before plan (a second listing says workspace not found)", plan.Removed
	}},
	{"already-set", hasCP, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Template, w.Live, w.LiveDesc = "seo-postfix", seoAgent, catalogConfig(seoAgent), seoAgent
		w.Case, w.Verdict = "template already seo-agent, matching evidence and CP", plan.AlreadySet
	}},
	{"already-set-drift", hasCP, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Template, w.Live, w.LiveDesc = "seo-mislabelled", platformAgent, catalogConfig(seoAgent), seoAgent
		w.Case, w.Verdict, w.Drift = "template already platform-agent, but evidence and CP say seo-agent", plan.AlreadySet, true
	}},
	{"cp-ambiguous", hasCP, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Live, w.LiveDesc = "seo-two-claims", catalogConfig(seoAgent), seoAgent
		w.Claims = []string{seoAgent, platformAgent}
		w.Case, w.Verdict = "two workspace-level CP records name different templates", plan.CPAmbiguous
	}},
	{"conflict", hasCP, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Live, w.LiveDesc = "seo-claimed-other", catalogConfig(seoAgent), seoAgent
		w.Claims = []string{platformAgent}
		w.Case, w.Verdict = "evidence seo-agent, workspace-level CP record platform-agent", plan.Conflict
	}},
	{"conflict-default", hasCP, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Live, w.LiveDesc = "claude-claimed-seo", catalogConfig("claude-code-default"), "claude-code-default"
		w.Claims = []string{seoAgent}
		w.Case, w.Verdict = "evidence is the runtime default, workspace-level CP record seo-agent", plan.Conflict
	}},
	{"concierge-no-claim", hasCP, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Kind, w.Runtime = "Support Agent", "platform", "hermes"
		w.Live, w.LiveDesc = conciergeConfig("hermes", w.Name), "hermes renamed "+w.Name
		w.Case, w.Verdict = "concierge (kind platform) without a workspace-level CP record: the tenant-wide seo-agent applies", plan.Conflict
	}},
	{"concierge-already-set", hasCP, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Kind, w.Runtime, w.Template = "Billing Agent", "platform", "hermes", platformAgent
		w.Live, w.LiveDesc = conciergeConfig("hermes", w.Name), "hermes renamed "+w.Name
		w.Claims = []string{platformAgent}
		w.Case, w.Verdict = "concierge already set to platform-agent", plan.AlreadySet
	}},
	{"agree-template-key", hasCP, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.LiveDesc = "blog-writer", "template key seo-agent"
		w.Live = []byte("name: Blog Writer\ntemplate: seo-agent\nruntime: claude-code\ntier: 2\nskills:\n  - keyword-research\n")
		w.Case, w.Verdict, w.Final = "explicit template: seo-agent key, CP agrees", plan.Agree, seoAgent
	}},
	{"default-with-claim", hasCP, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Live, w.LiveDesc = "claude-claimed-default", catalogConfig("claude-code-default"), "claude-code-default"
		w.Claims = []string{"claude-code"}
		w.Case, w.Verdict = "runtime default, workspace-level CP record names the same default", plan.Default
	}},
	{"tombstone", nil, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Status, w.Live, w.LiveDesc = "seo-retired", "removed", nil, "missing"
		w.Case = "removed before the snapshot: never listed, so never planned"
	}},
	{"stub-named-like-template", nil, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.LiveDesc = "SEO Agent", "stub"
		w.Live = stubConfig("SEO Agent", "marketing", "claude-code")
		w.Case, w.Verdict = "live stub config whose name equals seo-agent's display name", plan.StubEvidence
	}},
	{"stub", nil, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.LiveDesc = "scratchpad", "stub"
		w.Live = stubConfig("scratchpad", "notes", "claude-code")
		w.Case, w.Verdict = "stub config", plan.StubEvidence
	}},
	{"unknown-template-key", nil, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.LiveDesc = "research-desk", "template key research-agent"
		w.Live = []byte("name: Research Desk\ntemplate: research-agent\nruntime: claude-code\ntier: 2\nskills:\n  - web-search\n")
		w.Case, w.Verdict = "explicit template key naming a template not in the catalog", plan.UnknownTemplate
	}},
	{"unknown-name", nil, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.LiveDesc = "market-watch", "unrecognised name"
		w.Live = []byte("name: Market Watch\ndescription: Tracks competitors.\nversion: 0.2.0\ntier: 2\nruntime: claude-code\nprompt_files:\n  - prompts/watch.md\n")
		w.Case, w.Verdict = "display name matches no catalog template", plan.UnknownTemplate
	}},
	{"renamed-runtime-default", nil, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Runtime, w.LiveDesc = "Ops Helper", "hermes", "hermes renamed Ops Helper"
		w.Live = renamed("hermes", "Ops Helper")
		w.Case, w.Verdict = "the hermes default with its name changed to the workspace's: no template is recognisable", plan.UnknownTemplate
	}},
	{"default-renamed-like-template", nil, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.LiveDesc = "seo-desk", "claude-code-default renamed SEO Agent"
		w.Live = renamed("claude-code-default", "SEO Agent")
		w.Case, w.Verdict = "the claude-code default renamed after seo-agent's display name: the body is the default's, so the name is no evidence", plan.UnknownTemplate
	}},
	{"runtime-mismatch", nil, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.Runtime, w.Live, w.LiveDesc = "hermes-seo", "hermes", catalogConfig(seoAgent), seoAgent
		w.Case, w.Verdict = "seo-agent (a claude-code template) on a hermes workspace", plan.RuntimeMismatch
	}},
	{"default-template-key", nil, func(w *workspaceSpec, t *tenantSpec) {
		w.Name, w.LiveDesc = "backend-engineer", "template key claude-code-default"
		w.Live = []byte("name: Backend Engineer 2\nrole: backend\ntemplate: claude-code-default\ntier: 3\nmodel: opus\nruntime: claude-code\n")
		w.Case, w.Verdict = "explicit template: claude-code-default key", plan.Default
	}},
}

// notSimulated names the verdicts the fleet cannot produce, with why.
var notSimulated = map[plan.Verdict]string{
	plan.UnstableEvidence: "needs two captures of one workspace naming different non-default templates; one snapshot gives one capture",
	plan.Unreachable:      "needs a tenant database down at plan time; the fleet keeps every tenant up (internal/cli tests stop one)",
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

// envName is a tenant's environment variable with the given suffix.
func envName(tenant, suffix string) string {
	return "FLEET_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(tenant)) + "_" + suffix
}

// dsnEnv is the environment variable holding a tenant's DSN.
func dsnEnv(tenant string) string { return envName(tenant, "DSN") }

// orgTitle is a tenant's org name as a person writes it: "Umbrella Labs".
func orgTitle(tenant string) string {
	words := strings.FieldsFunc(tenant, func(r rune) bool { return r == '-' || r == '_' || r == '.' })
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(words, " ")
}

// minTenants is what the mix needs: one tenant of each kind, the first two
// with CP records, and the last without.
const minTenants = 3

// tenantKind is tenant i's kind: hosted, self-hosted exec, self-hosted
// files API, hosted, and so on.
func tenantKind(i int) string {
	switch i % 4 {
	case 1:
		return kindSelfExec
	case 2:
		return kindSelfAPI
	}
	return kindHosted
}

// design lays out a fleet of the given size. The last tenant has no CP
// record. Each tenant has a concierge (kind platform); the special cases
// are spread over the tenants that suit them; the rest are ordinary
// workspaces: seo-agent custom ones and runtime defaults.
func design(tenants, workspaces int, seed uint64) (*fleetSpec, error) {
	if tenants < minTenants {
		return nil, fmt.Errorf("--tenants must be at least %d, to have hosted, self-hosted exec and self-hosted files API tenants", minTenants)
	}
	f := &fleetSpec{Seed: seed}
	for i := range tenants {
		t := &tenantSpec{Name: tenantName(i), Kind: tenantKind(i), Claim: seoAgent}
		if i == tenants-1 {
			t.Claim = ""
		}
		if i == 1 {
			// The same claim written another way is one claim, not two.
			t.ExtraCP = "SEO-Agent"
		}
		t.DSNEnv, t.TokenEnv, t.OrgEnv = dsnEnv(t.Name), envName(t.Name, "TOKEN"), envName(t.Name, "ORG_ID")
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
			return &workspaceSpec{ID: newID(), Runtime: "claude-code", Kind: "workspace", Status: "online"}
		}
		// The org's concierge: hermes (the platform's default concierge
		// runtime), named "Org Concierge" or "<Org name> Agent".
		concierge := newWS()
		concierge.Kind, concierge.Runtime, concierge.Name = "platform", "hermes", "Org Concierge"
		if ti%2 == 1 {
			concierge.Name = orgTitle(t.Name) + " Agent"
		}
		concierge.Live, concierge.LiveDesc = conciergeConfig("hermes", concierge.Name), "hermes renamed "+concierge.Name
		if t.Claim != "" {
			concierge.Claims = []string{platformAgent}
			concierge.Case, concierge.Verdict, concierge.Final = "the org's concierge (kind platform, hermes base template renamed), workspace-level CP record platform-agent", plan.Agree, platformAgent
		} else {
			concierge.Case, concierge.Verdict = "the org's concierge in the tenant the CP has no record of", plan.CPMissing
		}
		t.Workspaces = append(t.Workspaces, concierge)
		for _, sp := range placed[ti] {
			w := newWS()
			sp.build(w, t)
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
			if w.Verdict != plan.Agree {
				w.Final = w.Template
			}
			// Self-hosted servers leave instance_id NULL (the container is
			// ws-<uuid>); hosted ones keep the machine there.
			switch {
			case !t.hosted():
			case w.EC2:
				w.InstanceID = "i-0" + hex.EncodeToString(idBytes(w.ID)[:8])
			default:
				w.InstanceID = "mol-ws-" + slug(w.Name) + "-" + hex.EncodeToString(idBytes(w.ID)[8:11])
			}
		}
	}
	return f, nil
}

// idBytes is a UUID's 16 bytes.
func idBytes(id string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(id, "-", ""))
	if err != nil || len(b) != 16 {
		panic("fleetsim: bad generated id " + id)
	}
	return b
}

// slug is a name as the platform puts it in a machine name.
func slug(name string) string {
	s := strings.Trim(strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '-'
	}, name), "-")
	if len(s) > 20 {
		s = strings.TrimRight(s[:20], "-")
	}
	if s == "" {
		s = "ws"
	}
	return s
}

// assignSpecials places each special on the suitable tenant with the fewest
// so far, keeping one slot per tenant for its concierge.
func assignSpecials(tenants []*tenantSpec, slots []int) ([][]special, bool) {
	placed := make([][]special, len(tenants))
	for _, sp := range specials {
		best := -1
		for i, t := range tenants {
			if (sp.needs != nil && !sp.needs(t)) || len(placed[i])+1 > slots[i]-1 {
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
// with an empty template, a few created after the fix) or a runtime default,
// hermes most often as the platform's default runtime. openclaw is left
// out: its default config is stub-like, so it would come out as
// stub-evidence rather than default. Its verdict follows from where its
// tenant's collector can read it: on a self-hosted tenant read through the
// files API, a stopped container leaves nothing but a 404.
func ordinary(w *workspaceSpec, t *tenantSpec, rng *rand.Rand, counter map[string]int) {
	w.Status = statuses[rng.IntN(len(statuses))]
	if t.hosted() && w.Status == "online" && rng.IntN(5) == 0 {
		w.EC2 = true
	}
	name := func(prefix string, words []string) string {
		counter[prefix]++
		return fmt.Sprintf("%s-%s-%d", prefix, words[rng.IntN(len(words))], counter[prefix])
	}
	var tmpl string
	if rng.Float64() < 0.35 {
		tmpl = seoAgent
		w.Name = name("seo", seoWords)
	} else {
		switch r := rng.Float64(); {
		case r < 0.3:
			w.Runtime = "claude-code"
		case r < 0.8:
			w.Runtime = "hermes"
		default:
			w.Runtime = "codex"
		}
		tmpl = defaultTemplate(w.Runtime)
		w.Name = name(strings.TrimSuffix(w.Runtime, "-code"), defWords)
	}
	w.Live, w.LiveDesc = catalogConfig(tmpl), tmpl
	from := t.readFrom(w)
	unread := "nothing readable (" + w.container() + " container, read_from " + from + ")"
	switch {
	case tmpl == seoAgent && rng.Float64() < 0.12:
		w.Template = seoAgent
		w.Case, w.Verdict = "seo-agent workspace created after the fix", plan.AlreadySet
	case !isEvidence(from):
		w.Case, w.Verdict = tmpl+" workspace, "+w.Status+": "+unread, plan.NoEvidence
	case tmpl != seoAgent:
		w.Case, w.Verdict = "runtime default "+tmpl+", "+w.Status+", read from "+from, plan.Default
	case t.Claim != "":
		w.Case, w.Verdict, w.Final = "seo-agent workspace with template = '', "+w.Status+", read from "+from+", tenant-wide CP record", plan.Agree, seoAgent
	default:
		w.Case, w.Verdict = "seo-agent workspace in the tenant the CP has no record of, read from "+from, plan.CPMissing
	}
}
