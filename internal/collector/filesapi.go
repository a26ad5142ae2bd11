package collector

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"backfill/internal/placeholder"
	"backfill/internal/secret"
	"backfill/internal/source"
	"backfill/internal/yamlnode"
)

// The platform's files API (workspace-server) answers a read of
// config.yaml from the first place that has one: the workspace's EC2
// instance, its running container, the host's copy of the last provision
// (the host mirror), or a template folder whose name matches the
// workspace's name; the read says nothing of which. Only a listing of
// /configs carries X-Molecule-Files-Source. So a files_api capture lists,
// reads and lists again, and takes the bytes as the workspace's only when
// both listings name the same evidence source (package source), both list
// config.yaml at one size, and the read is no longer than that size and
// shorter only by what trimming whitespace explains: the container path
// trims the ends, but longer is another file, and much shorter is the
// template folder answering for a config.yaml that cat could not read (a
// dangling link, no permission) or a read the platform cut. Nothing makes
// this airtight (a listing does not prove the read's cat did not fail and
// fall through to a template of about the same size), so the sizes are
// recorded for a reviewer too.

// maxListingBytes bounds a /configs listing: one level of a config folder.
const maxListingBytes = 1 << 20

// trimSlack is how many bytes shorter than listed a read may be: the
// platform trims whitespace from both ends of a container read (a final
// newline or a few blank lines), never more of a config than this.
const trimSlack = 256

// containerReadCut is where the platform cuts the output of a command in a
// container (its exec output limit, which counts the stream's 8-byte frame
// headers too), saying nothing; cutMargin covers those headers.
const (
	containerReadCut = 5 << 20
	cutMargin        = 64 << 10
)

// Provenance keys of a files_api capture.
const (
	provSource        = "source"         // the class decided
	provListSource    = "list_source"    // X-Molecule-Files-Source of the first listing, as sent
	provRelistSource  = "relist_source"  // ... of the second
	provListedSize    = "listed_size"    // config.yaml's size in the first listing, or "absent"
	provRelistedSize  = "relisted_size"  // ... in the second
	provJSONSize      = "json_size"      // the read's "size" field
	provContentSize   = "content_size"   // bytes of the read's content
	provFailedRequest = "failed_request" // list, read or relist: which request a failure came from
)

// listing is what a /configs listing said.
type listing struct {
	raw    string // the X-Molecule-Files-Source header as sent; "" when absent
	source string // its class: one of source.Listed, or source.Missing or source.Unknown
	has    bool   // config.yaml is in the listing
	size   int64  // its listed size
	dup    bool   // the listing names config.yaml more than once
}

func (l listing) sizeText() string {
	if !l.has {
		return "absent"
	}
	return strconv.FormatInt(l.size, 10)
}

// listedSource classifies an X-Molecule-Files-Source value.
func listedSource(raw string, present bool) string {
	if !present || strings.TrimSpace(raw) == "" {
		return source.Missing
	}
	v := strings.ToLower(strings.TrimSpace(raw))
	for _, s := range source.Listed {
		if v == s {
			return s
		}
	}
	return source.Unknown
}

func (c *Collector) collectFilesAPI(a attempt, v placeholder.Values, r *Result) {
	names := sortedKeys(c.spec.Headers)
	tmpls := []string{c.spec.BaseURL, "{workspace_id}"}
	for _, k := range names {
		tmpls = append(tmpls, c.spec.Headers[k])
	}
	vals, ok := expand(r, v, tmpls...)
	if !ok {
		return
	}
	if why := sharedEC2Instance(v); why != "" {
		fail(r, false, "%s", why)
		return
	}
	headerVals := c.learn(r, vals[2:])
	if a.interrupted(r) {
		return
	}
	base := strings.TrimRight(vals[0], "/") + "/workspaces/" + vals[1] + "/files"
	listURL, readURL := base+"?root=/configs", base+"/config.yaml?root=/configs"

	first, ok := c.filesList(a, r, "list", listURL, names, headerVals)
	if !ok {
		return
	}
	r.Reached = true
	r.Provenance[provListSource] = first.raw
	r.Provenance[provListedSize] = first.sizeText()
	r.Source = first.source

	body, readSource, ok := c.filesGet(a, r, "read", readURL, names, headerVals, jsonLimit(c.maxBytes))
	if !ok {
		if r.Outcome == Gone && strings.Contains(r.Reason, errFileNotFound) {
			readNotFound(r, first)
		}
		return
	}
	content, jsonSize, why := readContent(body)
	if why != "" {
		fail(r, false, "read: %s", why)
		return
	}
	r.Provenance[provJSONSize] = jsonSize
	r.Provenance[provContentSize] = strconv.Itoa(len(content))
	if int64(len(content)) > c.maxBytes {
		tooLarge(r, c.maxBytes)
		return
	}

	second, ok := c.filesList(a, r, "relist", listURL, names, headerVals)
	if !ok {
		return
	}
	r.Provenance[provRelistSource] = second.raw
	r.Provenance[provRelistedSize] = second.sizeText()

	outcome, src, why := judge(first, second, readAnswer{content: content, source: readSource})
	nameChosen := false
	if outcome == Captured && src == source.Container {
		// When the workspace's own container (ws-<id>) is not running, the
		// platform tries a container named like the workspace (its name
		// lower-cased, spaces as dashes), and says container either way.
		// A name that is another workspace's container name would read
		// that workspace's config as this one's.
		if other := namedLikeOthersContainer(v.Name, v.WorkspaceID); other != "" {
			outcome, why = NotLive, fmt.Sprintf("not live: the workspace's name %q is the platform's container name for another workspace (%s); "+
				"when its own container is not running the files API reads that one, and says container either way; its bytes are not kept", r.redact(v.Name), other)
			content, nameChosen = nil, true
		}
	}
	if outcome == Failed {
		fail(r, false, "%s", why)
		r.Source = src
		return
	}
	r.Outcome, r.Source, r.Reason = outcome, src, why
	r.Transient = false
	r.Content = content
	if outcome == NotLive && !nameChosen && !ofListedSize(first, second, content) {
		// Bytes of another size than a config.yaml both listings show at
		// one size are not known to be that file: a config.yaml made a
		// symbolic link is listed at the link's own size and read through
		// it, to a secret perhaps, and one swapped or removed around the
		// read leaves the listings disagreeing. Whose they are, nothing
		// says: not kept.
		r.Content = nil
		r.Reason += "; its bytes are not kept"
	}
	r.Provenance[provSource] = r.Source
}

// readNotFound settles a read's "file not found" 404 by the listing made
// just before it, which found the workspace: the 404 says the workspace is
// gone only when the listing leaves nothing else to say.
func readNotFound(r *Result, first listing) {
	// The listing's 200 showed the org header and URL are right: this 404
	// is not the bare one of a misconfigured tenant.
	defer func() { r.NotFound = false }()
	switch {
	case first.source == source.TemplateDir || first.source == source.None:
		// The listing already said neither the container nor a host
		// mirror answers: the read's 404 is about the fallback, not
		// about the workspace's own config.
		r.Outcome = NotRunning
		r.Reason += fmt.Sprintf("; the listing's source is %s: the workspace's container is not running and there is no host mirror", first.source)
	case first.has:
		// Over EC2 Instance Connect the platform answers 404 for any read
		// that fails without output (sudo refused, the ssh cut at its
		// deadline), and a container stopped between the two requests
		// falls through to a mirror without the file: a fault, retried,
		// never the file's absence.
		fail(r, true, "%s; the %s listing just made shows config.yaml (%d bytes), so the read failed rather than found it absent", r.Reason, first.source, first.size)
	case first.source == source.EIC:
		// An EC2 instance's listing answers an empty list when its sudo
		// find fails, and its read 404s when its sudo cat does.
		fail(r, false, "%s; the eic listing shows no config.yaml, which is also what it answers when the instance refuses its sudo find: not taken for the config's absence", r.Reason)
	}
}

// sharedEC2Instance says why a capture through the files API cannot be
// told apart from another's: the platform reads an EC2 workspace's files
// by its instance_id ("i-…"), so rows naming one instance would each get
// that instance's config. "" when the row's instance is its own.
func sharedEC2Instance(v placeholder.Values) string {
	if !v.InstanceShared || !isEC2InstanceID(v.InstanceID) {
		return ""
	}
	return fmt.Sprintf("instance_id %s is named by more than one live workspace of the tenant, and the files API reads an EC2 workspace by its instance_id: "+
		"whose config it would answer, nothing says", v.InstanceID)
}

// isEC2InstanceID is the platform's test (files_backend_dispatch.go) for
// an instance_id it reads over EC2 Instance Connect.
func isEC2InstanceID(id string) bool { return len(id) > 2 && strings.HasPrefix(id, "i-") }

// ofListedSize reports whether both listings show config.yaml at one size
// and the read is that size less at most trimSlack: the only not-live
// answer whose bytes are kept (a template folder's config.yaml, say).
func ofListedSize(first, second listing, content []byte) bool {
	n := rawLen(content)
	return first.has && second.has && !first.dup && !second.dup && first.size == second.size && n <= first.size && first.size-n <= trimSlack
}

// readAnswer is what judge needs of the read.
type readAnswer struct {
	content []byte
	source  string // the class of the read's own X-Molecule-Files-Source; source.Missing when it sent none
}

// rawLen is the fewest bytes content can stand for: the platform's JSON
// turns each byte that is not UTF-8 into U+FFFD, three bytes for one.
func rawLen(content []byte) int64 {
	return int64(len(content) - 2*bytes.Count(content, []byte("\uFFFD")))
}

// judge decides a read from the listings made before and after it: captured
// only when both name the same evidence source and list config.yaml at one
// size, the read names no other source, and what was read is that size
// less at most trimSlack; failed when the platform cut the read; otherwise
// not-live, with the reason.
func judge(first, second listing, rd readAnswer) (Outcome, string, string) {
	src := first.source
	n := rawLen(rd.content)
	switch {
	case first.source != second.source:
		return NotLive, source.Changed, fmt.Sprintf("not live: the listing's source changed from %s to %s around the read, so nothing says which one answered",
			first.source, second.source)
	case src == source.TemplateDir:
		return NotLive, src, "not live: the files API answered from the template folder named like the workspace (source template-dir), not from the workspace: its container is not running and there is no host mirror"
	case src == source.None:
		return NotLive, src, "not live: the files API has no source for the workspace's /configs (source none)"
	case src == source.Missing:
		return NotLive, src, "not live: the listing sent no X-Molecule-Files-Source, so nothing says which source answered"
	case src == source.Unknown:
		return NotLive, src, fmt.Sprintf("not live: the listing names source %q, which backfill does not know", cut(first.raw))
	case first.dup || second.dup:
		return NotLive, src, fmt.Sprintf("not live: the %s listing names config.yaml more than once; a file name holding a line break forges a line of it, so nothing says which entry is the file", src)
	case rd.source != source.Missing && rd.source != src:
		return NotLive, src, fmt.Sprintf("not live: the read itself names source %s where the listings name %s", rd.source, src)
	case !first.has:
		return NotLive, src, fmt.Sprintf("not live: the %s listing has no config.yaml, so the read answered from a fallback", src)
	case !second.has:
		return NotLive, src, fmt.Sprintf("not live: the %s listing made after the read has no config.yaml: it went away around the read, which then answered from a fallback", src)
	case first.size != second.size:
		return NotLive, src, fmt.Sprintf("not live: config.yaml was listed at %d bytes before the read and %d after: it changed around the read, so nothing says which the read gave",
			first.size, second.size)
	case n > first.size && !(src == source.EIC && first.size == 0):
		// An EC2 instance's listing runs stat without sudo and lists 0
		// when it cannot; its read never falls through to a template
		// folder, so a 0 there says nothing against the read.
		return NotLive, src, fmt.Sprintf("not live: the read gave %d bytes, more than the %d listed for config.yaml by the %s listing: not the file it listed",
			n, first.size, src)
	case src == source.Container && n < first.size && first.size >= containerReadCut-cutMargin:
		return Failed, src, fmt.Sprintf("read: config.yaml is listed at %d bytes and the read gave %d: the platform cuts a read through a container at %d bytes, so no whole copy can be read this way",
			first.size, n, containerReadCut)
	case first.size-n > trimSlack:
		return NotLive, src, fmt.Sprintf("not live: the read gave %d bytes, %d fewer than the %d listed for config.yaml by the %s listing, more than trimming whitespace explains: "+
			"the read may have answered from the template folder named like the workspace (its own config.yaml unreadable, or a dangling link)", n, first.size-n, first.size, src)
	}
	return Captured, src, ""
}

// filesList makes one listing request and parses it.
func (c *Collector) filesList(a attempt, r *Result, step, u string, names, vals []string) (listing, bool) {
	var l listing
	resp, body, ok := c.filesRequest(a, r, step, u, names, vals, maxListingBytes)
	if !ok {
		return l, false
	}
	l.raw, l.source = filesSource(r, resp)
	var entries []struct {
		Path string `json:"path"`
		Size int64  `json:"size"`
		Dir  bool   `json:"dir"`
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		fail(r, false, "%s: the listing is not a JSON array", step)
		return l, false
	}
	if err := json.Unmarshal(trimmed, &entries); err != nil {
		fail(r, false, "%s: the listing is not a JSON array of {path, size, dir}: %s", step, jsonErrText(err))
		return l, false
	}
	n := 0
	for _, e := range entries {
		// Every source lists paths relative to the root, so the file is
		// exactly "config.yaml". The container and EC2 listings are lines
		// of a shell loop over find: a file name holding a line break
		// forges a line, and with it a second config.yaml entry, sized by
		// whatever the forged path stats to.
		if e.Path != "config.yaml" {
			continue
		}
		if n++; n == 1 && !e.Dir {
			l.has, l.size = true, e.Size
		}
	}
	l.dup = n > 1
	return l, true
}

// filesGet makes one request and returns its body and the class of its
// X-Molecule-Files-Source (source.Missing when it sent none).
func (c *Collector) filesGet(a attempt, r *Result, step, u string, names, vals []string, limit int64) ([]byte, string, bool) {
	resp, body, ok := c.filesRequest(a, r, step, u, names, vals, limit)
	if !ok {
		return nil, "", false
	}
	keepHeaders(r, resp)
	_, class := filesSource(r, resp)
	return body, class, true
}

// filesSource is an answer's X-Molecule-Files-Source as sent (scrubbed,
// cut) and its class.
func filesSource(r *Result, resp *http.Response) (raw, class string) {
	hv := resp.Header.Values("X-Molecule-Files-Source")
	raw = head(r.redact(strings.Join(hv, ", ")), maxHeaderValue)
	return raw, listedSource(raw, len(hv) > 0)
}

// filesRequest GETs u and reads a 200's body up to limit. Anything else
// fills r, its reason naming the step, and returns false.
func (c *Collector) filesRequest(a attempt, r *Result, step, u string, names, vals []string, limit int64) (*http.Response, []byte, bool) {
	if a.interrupted(r) {
		return nil, nil, false
	}
	resp, ok := c.get(a, r, u, names, vals)
	if !ok {
		r.Reason = step + ": " + r.Reason
		r.Provenance[provFailedRequest] = step
		return nil, nil, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		keepHeaders(r, resp)
		answerError(r, resp, true)
		r.Reason = step + ": " + r.Reason
		r.Provenance[provFailedRequest] = step
		return nil, nil, false
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if !a.interrupted(r) {
			netFailure(r, step+": reading body", err)
		}
		r.Provenance[provFailedRequest] = step
		return nil, nil, false
	}
	if int64(len(body)) > limit {
		fail(r, false, "%s: too large: body more than %d bytes", step, limit)
		r.Provenance[provFailedRequest] = step
		return nil, nil, false
	}
	return resp, body, true
}

// readContent takes the read's {"path","content","size"} apart; size is
// returned as sent, for the record.
func readContent(body []byte) (content []byte, size, why string) {
	obj, why := jsonObject(body)
	if why != "" {
		return nil, "", why
	}
	content, why = stringField(obj, "content")
	if why != "" {
		return nil, "", why
	}
	switch s := obj["size"].(type) {
	case float64:
		if s == math.Trunc(s) && math.Abs(s) < 1<<53 {
			size = strconv.FormatInt(int64(s), 10)
		} else {
			size = strconv.FormatFloat(s, 'g', -1, 64)
		}
	case nil:
		size = "absent"
	default:
		size = "not a number"
	}
	return content, size, ""
}

// filesAPIKind speaks the platform's files API at Spec.BaseURL with
// Spec.Headers, at most Spec.Rate requests a second. In the inventory it is
// a mapping {base_url, headers, rate}.
type filesAPIKind struct{}

func (filesAPIKind) name() string     { return MethodFilesAPI }
func (filesAPIKind) fields() []string { return []string{"base_url", "headers", "rate"} }

// requests: an attempt lists, reads and lists again.
func (filesAPIKind) requests() int { return 3 }

func (filesAPIKind) validate(s Spec) error {
	if err := placeholder.Validate(s.BaseURL); err != nil {
		return fmt.Errorf("base_url: %w", err)
	}
	return validateHeaders(s.Headers)
}

func (filesAPIKind) check(spec, raw Spec) (string, error) {
	return "", checkBaseURL(spec.BaseURL, raw.BaseURL)
}

// maxRate bounds a files_api rate: the platform allows 10 a second per org.
const maxRate = 1000

func (filesAPIKind) decode(d Decoder, v Field, raw, exp *Spec) {
	f := d.Fields(v.Val, "files_api", "base_url", "headers", "rate")
	if f == nil {
		return
	}
	if line, r, e, ok := decodeURL(d, f, v, "files_api", "base_url"); ok {
		if strings.ContainsAny(e, "?#") {
			d.Errorf(line, "files_api base_url must not have a query or fragment: give the server, the collector adds /workspaces/... and ?root=/configs")
		}
		raw.BaseURL, exp.BaseURL = r, e
	}
	if h, ok := f["headers"]; ok {
		decodeHeaders(d, h, raw, exp)
	}
	raw.Rate = DefaultRate
	if r, ok := f["rate"]; ok {
		n := yamlnode.Resolve(r.Val)
		rate, err := strconv.ParseFloat(n.Value, 64)
		switch {
		case n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") || err != nil:
			d.Errorf(n.Line, "files_api rate must be a number of requests per second (default %g)", DefaultRate)
		case !(rate > 0 && rate <= maxRate):
			d.Errorf(n.Line, "files_api rate must be above 0 and at most %d requests per second", maxRate)
		default:
			raw.Rate = rate
		}
	}
	exp.Rate = raw.Rate
}

func (filesAPIKind) target(raw Spec, fill func(string) string) string {
	return "files_api: list, read and list again " + strings.TrimRight(fill(secret.RedactURL(raw.BaseURL)), "/") +
		"/workspaces/" + fill("{workspace_id}") + "/files[/config.yaml]?root=/configs" + headerNames(raw.Headers)
}

func (filesAPIKind) collect(c *Collector, a attempt, v placeholder.Values, r *Result) {
	c.collectFilesAPI(a, v, r)
}

// namedLikeOthersContainer says why a workspace's name leads the
// platform's files API to another workspace's container, or "". The
// platform's findContainer derives LOWER(REPLACE(name, ' ', '-')); the name
// is also tried trimmed of any white space around it, so that no spelling
// of the same name gets past (the platform trims names elsewhere).
func namedLikeOthersContainer(name, workspaceID string) string {
	for _, n := range []string{name, strings.TrimSpace(name)} {
		if other := placeholder.OthersContainer(strings.ToLower(strings.ReplaceAll(n, " ", "-")), workspaceID); other != "" {
			return other
		}
	}
	return ""
}
