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
	"strconv"
	"strings"

	"backfill/internal/placeholder"
)

// ProvenanceHeaders are the only response headers kept as provenance, as
// header.<Name>: what says where and when the answer came from, and the
// rate limit's state. A fixed list, because a server may put anything in
// the others, Set-Cookie or an echoed Authorization among them.
var ProvenanceHeaders = []string{
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

// MaxHeaderValue caps each provenance header value, in bytes; a longer one
// is cut and ends in headerCut.
const MaxHeaderValue = 1024

const headerCut = "...[cut]"

// headerScan is how much of a header value is kept until it has been
// scrubbed: enough that a secret the server echoed across the cap is still
// seen whole and replaced, before the value is cut to MaxHeaderValue.
const headerScan = 16 << 10

// capHeaders cuts every header.* provenance value to MaxHeaderValue bytes.
// It runs after scrubbing, so it cannot leave part of a secret behind.
func capHeaders(p map[string]string) {
	for k, v := range p {
		if strings.HasPrefix(k, "header.") && len(v) > MaxHeaderValue {
			p[k] = head(v, MaxHeaderValue-len(headerCut)) + headerCut
		}
	}
}

// jsonInflation bounds how much larger than its decoded string a JSON body
// may be: "\u0000"-style escapes take six bytes per byte.
const (
	jsonInflation = 6
	jsonSlack     = 64 << 10
)

// collectHTTP returns the per-capture header values, which must be scrubbed
// from the result like the static secrets.
func (c *Collector) collectHTTP(a attempt, v placeholder.Values, r *Result) []string {
	names := sortedKeys(c.spec.Headers)
	tmpls := []string{c.spec.URL}
	for _, k := range names {
		tmpls = append(tmpls, c.spec.Headers[k])
	}
	vals, ok := expand(r, v, tmpls...)
	if !ok {
		return nil
	}
	headerVals := vals[1:]
	if a.interrupted(r) {
		return headerVals
	}
	req, err := http.NewRequestWithContext(a.ctx, http.MethodGet, vals[0], nil)
	if err != nil {
		fail(r, false, "bad request: %v", unwrapURLError(err))
		return headerVals
	}
	for i, k := range names {
		if strings.EqualFold(k, "Host") {
			req.Host = headerVals[i]
			continue
		}
		req.Header.Set(k, headerVals[i])
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if !a.interrupted(r) {
			netFailure(r, "request failed", err)
		}
		return headerVals
	}
	defer resp.Body.Close()

	r.Provenance["http_status"] = strconv.Itoa(resp.StatusCode)
	for _, h := range ProvenanceHeaders {
		if vs := resp.Header.Values(h); len(vs) > 0 {
			r.Provenance["header."+h] = head(strings.Join(vs, ", "), headerScan)
		}
	}

	code := resp.StatusCode
	status := "HTTP " + strconv.Itoa(code)
	if t := http.StatusText(code); t != "" {
		status += " " + t
	}
	switch {
	case code == http.StatusOK:
		c.readBody(a, resp, r)
		return headerVals
	case code == http.StatusNotFound || code == http.StatusGone:
		gone(r, "%s", status)
	case code >= 300 && code < 400:
		// Location is not reported: it may echo a token from the query.
		fail(r, false, "%s: redirect not followed", status)
	case code == http.StatusTooManyRequests || code >= 500:
		fail(r, true, "%s", status)
	default:
		fail(r, false, "%s: unexpected status", status)
	}
	// Read a little so small error bodies leave the connection reusable;
	// anything bigger is dropped with the connection.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	return headerVals
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
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, "body is not a JSON object"
	}
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, "body is not valid JSON: " + jsonErrText(err)
	}
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
