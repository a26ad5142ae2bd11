// Package secret keeps credentials out of everything backfill writes: logs,
// plans, reports and the evidence store. Operators run backfill with
// production credentials, so every path that renders text should pass it
// through a Redactor, and every connection string through RedactDSN.
package secret

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Redacted is what a Redactor writes in place of a secret.
const Redacted = "[REDACTED]"

// MinLen is the shortest value a Redactor will treat as a secret. Shorter
// values ("1", "on", "443") occur everywhere in ordinary text, so redacting
// them would shred logs without protecting anything worth having; a real
// credential is never that short. DSN passwords of any length are still
// masked structurally by RedactDSN.
const MinLen = 4

// Redactor replaces every known secret value in a string with Redacted.
// The zero value is ready to use. It is safe for concurrent use, including
// Add while other goroutines call Redact.
type Redactor struct {
	mu      sync.RWMutex
	secrets []string            // longest first, then lexical, for deterministic output
	known   map[string]struct{} // dedupes secrets
	gen     uint64              // bumped by every Add that changes secrets; lets Handler cache work
}

// NewRedactor returns a Redactor that knows secrets. Empty values and values
// shorter than MinLen are ignored (see MinLen).
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Add(secrets...)
	return r
}

// Add registers more secrets. Besides each value itself it registers the
// value's URL- and JSON-escaped forms, because a secret is as often leaked
// inside a URL or an embedded JSON document as verbatim.
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for _, s := range secrets {
		for _, v := range variants(s) {
			if len(v) < MinLen {
				continue
			}
			if _, ok := r.known[v]; ok {
				continue
			}
			if r.known == nil {
				r.known = make(map[string]struct{})
			}
			r.known[v] = struct{}{}
			r.secrets = append(r.secrets, v)
			changed = true
		}
	}
	if !changed {
		return
	}
	slices.SortFunc(r.secrets, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	r.gen++
}

// variants returns s and the escaped forms it may take in rendered output.
func variants(s string) []string {
	out := []string{s, url.QueryEscape(s), url.PathEscape(s)}
	if b, err := json.Marshal(s); err == nil {
		out = append(out, string(b[1:len(b)-1]))
	}
	return out
}

// generation reports a counter that changes whenever the secret set does.
func (r *Redactor) generation() uint64 {
	if r == nil {
		return 0
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.gen
}

// TrimCut returns s, a text cut short at its end, without the start of a
// secret the cut went through: Redact finds only whole secrets, so what
// was read before the cut would otherwise stay. Give it text Redact has
// already scrubbed: a whole secret ending at the cut could otherwise lose
// its last bytes here and then no longer be found. It may drop a few bytes
// that only look like a secret's start; a cut text has lost its end anyway.
func (r *Redactor) TrimCut(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	drop := 0
	for _, sec := range r.secrets {
		for k := min(len(sec)-1, len(s)); k > drop; k-- {
			if strings.HasSuffix(s, sec[:k]) {
				drop = k
				break
			}
		}
	}
	return s[:len(s)-drop]
}

// Redact returns s with every occurrence of every known secret replaced by
// Redacted. A nil Redactor returns s unchanged.
//
// Secrets are tried longest first, and overlapping or adjacent matches are
// merged into a single Redacted, so no fragment of one secret survives the
// replacement of another that overlaps it.
func (r *Redactor) Redact(s string) string {
	if r == nil || s == "" {
		return s
	}
	r.mu.RLock()
	defer r.mu.RUnlock()

	var covered []bool // allocated on the first match only
	for _, sec := range r.secrets {
		if len(sec) > len(s) {
			continue
		}
		marked := 0 // bytes before this are already marked for sec
		for from := 0; from <= len(s)-len(sec); {
			i := strings.Index(s[from:], sec)
			if i < 0 {
				break
			}
			start, end := from+i, from+i+len(sec)
			if covered == nil {
				covered = make([]bool, len(s))
			}
			for j := max(start, marked); j < end; j++ {
				covered[j] = true
			}
			marked = end
			from = start + 1 // a secret can overlap itself ("abab" in "ababab")
		}
	}
	if covered == nil {
		return s
	}

	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if !covered[i] {
			b.WriteByte(s[i])
			i++
			continue
		}
		b.WriteString(Redacted)
		for i < len(s) && covered[i] {
			i++
		}
	}
	return b.String()
}
