// Package plan is the plan of backfill's second phase: reconciliation of
// captured evidence with control-plane records and the tenant databases as
// they are now (Build, through one pure decision per workspace), the fingerprinted plan format and its
// versions (Plan, ParsePlan), re-derivation of a plan's writes (Rederive),
// the review report, and the plans kept in the evidence store. Executing a
// plan is package apply's.
package plan

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"backfill/internal/catalog"
	"backfill/internal/identity"
	"backfill/internal/workspace"
)

// Verdict is the one outcome reconciliation gives a workspace.
type Verdict string

// The verdicts, in the order reconciliation decides them (README, "Phase two").
const (
	Unreachable      Verdict = "unreachable"
	Removed          Verdict = "removed"
	AlreadySet       Verdict = "already-set"
	NoEvidence       Verdict = "no-evidence"
	StubEvidence     Verdict = "stub-evidence"
	UnknownTemplate  Verdict = "unknown-template"
	RuntimeMismatch  Verdict = "runtime-mismatch"
	UnstableEvidence Verdict = "unstable-evidence"
	Default          Verdict = "default"
	CPMissing        Verdict = "cp-missing"
	CPAmbiguous      Verdict = "cp-ambiguous"
	Conflict         Verdict = "conflict"
	Agree            Verdict = "agree"
)

// Verdicts lists every verdict in decision order.
var Verdicts = []Verdict{Unreachable, Removed, AlreadySet, NoEvidence, StubEvidence, UnknownTemplate, RuntimeMismatch,
	UnstableEvidence, Default, CPMissing, CPAmbiguous, Conflict, Agree}

// verdictsFor is the verdict set of a plan format version: counts are
// sealed over it. TestVerdictSetNeedsFormatVersion fails when Verdicts
// changes without a new version here.
func verdictsFor(version int) []Verdict {
	if version < 2 {
		return Verdicts[1:] // format 1 had no unreachable
	}
	return Verdicts
}

// needsPerson reports whether a reviewer must look at items with this
// verdict (drift is flagged separately on already-set items).
func (v Verdict) needsPerson() bool {
	switch v {
	case Unreachable, Conflict, CPMissing, CPAmbiguous, UnknownTemplate, RuntimeMismatch, UnstableEvidence, StubEvidence, NoEvidence:
		return true
	}
	return false
}

// captured is one successful capture of a workspace with the identity
// derived from its bytes.
type captured struct {
	CaptureID  int64
	SHA256     string
	CapturedAt time.Time
	Identity   identity.Identity
	// Source is the class of what answered (package source): container,
	// eic, host-mirror, exec, file or unverified.
	Source string
}

// cpClaim is what the control plane says of a workspace: the distinct
// templates of the records that apply to it (workspace-level when any exist,
// else tenant-wide).
type cpClaim struct {
	Templates []string
	Level     string // "workspace", "tenant", or "" when none applies
	Sources   []string
}

// reconcileInput is everything reconciliation looks at for one workspace.
type reconcileInput struct {
	Captures []captured     // successful captures, earliest first
	Claim    cpClaim        // the CP claim that applies
	Row      *workspace.Row // the row as it is now; nil when it no longer exists
	Catalog  *catalog.Catalog
	// Unreachable, when set, is why the tenant's database could not be read
	// at plan time: nothing is known of the row as it is now.
	Unreachable string
	// NotEvidence, when set, says why the workspace's latest answer that was
	// not evidence (not-live, not-running, failed) is none, for a
	// no-evidence verdict's reason.
	NotEvidence string
}

// decision is reconciliation's answer for one workspace.
type decision struct {
	Verdict  Verdict
	Reason   string
	Notes    []string
	Drift    bool   // already-set, and the value differs from the evidence or the CP claim
	Set      string // agree: the catalog's canonical name to write
	Evidence string // the template the earliest capture names ("" when none)
	CP       string // the single CP template, canonical when in the catalog ("" when none or several)
}

// reconcile decides one workspace's verdict: the first row of the verdict
// table that applies wins. It is pure: same input, same decision.
func reconcile(in reconcileInput) decision {
	var d decision
	var earliest *captured
	if len(in.Captures) > 0 {
		earliest = &in.Captures[0]
		if id := earliest.Identity; id.Template != "" && id.Rule.IsEvidence() {
			d.Evidence = id.Template
		}
	}
	claims := resolveClaims(in.Claim.Templates, in.Catalog)
	if len(claims) == 1 {
		d.CP = claims[0]
	}
	cpDesc := describeClaim(in.Claim)

	if in.Unreachable != "" {
		d.Verdict = Unreachable
		d.Reason = "the tenant's database could not be read at plan time: " + in.Unreachable
		return d
	}
	if in.Row == nil || in.Row.Status == "removed" {
		d.Verdict = Removed
		if in.Row == nil {
			d.Reason = "the workspace row no longer exists"
		} else {
			d.Reason = "the workspace is removed"
		}
		return d
	}
	if in.Row.Template != "" {
		d.Verdict = AlreadySet
		d.Reason = fmt.Sprintf("template is already %q in the database", in.Row.Template)
		now := nameKey(in.Row.Template, in.Catalog)
		var differs []string
		if d.Evidence != "" && nameKey(d.Evidence, in.Catalog) != now {
			differs = append(differs, fmt.Sprintf("the evidence names %s", d.Evidence))
		}
		for _, c := range claims {
			if nameKey(c, in.Catalog) != now {
				differs = append(differs, fmt.Sprintf("the CP claims %s", c))
				break
			}
		}
		if len(differs) > 0 {
			d.Drift = true
			d.Reason += "; drift: " + strings.Join(differs, " and ")
		}
		return d
	}
	if earliest == nil {
		d.Verdict = NoEvidence
		d.Reason = "no successful capture of its config.yaml"
		if in.NotEvidence != "" {
			d.Reason = "no live evidence: " + in.NotEvidence
		}
		return d
	}
	id := earliest.Identity
	from := fmt.Sprintf("capture %d", earliest.CaptureID)
	switch {
	case id.Rule == identity.RuleStub:
		d.Verdict = StubEvidence
		d.Reason = fmt.Sprintf("%s is a platform-generated stub, which is no evidence of a template (%s)", from, id.Reason)
		return d
	case !id.Rule.IsEvidence():
		d.Verdict = UnknownTemplate
		d.Reason = fmt.Sprintf("%s identifies no template: %s", from, id.Reason)
		return d
	case !id.Known:
		d.Verdict = UnknownTemplate
		d.Reason = fmt.Sprintf("%s names template %q, which is not in the catalog", from, id.Template)
		return d
	case id.Runtime != in.Row.Runtime && id.Rule != identity.RulePlatformKind:
		// The platform runs platform-agent on whatever runtime a concierge
		// has (its default concierge runtime is hermes), so a concierge's
		// runtime is never a mismatch.
		d.Verdict = RuntimeMismatch
		d.Reason = fmt.Sprintf("%s names %s, a %s template, but the workspace runs %q", from, id.Template, id.Runtime, in.Row.Runtime)
		return d
	}
	d.Notes = laterNotes(in.Captures)
	for _, later := range in.Captures[1:] {
		li := later.Identity
		if li.Rule.IsEvidence() && !li.Default && li.Template != id.Template {
			d.Verdict = UnstableEvidence
			d.Reason = fmt.Sprintf("%s names %s but capture %d names %s", from, id.Template, later.CaptureID, li.Template)
			return d
		}
	}
	if id.Default {
		var other string
		if in.Claim.Level == "workspace" {
			for _, c := range claims {
				if c != id.Template {
					other = c
				}
			}
		}
		if other == "" {
			d.Verdict = Default
			d.Reason = fmt.Sprintf("%s names %s, the %s runtime's default: template = '' already resolves to it", from, id.Template, id.Runtime)
			return d
		}
	}
	switch {
	case len(claims) == 0:
		d.Verdict = CPMissing
		d.Reason = fmt.Sprintf("%s names %s, but no CP record covers the workspace or its tenant", from, id.Template)
	case len(claims) > 1:
		d.Verdict = CPAmbiguous
		d.Reason = fmt.Sprintf("the CP has %d different claims (%s): %s", len(claims), strings.Join(claims, ", "), cpDesc)
	case claims[0] != id.Template:
		d.Verdict = Conflict
		d.Reason = fmt.Sprintf("%s names %s but the CP claims %s (%s)", from, id.Template, claims[0], cpDesc)
	default:
		d.Verdict = Agree
		d.Set = id.Template
		d.Reason = fmt.Sprintf("%s (%s) and the CP (%s) both name %s", from, id.Rule, cpDesc, id.Template)
		if in.Row.Status == "" {
			// Tell the reviewer now rather than let apply skip it unexplained.
			d.Notes = append(d.Notes, "status is NULL: apply's compare-and-swap (status <> 'removed') will not match the row until a status is set")
		}
	}
	return d
}

// laterNotes explains later captures that show the restart already
// happened; they do not change the verdict.
func laterNotes(caps []captured) []string {
	var notes []string
	for _, c := range caps[1:] {
		switch {
		case c.Identity.Rule == identity.RuleStub:
			notes = append(notes, fmt.Sprintf("capture %d is a stub: the workspace was re-provisioned after the earliest capture", c.CaptureID))
		case c.Identity.Default:
			notes = append(notes, fmt.Sprintf("capture %d shows the runtime default %s: the workspace restarted after the earliest capture", c.CaptureID, c.Identity.Template))
		}
	}
	return notes
}

// resolveClaims maps CP template names to catalog names where the catalog
// knows them and returns the distinct results, sorted.
func resolveClaims(names []string, cat *catalog.Catalog) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		r := strings.TrimSpace(n)
		if t, ok := cat.Lookup(r); ok {
			r = t.Name
		}
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}

// nameKey is how template names compare: the catalog's name when it knows
// the name, else the catalog's own folding (catalog.Key): ASCII letters
// only, so a look-alike such as the Kelvin sign never folds to a name.
func nameKey(name string, cat *catalog.Catalog) string {
	if t, ok := cat.Lookup(name); ok {
		return t.Name
	}
	return catalog.Key(name)
}

func describeClaim(c cpClaim) string {
	if len(c.Templates) == 0 {
		return "no claim"
	}
	level := "tenant-wide claim"
	if c.Level == "workspace" {
		level = "workspace claim"
	}
	if len(c.Sources) > 0 {
		return level + " at " + strings.Join(c.Sources, ", ")
	}
	return level
}
