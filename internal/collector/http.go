package collector

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"backfill/internal/placeholder"
	"backfill/internal/secret"
	"backfill/internal/source"
	"backfill/internal/yamlnode"
)

// provenanceHeaders are the only response headers kept as provenance, as
// header.<Name>: what says where and when the answer came from, and the
// rate limit's state. A fixed list, because a server may put anything in
// the others, Set-Cookie or an echoed Authorization among them.
var provenanceHeaders = []string{
	"X-Molecule-Files-Source",
	"ETag",
	"Last-Modified",
	"Date",
	"Content-Type",
	"Content-Length",
	"Retry-After",
	"X-RateLimit-Limit",
	"X-RateLimit-Remaining",
	"X-RateLimit-Reset",
	"X-Request-Id",
}

// maxHeaderValue caps each provenance header value, in bytes; a longer one
// is cut and ends in headerCut.
const maxHeaderValue = 1024

const headerCut = "...[cut]"

// headerScan is how much of a header value is kept until it has been
// scrubbed: enough that a secret the server echoed across the cap is still
// seen whole and replaced, before the value is cut to maxHeaderValue.
const headerScan = 16 << 10

// capHeaders cuts every header.* provenance value to maxHeaderValue bytes.
// It runs after scrubbing, so it cannot leave part of a secret behind.
func capHeaders(p map[string]string) {
	for k, v := range p {
		if strings.HasPrefix(k, "header.") && len(v) > maxHeaderValue {
			p[k] = head(v, maxHeaderValue-len(headerCut)) + headerCut
		}
	}
}

// jsonInflation bounds how much larger than its decoded string a JSON body
// may be: "\u0000"-style escapes take six bytes per byte.
const (
	jsonInflation = 6
	jsonSlack     = 64 << 10
)

// collectHTTP makes one GET; the header values it expands are learnt, to
// be scrubbed from the result like the static secrets.
func (c *Collector) collectHTTP(a attempt, v placeholder.Values, r *Result) {
	names := sortedKeys(c.spec.Headers)
	tmpls := []string{c.spec.URL}
	for _, k := range names {
		tmpls = append(tmpls, c.spec.Headers[k])
	}
	vals, ok := expand(r, v, tmpls...)
	if !ok {
		return
	}
	headerVals := c.learn(r, vals[1:])
	if a.interrupted(r) {
		return
	}
	resp, ok := c.get(a, r, vals[0], names, headerVals)
	if !ok {
		return
	}
	defer resp.Body.Close()
	keepHeaders(r, resp)
	if resp.StatusCode == http.StatusOK {
		c.readBody(a, resp, r)
		return
	}
	// The platform (behind a proxy: its files API itself is refused) is
	// recognised by the org header it needs or the source header only it
	// sends; only there does a bare 404 mean a wrong org rather than a
	// missing file. Rate-limit headers alone are any gateway's.
	platform := resp.Header.Get("X-Molecule-Files-Source") != ""
	for _, k := range names {
		platform = platform || strings.EqualFold(k, "X-Molecule-Org-Id")
	}
	answerError(r, resp, platform)
}

// get sends one GET with the collector's headers (names and their expanded
// values). On a transport failure it fills r and returns false.
func (c *Collector) get(a attempt, r *Result, u string, names, vals []string) (*http.Response, bool) {
	req, err := http.NewRequestWithContext(a.ctx, http.MethodGet, u, nil)
	if err != nil {
		fail(r, false, "bad request: %v", unwrapURLError(err))
		return nil, false
	}
	for i, k := range names {
		if strings.EqualFold(k, "Host") {
			req.Host = vals[i]
			continue
		}
		req.Header.Set(k, vals[i])
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if !a.interrupted(r) {
			netFailure(r, "request failed", err)
		}
		return nil, false
	}
	return resp, true
}

// keepHeaders records the response's status and provenanceHeaders.
func keepHeaders(r *Result, resp *http.Response) {
	r.Provenance["http_status"] = strconv.Itoa(resp.StatusCode)
	for _, h := range provenanceHeaders {
		if vs := resp.Header.Values(h); len(vs) > 0 {
			r.Provenance["header."+h] = head(r.redact(strings.Join(vs, ", ")), headerScan)
		} else {
			delete(r.Provenance, "header."+h)
		}
	}
}

// bodyHeadBytes is how much of a non-2xx answer's body provenance keeps,
// as body_head (scrubbed of secrets like every provenance value): enough to
// tell the platform's JSON errors apart, and a proxy's page from them.
const bodyHeadBytes = 256

// errorBodyScan is how much of an error body is read to classify it. Small
// error bodies are read whole, which also leaves the connection reusable;
// anything bigger is dropped with the connection.
const errorBodyScan = 4 << 10

// answerError classifies a non-200 answer, reading the start of its body.
func answerError(r *Result, resp *http.Response, platform bool) {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyScan))
	if len(body) > 0 {
		r.Provenance["body_head"] = head(r.redact(string(body)), bodyHeadBytes)
	}
	classifyAnswer(r, resp.StatusCode, resp.Header, body, platform, time.Now())
}

// Platform error texts (workspace-server's files handlers) that decide an
// outcome.
const (
	errWorkspaceNotFound = "workspace not found"
	errFileNotFound      = "file not found"
	// errContainerOffline is ReadFile's answer when no container is
	// running, there is no host mirror and no template folder: the row
	// exists (the lookup found it) but nothing holds its config that the
	// API can reach.
	errContainerOffline = "file not found (container offline"
	// codeOrgHeaderRequired is the tenant guard's code for a request
	// without X-Molecule-Org-Id.
	codeOrgHeaderRequired = "TENANT_ORG_HEADER_REQUIRED"
)

// classifyAnswer decides a non-200 answer's outcome from its status and body.
// platform says the server is the platform's files API (or looks like it),
// where a 404 without a JSON error is the tenant guard's answer to a wrong
// X-Molecule-Org-Id, not a missing file.
//
// A 404 naming the workspace or the file is gone; "container offline" is
// not-running: the workspace's row exists and its container is stopped,
// which says nothing of whether its config still exists (a paused
// self-hosted workspace keeps its config volume), so calling it gone would
// be a claim the answer does not make.
func classifyAnswer(r *Result, code int, h http.Header, body []byte, platform bool, now time.Time) {
	status := "HTTP " + strconv.Itoa(code)
	if t := http.StatusText(code); t != "" {
		status += " " + t
	}
	msg, errCode, isJSON := platformError(body)
	switch {
	case code == http.StatusNotFound && isJSON && strings.HasPrefix(msg, errContainerOffline):
		r.Outcome, r.Transient = NotRunning, false
		r.Reason = fmt.Sprintf("%s %q: the workspace's container is not running and the platform holds no copy of its /configs", status, cut(r.redact(msg)))
	case code == http.StatusNotFound && isJSON && msg != "":
		gone(r, "%s %q", status, cut(r.redact(msg)))
		r.NotFound = true
	case code == http.StatusNotFound && platform:
		fail(r, false, "%s with no JSON error: the platform's tenant guard answers so for a wrong X-Molecule-Org-Id", status)
		r.TenantError = "collector misconfigured: check X-Molecule-Org-Id (and the URL): " + r.Reason
	case code == http.StatusNotFound:
		gone(r, "%s", status)
		r.NotFound = true
	case code == http.StatusGone:
		gone(r, "%s", status)
	case platform && (code == http.StatusUnauthorized || code == http.StatusForbidden):
		// The platform checks the token before it looks at the workspace
		// (WorkspaceAuth): refused once, refused for every workspace, so
		// each further request would only spend the org's shared budget.
		fail(r, false, "%s%s: the files API refused the credentials", status, quoted(cut(r.redact(msg))))
		r.TenantError = "collector misconfigured: check the Authorization token (and X-Molecule-Org-Id): " + r.Reason
	case code == http.StatusBadRequest && errCode == codeOrgHeaderRequired:
		fail(r, false, "%s %s: the request has no X-Molecule-Org-Id", status, codeOrgHeaderRequired)
		r.TenantError = "collector misconfigured: check X-Molecule-Org-Id: " + r.Reason
	case code >= 300 && code < 400:
		// Location is not reported: it may echo a token from the query.
		fail(r, false, "%s: redirect not followed", status)
	case code == http.StatusTooManyRequests:
		r.Throttled, r.RetryAfter = true, retryAfter(h, now)
		fail(r, true, "%s: rate limited, retry after %s", status, r.RetryAfter)
	case code >= 500:
		fail(r, true, "%s", status)
	default:
		fail(r, false, "%s: unexpected status", status)
	}
	if r.Outcome == Failed && !r.Throttled && r.TenantError == "" && msg != "" {
		r.Reason += fmt.Sprintf(" (%q)", cut(r.redact(msg)))
	}
}

// quoted is " " and s quoted, or nothing when s is empty.
func quoted(s string) string {
	if s == "" {
		return ""
	}
	return " " + strconv.Quote(s)
}

// cut bounds server-chosen text quoted in a reason.
func cut(s string) string { return head(s, 200) }

// platformError reads the platform's JSON error body {"error": ..., "code":
// ...}. isJSON is false for an empty or non-JSON body, or one with neither
// field a string.
func platformError(body []byte) (msg, code string, isJSON bool) {
	var e struct {
		Error any `json:"error"`
		Code  any `json:"code"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(body), &e); err != nil {
		return "", "", false
	}
	msg, _ = e.Error.(string)
	code, _ = e.Code.(string)
	return msg, code, msg != "" || code != ""
}

// maxRetryAfter bounds one wait for a 429, whatever the server asks: the
// platform's window is a minute.
const maxRetryAfter = 5 * time.Minute

// retryAfter is how long a 429 asks to wait: Retry-After (seconds, or an
// HTTP date); when that is 0 or absent, X-RateLimit-Reset (the platform
// sends seconds until its window resets; a value that looks like a Unix
// time is taken as one); never less than a second, since the platform
// truncates to whole seconds and 0 would retry into the same window.
func retryAfter(h http.Header, now time.Time) time.Duration {
	var d time.Duration
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			d = time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
		} else if t, err := http.ParseTime(v); err == nil {
			d = t.Sub(now)
		}
	}
	if d <= 0 {
		if v := strings.TrimSpace(h.Get("X-RateLimit-Reset")); v != "" {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				if n > 1_000_000_000 {
					d = time.Unix(n, 0).Sub(now)
				} else {
					d = time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
				}
			}
		}
	}
	return min(max(d, time.Second), maxRetryAfter)
}

func (c *Collector) readBody(a attempt, resp *http.Response, r *Result) {
	limit := c.maxBytes
	if c.spec.JSONField != "" {
		limit = jsonLimit(c.maxBytes)
	}
	if resp.ContentLength > limit {
		// Known to be over before reading a byte.
		c.bodyTooLarge(r, limit)
		return
	}
	// Size the buffer from Content-Length when the server sent one, so a
	// typical config is read without repeated growing and copying; but
	// never trust a claimed length past 1 MiB before the bytes arrive.
	buf := bytes.NewBuffer(make([]byte, 0, max(min(resp.ContentLength+1, limit+1, 1<<20), 512)))
	_, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1))
	body := buf.Bytes()
	if err != nil {
		if !a.interrupted(r) {
			netFailure(r, "reading body", err)
		}
		return
	}
	if int64(len(body)) > limit {
		// Closing the body unread drops the connection, so the rest of an
		// oversized response is never transferred.
		c.bodyTooLarge(r, limit)
		return
	}
	if c.spec.JSONField == "" {
		r.Outcome = Captured
		r.Content = body
		return
	}
	content, why := jsonStringField(body, c.spec.JSONField)
	switch {
	case why != "":
		fail(r, false, "%s", why)
	case int64(len(content)) > c.maxBytes:
		tooLarge(r, c.maxBytes)
	default:
		r.Outcome = Captured
		r.Content = content
	}
}

func (c *Collector) bodyTooLarge(r *Result, limit int64) {
	if c.spec.JSONField == "" {
		tooLarge(r, limit)
		return
	}
	fail(r, false, "too large: JSON body more than %d bytes", limit)
}

// jsonLimit is the raw body cap for a JSON-wrapped config of at most maxBytes
// bytes, guarding against overflow for absurd caps.
func jsonLimit(maxBytes int64) int64 {
	const most = 1<<62 - 1
	if maxBytes > (most-jsonSlack)/jsonInflation {
		return most
	}
	return maxBytes*jsonInflation + jsonSlack
}

// jsonStringField extracts field from a JSON object body, or says why not.
// One decode into generic values validates and unquotes in a single pass:
// the config is most of the body, and scanning it twice was half the cost
// of a capture.
func jsonStringField(body []byte, field string) ([]byte, string) {
	obj, why := jsonObject(body)
	if why != "" {
		return nil, why
	}
	return stringField(obj, field)
}

// jsonObject decodes a JSON object body, or says why not.
func jsonObject(body []byte) (map[string]any, string) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, "body is not a JSON object"
	}
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, "body is not valid JSON: " + jsonErrText(err)
	}
	return obj, ""
}

// stringField is obj's string field, or why not.
func stringField(obj map[string]any, field string) ([]byte, string) {
	v, ok := obj[field]
	if !ok {
		return nil, fmt.Sprintf("JSON body has no field %q", field)
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Sprintf("JSON field %q is %s, not a string", field, jsonKind(v))
	}
	return []byte(s), ""
}

// jsonErrText keeps the position but not the offending text of a JSON
// error, which could quote the body.
func jsonErrText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "syntax error at byte " + strconv.FormatInt(se.Offset, 10)
	}
	return "cannot decode"
}

func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return "a number"
	}
}

// netFailure reports a transport error without the URL that net/http
// wraps around it (the URL may hold a token).
func netFailure(r *Result, what string, err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		fail(r, true, "%s: timeout", what)
		return
	}
	fail(r, true, "%s: %v", what, unwrapURLError(err))
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// httpKind GETs Spec.URL with Spec.Headers; with Spec.JSONField the body is
// JSON and the config is that string field. In the inventory it is a
// mapping {url, headers, json_field}.
type httpKind struct{}

func (httpKind) name() string     { return MethodHTTP }
func (httpKind) fields() []string { return []string{"url", "headers", "json_field"} }
func (httpKind) requests() int    { return 1 }

func (httpKind) validate(s Spec) error {
	if err := placeholder.Validate(s.URL); err != nil {
		return fmt.Errorf("url: %w", err)
	}
	return validateHeaders(s.Headers)
}

func (httpKind) check(spec, raw Spec) (string, error) {
	return "", checkURL("url", spec.URL, raw.URL)
}

func (httpKind) decode(d Decoder, v Field, raw, exp *Spec) {
	f := d.Fields(v.Val, "http", "url", "headers", "json_field")
	if f == nil {
		return
	}
	if line, r, e, ok := decodeURL(d, f, v, "http", "url"); ok {
		if isFilesAPIURL(e) {
			d.Errorf(line, "http url is the platform's files API (/workspaces/…/files/…): when a workspace's container is down it answers "+
				"from a template folder named like the workspace and says nothing of it; use the files_api collector, which lists /configs "+
				"around each read to learn which source answered")
		} else {
			raw.URL, exp.URL = r, e
		}
	}
	if h, ok := f["headers"]; ok {
		decodeHeaders(d, h, raw, exp)
	}
	if j, ok := f["json_field"]; ok {
		if r, ok := d.Str(j.Val, "json_field"); ok {
			if r == "" {
				d.Errorf(yamlnode.Resolve(j.Val).Line, "json_field is empty; omit it to use the whole response body")
			}
			// A field name, not a template: neither expanded nor substituted.
			raw.JSONField, exp.JSONField = r, r
		}
	}
}

// filesAPIPath matches a path that is the platform's files API for a
// workspace, /workspaces/<id>/files or anything below it, once decoded,
// cleaned and lower-cased.
var filesAPIPath = regexp.MustCompile(`(^|/)workspaces/[^/]+/files(/|$)`)

// isFilesAPIURL reports whether u leads to the platform's files API. The
// platform's router matches the decoded path, so the test is on the path
// as the server will read it: %66iles, files%2Fconfig.yaml or a doubled
// slash are the files API all the same.
func isFilesAPIURL(u string) bool {
	p := u
	if parsed, err := url.Parse(u); err == nil {
		p = parsed.Path
	} else if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	// Decode whatever is left encoded (a second round, or an unparsed URL).
	for range 3 {
		d, err := url.PathUnescape(p)
		if err != nil || d == p {
			break
		}
		p = d
	}
	p = strings.ToLower(path.Clean("/" + strings.ReplaceAll(p, "\\", "/")))
	return filesAPIPath.MatchString(p)
}

// target leaves out a password or token= written literally in the URL by
// position, not only by value: it may be shorter than redaction's minimum.
func (httpKind) target(raw Spec, fill func(string) string) string {
	s := "GET " + fill(secret.RedactURL(raw.URL)) + headerNames(raw.Headers)
	if raw.JSONField != "" {
		s += " field " + strconv.Quote(raw.JSONField)
	}
	return s
}

func (httpKind) collect(c *Collector, a attempt, v placeholder.Values, r *Result) {
	r.Source = source.Unverified
	c.collectHTTP(a, v, r)
	// An http collector pointed at the platform's files API cannot check
	// where the read came from, but when the answer itself names a
	// fallback (the template folder named like the workspace, or
	// nothing), it is no evidence: not live, its bytes not kept.
	raw, present := r.Provenance["header.X-Molecule-Files-Source"]
	if cls := listedSource(raw, present); r.Outcome == Captured && (cls == source.TemplateDir || cls == source.None) {
		r.Outcome, r.Source, r.Content = NotLive, cls, nil
		r.Reason = fmt.Sprintf("not live: the answer names source %s (X-Molecule-Files-Source), not the workspace; its bytes are not kept", cls)
	}
	// Pointed at the platform's files API, it reads a container named
	// like the workspace when the workspace's own is down, as files_api
	// does (namedLikeOthersContainer).
	if other := namedLikeOthersContainer(v.Name, v.WorkspaceID); r.Outcome == Captured && other != "" {
		r.Outcome, r.Content = NotLive, nil
		r.Reason = fmt.Sprintf("not live: the workspace's name %q is the platform's container name for another workspace (%s); "+
			"the platform's files API reads that one when the workspace's own container is not running; its bytes are not kept", r.redact(v.Name), other)
	}
}
