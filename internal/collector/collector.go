// Package collector captures one workspace's config file by one of four
// methods (exec, http, file, files_api) and classifies the attempt as
// captured, not-live, not-running, gone or failed, saying which source
// answered (package source). It runs against production minutes before
// restarts, so it is strict about inputs: placeholder values are checked
// before anything runs, output is capped rather than trusted, and nothing it
// reports carries a secret.
package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"backfill/internal/placeholder"
	"backfill/internal/secret"
)

// DefaultMaxBytes is the per-file size cap used when New is given none.
const DefaultMaxBytes int64 = 1 << 20

// Collection methods.
const (
	methodExec = "exec"
	MethodHTTP = "http"
	methodFile = "file"
	// MethodFilesAPI speaks the platform's files API: list, read, list
	// again, and decide from the listings' X-Molecule-Files-Source whether
	// the answer was the workspace's own.
	MethodFilesAPI = "files_api"
)

// DefaultRate is a files_api collector's requests per second when the
// inventory gives none: 80% of the platform's 600 a minute per org, which
// the org's own users share.
const DefaultRate = 8.0

// Spec is one collector definition, as the inventory decodes it (Decode):
// either as written or with ${VAR} already expanded. Each method's fields,
// rules and capture are its kind's (kinds.go).
type Spec struct {
	Method    string            // "exec", "http", "file" or "files_api"
	Argv      []string          // exec: the command, run without a shell
	Env       []string          // exec: names of variables passed to the command besides PATH, HOME, LANG and TZ, as the inventory lists them
	Environ   []string          // exec: NAME=value for PATH, HOME, LANG, TZ and Env, resolved by the inventory; never set in a raw spec
	URL       string            // http: GET target
	Headers   map[string]string // http, files_api: request headers; values are secrets
	JSONField string            // http: when set, the body is JSON and the config is this string field
	Path      string            // file: path to read
	Root      string            // file: the tree reads stay beneath; "" derives it from Path (the directory before its first placeholder)
	BaseURL   string            // files_api: the tenant's workspace server, before /workspaces/...
	Rate      float64           // files_api: requests per second for the tenant, enforced by the caller; 0 means DefaultRate
}

// Outcome classifies one attempt.
type Outcome string

// Outcomes of an attempt.
const (
	// Captured means Content holds the whole config, from Source.
	Captured Outcome = "captured"
	// NotLive means Content holds what answered, which was not the
	// workspace (a template folder, a source that changed under the read):
	// kept for the record, never evidence.
	NotLive Outcome = "not-live"
	// NotRunning means the workspace's container is stopped; its config may
	// still be readable elsewhere (its volume on the host).
	NotRunning Outcome = "not-running"
	// Gone means the workspace or its config no longer exists.
	Gone Outcome = "gone"
	// Failed means no verdict; Reason says why and Transient whether to retry.
	Failed Outcome = "failed"
)

// Result of one attempt.
type Result struct {
	Outcome    Outcome
	Content    []byte            // exactly the bytes read (Captured and NotLive only)
	Reason     string            // why, for every outcome but captured; never holds header values or expanded env values
	Transient  bool              // a retry may succeed (timeouts, connection errors, HTTP 5xx, exec non-zero exits other than gone)
	Target     string            // redacted description of what was read
	Provenance map[string]string // exit_code, stderr_head, http_status, header.<Name> (an allow-list, at most 1 KiB each), body_head, mtime, size, source, ...
	// Source is the class of what answered (package source): exec, file,
	// unverified (http), or for files_api the listing's source.
	Source string
	// TenantError, when set, says the answer shows the collector itself is
	// misconfigured for the whole tenant (the platform's answer to a
	// missing or wrong X-Molecule-Org-Id): the caller stops the tenant
	// rather than take its workspaces for gone. Outcome is Failed.
	TenantError string
	// NotFound marks a gone that rests on an HTTP 404: the caller takes it
	// as gone only once the tenant's collector has shown it is configured.
	NotFound bool
	// Reached: an answer about the workspace came back (a files API
	// listing, 200 with its source), which shows the collector is
	// configured for the tenant whatever the outcome.
	Reached bool
	// Throttled marks an HTTP 429: the caller waits RetryAfter, pausing the
	// tenant, and tries again without counting a retry. Outcome is Failed.
	Throttled  bool
	RetryAfter time.Duration

	// red knows every secret of the attempt so far: text cut short is
	// scrubbed with it first, or a secret across the cut would leave its
	// start behind, whole occurrences no longer to be found.
	red *secret.Redactor
}

// redact scrubs s of the secrets the attempt knows, before s is cut.
func (r *Result) redact(s string) string {
	if r.red == nil {
		return s
	}
	return r.red.Redact(s)
}

// learn adds the secrets an attempt expanded (header values) to what r
// scrubs, and returns them.
func (c *Collector) learn(r *Result, vals []string) []string {
	if len(vals) > 0 {
		r.red = secret.NewRedactor(append(slices.Clone(c.secrets), vals...)...)
	}
	return vals
}

// Collector runs one collector definition for many workspaces. It is safe
// for concurrent use.
type Collector struct {
	spec, raw Spec
	maxBytes  int64
	client    *http.Client
	root      string // file: the directory reads stay beneath (fileRoot)
	kind      kind   // spec.Method's implementation
	// secrets are strings that must never leave in a Result: the
	// ${VAR}-expanded parts of spec and literal header values; redactor
	// knows them, and an attempt adds what it learns (package secret).
	secrets  []string
	redactor *secret.Redactor
}

// New validates both specs (exactly one method; placeholders valid; http URL
// parses with an http/https scheme). raw is the same spec before ${VAR}
// expansion and is used only to describe targets. maxBytes is the size cap;
// zero or less means DefaultMaxBytes. A nil client means a shared default
// tuned for many concurrent captures. Redirects are never followed, even with
// a caller's client, because secret headers would be resent to wherever the
// redirect points.
func New(spec, raw Spec, maxBytes int64, client *http.Client) (*Collector, error) {
	// Errors quote raw, never spec: spec holds the expanded secrets.
	if err := validate(spec); err != nil {
		return nil, err
	}
	if err := validate(raw); err != nil {
		return nil, fmt.Errorf("unexpanded spec: %w", err)
	}
	if err := sameShape(spec, raw); err != nil {
		return nil, err
	}
	k, _ := kindOf(spec.Method) // validate refused unknown methods
	root, err := k.check(spec, raw)
	if err != nil {
		return nil, err
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if client == nil {
		client = defaultClient()
	} else {
		cl := *client
		cl.CheckRedirect = noRedirect
		client = &cl
	}
	secrets := staticSecrets(spec, raw)
	return &Collector{
		spec:     spec,
		raw:      raw,
		maxBytes: maxBytes,
		client:   client,
		root:     root,
		kind:     k,
		secrets:  secrets,
		redactor: secret.NewRedactor(secrets...),
	}, nil
}

func validate(s Spec) error {
	k, ok := kindOf(s.Method)
	switch {
	case s.Method == "":
		return fmt.Errorf("collector has no method (want %s)", methodList())
	case !ok:
		return fmt.Errorf("unknown collector method %q (want %s)", s.Method, methodList())
	case s.Rate < 0 || s.Rate != s.Rate:
		return errors.New("rate must be a positive number of requests per second")
	}
	set := map[string]bool{
		"argv":       len(s.Argv) > 0,
		"env":        len(s.Env) > 0,
		"environ":    len(s.Environ) > 0,
		"url":        s.URL != "",
		"headers":    len(s.Headers) > 0,
		"json_field": s.JSONField != "",
		"path":       s.Path != "",
		"root":       s.Root != "",
		"base_url":   s.BaseURL != "",
		"rate":       s.Rate != 0,
	}
	allowed := k.fields()
	if !set[allowed[0]] {
		return fmt.Errorf("%s collector needs %s", s.Method, allowed[0])
	}
	for _, f := range []string{"argv", "env", "environ", "url", "headers", "json_field", "path", "root", "base_url", "rate"} {
		if set[f] && !slices.Contains(allowed, f) {
			return fmt.Errorf("%s collector also sets %s: exactly one method per collector", s.Method, f)
		}
	}
	return k.validate(s)
}

// sameShape checks raw really is spec before expansion, since targets are
// described from raw.
func sameShape(spec, raw Spec) error {
	switch {
	case spec.Method != raw.Method:
		return fmt.Errorf("unexpanded spec has method %q, spec has %q", raw.Method, spec.Method)
	case len(spec.Argv) != len(raw.Argv):
		return errors.New("unexpanded spec has a different argv length")
	case !slices.Equal(spec.Env, raw.Env):
		return errors.New("unexpanded spec has a different env list")
	case len(raw.Environ) > 0:
		return errors.New("unexpanded spec sets environ: values belong in the expanded spec only")
	case spec.JSONField != raw.JSONField:
		return errors.New("unexpanded spec has a different json_field")
	case !slices.Equal(sortedKeys(spec.Headers), sortedKeys(raw.Headers)):
		return errors.New("unexpanded spec has different header names")
	case (spec.Root == "") != (raw.Root == ""):
		return errors.New("unexpanded spec sets root differently")
	case spec.Rate != raw.Rate:
		return errors.New("unexpanded spec has a different rate")
	}
	return nil
}

// Rate is the requests per second the caller must hold the tenant to, or 0
// for none: only files_api has one.
func (c *Collector) Rate() float64 {
	if c.spec.Method != MethodFilesAPI {
		return 0
	}
	if c.spec.Rate > 0 {
		return c.spec.Rate
	}
	return DefaultRate
}

// Requests is how many HTTP requests one attempt makes, for the caller's
// rate limit: a files_api attempt lists, reads and lists again.
func (c *Collector) Requests() int { return c.kind.requests() }

// Method is the collector's method.
func (c *Collector) Method() string { return c.spec.Method }

// checkBaseURL checks a files_api base URL: http or https, a host, and no
// query or fragment, since paths are appended to it.
func checkBaseURL(tmpl, raw string) error {
	if err := checkURL("base_url", tmpl, raw); err != nil {
		return err
	}
	sample := placeholder.Values{Tenant: "t", WorkspaceID: "00000000-0000-0000-0000-000000000000", InstanceID: "i"}
	s, _ := placeholder.Expand(tmpl, sample)
	u, _ := url.Parse(s)
	if u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") {
		return fmt.Errorf("base_url %s: must not have a query or fragment (the collector adds /workspaces/... and ?root=/configs)", raw)
	}
	return nil
}

// checkURL parses the template with sample values filled in, since braces
// are not valid in a host. Messages show raw to keep secrets out.
func checkURL(name, tmpl, raw string) error {
	sample := placeholder.Values{Tenant: "t", WorkspaceID: "00000000-0000-0000-0000-000000000000", InstanceID: "i"}
	s, err := placeholder.Expand(tmpl, sample)
	if err != nil {
		return fmt.Errorf("%s %s: %w", name, raw, err)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the expanded URL
		}
		return fmt.Errorf("%s %s: %v", name, raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s %s: scheme must be http or https", name, raw)
	}
	if u.Host == "" {
		return fmt.Errorf("%s %s: no host", name, raw)
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// defaultClient sends every request straight to its host. Go's default
// transport would route through the proxy HTTP_PROXY or HTTPS_PROXY names:
// one variable in the environment would hand every collector's token to
// that proxy, and its answers would be stored as evidence. A proxy is
// used only when the operator asks (ProxyClient).
var defaultClient = sync.OnceValue(func() *http.Client { return newClient(nil) })

// ProxyClient is the collectors' HTTP client sending through the proxy the
// environment names (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), for an operator
// whose network needs one and says so on the command line.
var ProxyClient = sync.OnceValue(func() *http.Client { return newClient(http.ProxyFromEnvironment) })

func newClient(proxy func(*http.Request) (*url.URL, error)) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = proxy
	// Thousands of captures hit a handful of hosts at once; the stock limit of
	// two idle connections per host would churn TLS handshakes.
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 90 * time.Second
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ExpectContinueTimeout = time.Second
	return &http.Client{Transport: t, CheckRedirect: noRedirect}
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Collect makes one attempt for the workspace described by v. Its timeout is
// ctx's deadline. It never panics on bad input and always returns a Result.
func (c *Collector) Collect(ctx context.Context, v placeholder.Values) Result {
	var budget time.Duration
	if dl, ok := ctx.Deadline(); ok {
		budget = time.Until(dl)
	}
	return c.collect(attempt{ctx: ctx, budget: budget}, v)
}

// CollectWithin makes one attempt that ends after timeout. A timeout is
// reported with the length the operator asked for, not with what was left
// of it when the attempt began.
func (c *Collector) CollectWithin(ctx context.Context, v placeholder.Values, timeout time.Duration) Result {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.collect(attempt{ctx: actx, budget: timeout}, v)
}

func (c *Collector) collect(a attempt, v placeholder.Values) Result {
	r := Result{Target: c.target(v), Provenance: map[string]string{}, red: c.redactor}
	c.kind.collect(c, a, v, &r)
	if r.Outcome != Captured && r.Outcome != NotLive {
		r.Content = nil
	}
	if bytes.IndexByte(r.Content, 0) >= 0 {
		// YAML allows no NUL byte, so no config.yaml holds one; a process's
		// environment (/proc/…/environ) or command line does, read through
		// a config.yaml made a symbolic link to it. Never kept.
		r.Content = nil
		const why = "the answer holds a NUL byte, which no YAML file can: not a config.yaml (a symbolic link to a process's environment?); its bytes are not kept"
		if r.Outcome == NotLive {
			r.Reason += "; " + why
		} else {
			fail(&r, false, "%s", why)
		}
	}
	red := r.red
	r.red = nil
	r.Target = red.Redact(r.Target)
	r.Reason = red.Redact(r.Reason)
	r.TenantError = red.Redact(r.TenantError)
	for k, val := range r.Provenance {
		r.Provenance[k] = red.Redact(val)
	}
	capHeaders(r.Provenance)
	return r
}

// attempt carries the context of one Collect call and its timeout budget,
// so a timeout can be reported with its length.
type attempt struct {
	ctx    context.Context
	budget time.Duration
}

// interrupted reports whether the attempt's context ended and, if so, fills r.
func (a attempt) interrupted(r *Result) bool {
	err := a.ctx.Err()
	if err == nil {
		return false
	}
	reason := "canceled"
	if errors.Is(err, context.DeadlineExceeded) {
		reason = "timeout"
		if a.budget > 0 {
			reason = "timeout after " + a.budget.Round(time.Millisecond).String()
		}
	}
	fail(r, true, "%s", reason)
	return true
}

func fail(r *Result, transient bool, format string, args ...any) {
	r.Outcome = Failed
	r.Transient = transient
	r.Reason = fmt.Sprintf(format, args...)
}

func gone(r *Result, format string, args ...any) {
	r.Outcome = Gone
	r.Transient = false
	r.Reason = fmt.Sprintf(format, args...)
}

func tooLarge(r *Result, limit int64) {
	fail(r, false, "too large: more than %d bytes", limit)
}

// expand fills placeholders in every template, failing r on the first bad
// value so that nothing is run or requested.
func expand(r *Result, v placeholder.Values, tmpls ...string) ([]string, bool) {
	out := make([]string, len(tmpls))
	for i, t := range tmpls {
		s, err := placeholder.Expand(t, v)
		if err != nil {
			fail(r, false, "%v", err)
			return nil, false
		}
		out[i] = s
	}
	return out, true
}

// target describes the attempt from raw, so ${VAR} references stay
// unexpanded; header values are left out entirely, and so are credentials
// written literally in the URL.
func (c *Collector) target(v placeholder.Values) string {
	fill := func(t string) string {
		if s, err := placeholder.Expand(t, v); err == nil {
			return s
		}
		return t // bad values are reported in Reason, not echoed here
	}
	return c.kind.target(c.raw, fill)
}
