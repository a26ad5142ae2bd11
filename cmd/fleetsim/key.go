package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"backfill/apply/plan"
	"backfill/internal/filesapi"
)

// answerKey is answer-key.json: what plan and apply --execute must make of
// every workspace row of the fleet. It holds no address, port or secret, so
// the same flags give the same bytes.
type answerKey struct {
	FormatVersion int               `json:"format_version"`
	Seed          uint64            `json:"seed"`
	Tenants       []keyTenant       `json:"tenants"`
	Counts        map[string]int    `json:"counts"`
	NotSimulated  map[string]string `json:"not_simulated"`
	Workspaces    []keyWorkspace    `json:"workspaces"`
}

// keyTenant says where a tenant's DSN and credentials are, how its server
// runs workspaces and how the inventory collects it.
type keyTenant struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`      // hosted, self-hosted-exec or self-hosted-files-api
	Collector string `json:"collector"` // files_api, or exec,file (a chain)
	DSNEnv    string `json:"dsn_env"`
	TokenEnv  string `json:"token_env"`
	OrgEnv    string `json:"org_env"`
	CPClaim   string `json:"cp_claim"` // tenant-wide; "" when the CP has no record of the tenant
}

// keyWorkspace is one row's expected outcome.
type keyWorkspace struct {
	Tenant      string `json:"tenant"`
	WorkspaceID string `json:"workspace_id"`
	Name        string `json:"name"`
	Runtime     string `json:"runtime"`
	Kind        string `json:"kind"`
	Status      string `json:"status"`
	InstanceID  string `json:"instance_id,omitempty"` // "" for NULL
	// Container is the state of its container: running, exited (docker:
	// is not running) or absent (docker: No such container).
	Container  string `json:"container"`
	LiveConfig string `json:"live_config"`
	// ReadFrom is where the tenant's collector gets the config while the
	// fleet runs: exec, file, eic, container, host-mirror (evidence), or
	// template-dir, none (no evidence).
	ReadFrom string `json:"read_from"`
	Case     string `json:"case"`
	// Verdict is plan's verdict; "" for a row plan never sees.
	Verdict plan.Verdict `json:"verdict"`
	Drift   bool         `json:"drift,omitempty"`
	// Template is the row's template after apply --execute.
	Template string `json:"template"`
	// Row is "live", "removed" or "deleted": the row's state after snapshot.
	Row string `json:"row"`
}

// keyFormat is answer-key.json's format_version.
const keyFormat = 2

// execArgv is the exec collector a self-hosted tenant's inventory names,
// as the README recommends it: read without following a symbolic link.
var execArgv = []string{"docker", "exec", "{container}", "dd", "if=/configs/config.yaml", "iflag=nofollow", "status=none"}

// Row states in the key.
const (
	rowLive    = "live"
	rowRemoved = "removed"
	rowDeleted = "deleted"
)

func (f *fleetSpec) key() *answerKey {
	k := &answerKey{FormatVersion: keyFormat, Seed: f.Seed, Counts: map[string]int{}, NotSimulated: map[string]string{}}
	for _, v := range plan.Verdicts {
		k.Counts[string(v)] = 0
	}
	k.Counts["drift"], k.Counts["not-planned"] = 0, 0
	for v, why := range notSimulated {
		k.NotSimulated[string(v)] = why
	}
	for _, t := range f.Tenants {
		k.Tenants = append(k.Tenants, keyTenant{Name: t.Name, Kind: t.Kind, Collector: t.collector(), DSNEnv: t.DSNEnv,
			TokenEnv: t.TokenEnv, OrgEnv: t.OrgEnv, CPClaim: t.Claim})
		for _, w := range t.Workspaces {
			row := rowLive
			switch {
			case w.After == afterDelete:
				row = rowDeleted
			case w.After == afterRemove || w.Status == "removed":
				row = rowRemoved
			}
			k.Workspaces = append(k.Workspaces, keyWorkspace{Tenant: t.Name, WorkspaceID: w.ID, Name: w.Name, Runtime: w.Runtime,
				Kind: w.Kind, Status: w.Status, InstanceID: w.InstanceID, Container: w.container(), LiveConfig: w.LiveDesc,
				ReadFrom: t.readFrom(w), Case: w.Case, Verdict: w.Verdict, Drift: w.Drift, Template: w.Final, Row: row})
			if w.planned() {
				k.Counts[string(w.Verdict)]++
			} else {
				k.Counts["not-planned"]++
			}
			if w.Drift {
				k.Counts["drift"]++
			}
		}
	}
	// The plan's order: tenant, then workspace id.
	sort.Slice(k.Workspaces, func(i, j int) bool {
		a, b := k.Workspaces[i], k.Workspaces[j]
		if a.Tenant != b.Tenant {
			return a.Tenant < b.Tenant
		}
		return a.WorkspaceID < b.WorkspaceID
	})
	return k
}

// marshal is the key file's bytes.
func (k *answerKey) marshal() []byte {
	b, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		panic(err) // plain data always marshals
	}
	return append(b, '\n')
}

// loadKey reads answer-key.json.
func loadKey(path string) (*answerKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var k answerKey
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if k.FormatVersion != keyFormat {
		return nil, fmt.Errorf("%s: format_version %d, want %d", path, k.FormatVersion, keyFormat)
	}
	return &k, nil
}

// cpCSV is the CP records file: tenant-wide records, then workspace-level
// ones, tenant by tenant. The last tenant has none at all.
func (f *fleetSpec) cpCSV() []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"tenant", "workspace_id", "template"})
	for _, t := range f.Tenants {
		if t.Claim != "" {
			w.Write([]string{t.Name, "", t.Claim})
		}
		if t.ExtraCP != "" {
			w.Write([]string{t.Name, "", t.ExtraCP})
		}
		for _, ws := range t.Workspaces {
			for _, c := range ws.Claims {
				w.Write([]string{t.Name, ws.ID, c})
			}
		}
	}
	w.Flush()
	return b.Bytes()
}

// Inventory file shapes, in the order backfill documents the keys.
type (
	invFile struct {
		Version int         `yaml:"version"`
		Tenants []invTenant `yaml:"tenants"`
	}
	invTenant struct {
		Name       string         `yaml:"name"`
		DSN        string         `yaml:"dsn"`
		Collector  *invCollector  `yaml:"collector,omitempty"`
		Collectors []invCollector `yaml:"collectors,omitempty"`
	}
	invCollector struct {
		Exec     []string     `yaml:"exec,omitempty,flow"`
		File     string       `yaml:"file,omitempty"`
		FilesAPI *invFilesAPI `yaml:"files_api,omitempty"`
	}
	invFilesAPI struct {
		BaseURL string            `yaml:"base_url"`
		Headers map[string]string `yaml:"headers"`
		Rate    int               `yaml:"rate,omitempty"`
	}
)

// inventory is inventory.yaml. DSNs, tokens and org ids are ${VAR}
// references to the env file, so the inventory itself holds no secret.
// urls maps each tenant to its files API base URL; dir is DIR, absolute;
// rate is each files_api collector's requests per second (0: the default).
//
// Every collector shape the fleet uses is written here and only here, so
// a change in backfill's inventory syntax is a change to this function.
func (f *fleetSpec) inventory(urls map[string]string, dir string, rate int) []byte {
	inv := invFile{Version: 1}
	for _, t := range f.Tenants {
		it := invTenant{Name: t.Name, DSN: "${" + t.DSNEnv + "}"}
		if t.collector() == collectFilesAPI {
			it.Collector = &invCollector{FilesAPI: &invFilesAPI{
				BaseURL: urls[t.Name],
				Headers: map[string]string{
					"Authorization":    "Bearer ${" + t.TokenEnv + "}",
					filesapi.HeaderOrg: "${" + t.OrgEnv + "}",
				},
				Rate: rate,
			}}
		} else {
			// docker exec first (the running container is the truth), then
			// the config volume on the host, which outlives a container
			// removed by pause or hibernation. dd with iflag=nofollow, not
			// cat: a config.yaml made a symbolic link is refused, never
			// followed (as root, in the container) to what it points at.
			it.Collectors = []invCollector{
				{Exec: execArgv},
				{File: filepath.Join(dir, dirVolumes) + "/ws-{workspace_id}-configs/_data/config.yaml"},
			}
		}
		inv.Tenants = append(inv.Tenants, it)
	}
	var b bytes.Buffer
	b.WriteString("# Simulated fleet written by fleetsim; `source env` first: the ${VAR}s are defined there,\n")
	b.WriteString("# and its PATH finds the fleet's fake docker (bin/docker) first.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(inv); err != nil {
		panic(err) // plain data always marshals
	}
	enc.Close()
	return b.Bytes()
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// envFile is the env file's content: one export line per variable, in the
// order given.
func envFile(names []string, values map[string]string) []byte {
	var b strings.Builder
	b.WriteString("# fleetsim: the simulated fleet's secrets; source this before running backfill.\n")
	for _, n := range names {
		fmt.Fprintf(&b, "export %s=%s\n", n, shellQuote(values[n]))
	}
	return []byte(b.String())
}

// parseEnvFile reads back what envFile wrote.
func parseEnvFile(data []byte) (map[string]string, error) {
	out := map[string]string{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rest, ok := strings.CutPrefix(line, "export ")
		name, quoted, ok2 := strings.Cut(rest, "=")
		if !ok || !ok2 || name == "" {
			return nil, fmt.Errorf("line %d: want export NAME='value'", i+1)
		}
		v, err := shellUnquote(quoted)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", i+1, err)
		}
		out[name] = v
	}
	return out, nil
}

// shellUnquote undoes shellQuote.
func shellUnquote(s string) (string, error) {
	var b strings.Builder
	for s != "" {
		switch {
		case strings.HasPrefix(s, `\'`):
			b.WriteByte('\'')
			s = s[2:]
		case s[0] == '\'':
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return "", fmt.Errorf("unterminated quote")
			}
			b.WriteString(s[1 : 1+end])
			s = s[2+end:]
		default:
			return "", fmt.Errorf("value not single-quoted")
		}
	}
	return b.String(), nil
}
