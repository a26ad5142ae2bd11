package plan

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"strings"
	"syscall"

	"backfill/internal/identity"
	"backfill/internal/inputfile"
	"backfill/internal/tenantdb"
)

// FormatVersion is the plan file format this backfill writes.
//
// Bump it whenever the plan's fields or the verdict set change: a plan's
// counts are sealed over its version's verdicts, so a new verdict under an
// old version would make every plan already written fail to load. Keep
// reading every earlier version (see verdictsFor and encodeTo):
//
//   - 1: the first format.
//   - 2: adds "databases" (the database each tenant's DSN reached at plan
//     time) and the verdict unreachable.
const FormatVersion = 2

// minFormatVersion is the oldest plan format this backfill still reads.
const minFormatVersion = 1

// Plan is the reviewed, fingerprinted decision for every workspace.
type Plan struct {
	FormatVersion int    `json:"format_version"`
	Fingerprint   string `json:"fingerprint"`
	Author        string `json:"author"`
	CreatedAt     string `json:"created_at"`
	// Backfill is the build that wrote the plan (format 2 on).
	Backfill string `json:"backfill,omitempty"`
	Inputs   Inputs `json:"inputs"`
	// Databases names, per tenant read at plan time, the database its DSN
	// reached (format 2 on); apply and rollback refuse a tenant whose DSN
	// now reaches another.
	Databases []TenantDatabase `json:"databases,omitempty"`
	Counts    map[string]int   `json:"counts"`
	Items     []Item           `json:"items"`
}

// TenantDatabase is the database one tenant's DSN reached at plan time.
type TenantDatabase struct {
	Tenant string `json:"tenant"`
	tenantdb.Database
	// Target is where the tenant's DSN led (tenantdb.Target): apply
	// refuses a DSN that leads elsewhere, which a physical copy of the
	// database, identical in every other way, needs. Empty in plans made
	// before it was recorded.
	Target string `json:"target,omitempty"`
	// Unreachable is why the tenant's database could not be read, or was
	// not planned; the database fields are then empty.
	Unreachable string `json:"unreachable,omitempty"`
	// MovedFrom names the databases the tenant's evidence was listed
	// from (tenantdb.Database.Ident) other than the one the plan read,
	// when it was told to plan it there (plan --allow-moved); empty
	// otherwise.
	MovedFrom []string `json:"moved_from,omitempty"`
}

// Database returns the database the plan read for tenant; false when the
// plan did not read it.
func (p *Plan) Database(tenant string) (tenantdb.Database, bool) {
	if d := p.DatabaseEntry(tenant); d != nil && d.Unreachable == "" {
		return d.Database, true
	}
	return tenantdb.Database{}, false
}

// DatabaseEntry returns the plan's databases entry for tenant, or nil.
func (p *Plan) DatabaseEntry(tenant string) *TenantDatabase {
	for i := range p.Databases {
		if p.Databases[i].Tenant == tenant {
			return &p.Databases[i]
		}
	}
	return nil
}

// Unreachable lists the tenants whose database the plan could not read.
func (p *Plan) Unreachable() []TenantDatabase {
	var out []TenantDatabase
	for _, d := range p.Databases {
		if d.Unreachable != "" {
			out = append(out, d)
		}
	}
	return out
}

// Inputs are the digests of what the plan was made from.
type Inputs struct {
	Evidence  EvidenceInput `json:"evidence"`
	Inventory FileInput     `json:"inventory"`
	CP        CPInput       `json:"cp"`
	Catalog   CatalogInput  `json:"catalog"`
}

// CatalogInput is the template catalog a plan was made with: its folder,
// the manifest file when it was given apart from it, and the digest over
// both.
type CatalogInput struct {
	Path     string `json:"path"`
	Manifest string `json:"manifest,omitempty"`
	SHA256   string `json:"sha256"`
}

// EvidenceInput identifies the evidence store state the plan saw.
type EvidenceInput struct {
	Path      string `json:"path"`
	ChainHead string `json:"chain_head"` // hash of the last capture
	Captures  int    `json:"captures"`
}

// FileInput is a file or directory input and its digest.
type FileInput struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// CPInput is the CP records source (never with a password) and its digest.
type CPInput struct {
	Source string `json:"source"`
	SHA256 string `json:"sha256"`
	Claims int    `json:"claims"`
}

// Item is the plan's decision for one workspace.
type Item struct {
	Tenant        string `json:"tenant"`
	WorkspaceID   string `json:"workspace_id"`
	WorkspaceName string `json:"workspace_name"`
	Kind          string `json:"kind"`
	Runtime       string `json:"runtime"`
	DBTemplate    string `json:"db_template"`
	DBStatus      string `json:"db_status"` // "" when the row no longer exists
	// Provisioning is "hosted" (instance_id set: the control plane runs it)
	// or "self-hosted" (instance_id NULL: a container ws-<id> on the
	// tenant's own server), from the row as last seen. Format 2 on.
	Provisioning string        `json:"provisioning,omitempty"`
	Evidence     *ItemEvidence `json:"evidence"`
	CP           *ItemCP       `json:"cp"`
	Verdict      Verdict       `json:"verdict"`
	Reason       string        `json:"reason"`
	Notes        []string      `json:"notes,omitempty"`
	Drift        bool          `json:"drift,omitempty"`
	Action       *Action       `json:"action,omitempty"`
}

// ItemEvidence is the capture an item's verdict rests on.
type ItemEvidence struct {
	CaptureID  int64  `json:"capture_id"`
	SHA256     string `json:"sha256"`
	CapturedAt string `json:"captured_at"`
	Template   string `json:"template"`
	Rule       string `json:"rule"`
	Captures   int    `json:"captures"` // successful captures considered
	// Source is the class of what answered the cited capture (package
	// source): container, eic, host-mirror, exec, file or unverified.
	// Format 2 on; empty in plans made before it was recorded.
	Source string `json:"source,omitempty"`
	// Resemblance is how much the capture's shape is that of the template
	// its name matched, and of that template's runtime default (display-name
	// rules only).
	Resemblance *identity.Resemblance `json:"resemblance,omitempty"`
}

// ItemCP is the CP claim that applied.
type ItemCP struct {
	Templates []string `json:"templates"`
	Level     string   `json:"level"`
	Sources   []string `json:"sources"`
}

// Action is the one write an agree item asks for.
type Action struct {
	SetTemplate   string `json:"set_template"`
	ExpectCurrent string `json:"expect_current"`
}

// Key names the item's workspace.
func (it *Item) Key() string { return it.Tenant + "/" + it.WorkspaceID }

// encodeTo writes the plan's one canonical form: what WriteFile writes,
// what the fingerprint covers, and what LoadPlan insists a file still is. It
// streams the canonical form (the same bytes json.MarshalIndent
// with two-space indent gives, and a final newline) one item at a time, so
// that a plan of 100,000 items is never held in memory twice.
func (p *Plan) encodeTo(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	p.encodeHead(bw)
	if p.Items == nil {
		bw.WriteString("  \"items\": null\n}\n")
		return bw.Flush()
	}
	ie := newItemEncoder()
	for i := range p.Items {
		ie.encode(bw, &p.Items[i], i == 0)
	}
	bw.WriteString(itemsEnd(len(p.Items)))
	return bw.Flush()
}

// encodeHead writes the canonical form up to the items: every field before
// them, each the bytes json.MarshalIndent gives.
func (p *Plan) encodeHead(bw *bufio.Writer) {
	field := func(name string, v any) {
		b, err := json.MarshalIndent(v, "  ", "  ")
		if err != nil {
			panic(err) // plan fields always marshal
		}
		fmt.Fprintf(bw, "  %q: %s,\n", name, b)
	}
	bw.WriteString("{\n")
	field("format_version", p.FormatVersion)
	field("fingerprint", p.Fingerprint)
	field("author", p.Author)
	field("created_at", p.CreatedAt)
	if p.FormatVersion >= 2 {
		field("backfill", p.Backfill)
	}
	field("inputs", p.Inputs)
	if p.FormatVersion >= 2 {
		field("databases", nonNil(p.Databases))
	}
	field("counts", p.Counts)
}

// itemsEnd closes the canonical form after n items: what follows the last
// item's encoding, or the whole items field when there are none.
func itemsEnd(n int) string {
	if n == 0 {
		return "  \"items\": []\n}\n"
	}
	return "\n  ]\n}\n"
}

// itemEncoder writes items in the canonical form: the bytes of
// json.MarshalIndent at the items' depth, separated by commas, with one
// encoder and buffer for every item.
type itemEncoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

func newItemEncoder() *itemEncoder {
	ie := &itemEncoder{}
	ie.enc = json.NewEncoder(&ie.buf)
	ie.enc.SetIndent("    ", "  ")
	return ie
}

// encode writes one item; the first opens the items array.
func (ie *itemEncoder) encode(bw *bufio.Writer, it *Item, first bool) {
	ie.buf.Reset()
	if err := ie.enc.Encode(it); err != nil {
		panic(err) // items always marshal
	}
	if first {
		bw.WriteString("  \"items\": [\n    ")
	} else {
		bw.WriteString(",\n    ")
	}
	bw.Write(bytes.TrimSuffix(ie.buf.Bytes(), []byte("\n")))
}

// computeFingerprint is the sha256 of the canonical form with the
// fingerprint field empty.
func (p *Plan) computeFingerprint() string {
	c := *p
	c.Fingerprint = ""
	h := sha256.New()
	c.encodeTo(h)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func nonNil(d []TenantDatabase) []TenantDatabase {
	if d == nil {
		return []TenantDatabase{}
	}
	return d
}

// Seal sets the counts and the fingerprint.
func (p *Plan) Seal() {
	p.Counts = countsOf(p.FormatVersion, p.Items)
	p.Fingerprint = p.computeFingerprint()
}

// countsOf counts items by verdict, every verdict of format version v
// present, and those that drift.
func countsOf(v int, items []Item) map[string]int {
	counts := map[string]int{"drift": 0}
	for _, v := range verdictsFor(v) {
		counts[string(v)] = 0
	}
	for i := range items {
		count(counts, &items[i])
	}
	return counts
}

// count adds an item to counts by verdict, and to "drift" when it drifted.
func count(counts map[string]int, it *Item) {
	counts[string(it.Verdict)]++
	if it.Drift {
		counts["drift"]++
	}
}

// WriteFile writes the plan atomically with mode 0644: it holds no secrets,
// and reviewers read it.
func (p *Plan) WriteFile(path string) error {
	return WriteFileAtomic(path, p.Encode)
}

// WriteFileAtomic writes a file (mode 0644) through a temporary file beside
// it, renamed into place once complete and synced (see createAtomic).
func WriteFileAtomic(path string, write func(io.Writer) error) error {
	f, err := createAtomic(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// Output is one file for WriteFilesAtomic: what it is (for errors), its
// path, and what writes it.
type Output struct {
	What, Path string
	Write      func(io.Writer) error
}

// WriteFilesAtomic writes every output through a temporary file beside it
// (see createAtomic), then runs ready, and only once all of that succeeded
// renames them into place. A failure before then leaves no output and ready
// not run, so a command that fails on its last file has changed nothing.
func WriteFilesAtomic(outs []Output, ready func() error) error {
	var files []*atomicFile
	abort := func() {
		for _, f := range files {
			f.Abort()
		}
	}
	for _, o := range outs {
		f, err := createAtomic(o.Path)
		if err != nil {
			abort()
			return fmt.Errorf("write %s: %w", o.What, err)
		}
		files = append(files, f)
		if err := o.Write(f); err != nil {
			abort()
			return fmt.Errorf("write %s %s: %w", o.What, o.Path, err)
		}
	}
	if ready != nil {
		if err := ready(); err != nil {
			abort()
			return err
		}
	}
	for i, f := range files {
		if err := f.Commit(); err != nil {
			for _, g := range files[i+1:] {
				g.Abort()
			}
			return fmt.Errorf("write %s: %w", outs[i].What, err)
		}
	}
	return nil
}

// atomicFile is a file being written through a temporary file beside it:
// nothing is at its path until Commit.
type atomicFile struct {
	*os.File
	path string
}

// createAtomic starts writing path (mode 0644). The temporary file is new
// (O_EXCL) and never a symlink (O_NOFOLLOW), so a link planted beside the
// file cannot redirect the write, and the rename replaces a link at path
// itself rather than writing through it.
func createAtomic(path string) (*atomicFile, error) {
	var f *os.File
	var err error
	for range 10 {
		var rnd [8]byte
		rand.Read(rnd[:])
		f, err = os.OpenFile(fmt.Sprintf("%s.%x.tmp", path, rnd), os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return &atomicFile{File: f, path: path}, nil
}

// Commit syncs the file and renames it into place; on error nothing is
// left behind.
func (f *atomicFile) Commit() error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), f.path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// Abort removes the temporary file; the path is untouched.
func (f *atomicFile) Abort() {
	f.Close()
	os.Remove(f.Name())
}

// Encode writes the plan's canonical form: the bytes WriteFile writes.
func (p *Plan) Encode(w io.Writer) error { return p.encodeTo(w) }

// sameWriter compares what is written to it with the concatenation of
// want's parts, without buffering.
type sameWriter struct {
	want [][]byte
	off  int // into want[0]
	diff bool
}

func (s *sameWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 && !s.diff {
		if len(s.want) == 0 {
			s.diff = true
			break
		}
		part := s.want[0][s.off:]
		k := min(len(part), len(b))
		if !bytes.Equal(part[:k], b[:k]) {
			s.diff = true
			break
		}
		b, s.off = b[k:], s.off+k
		if s.off == len(s.want[0]) {
			s.want, s.off = s.want[1:], 0
		}
	}
	return n, nil
}

// done reports whether everything wanted was written and nothing else.
func (s *sameWriter) done() bool {
	for _, part := range s.want[min(1, len(s.want)):] {
		if len(part) > 0 {
			return false
		}
	}
	return !s.diff && (len(s.want) == 0 || s.off == len(s.want[0]))
}

// MaxPlanBytes bounds a plan file read: some 900,000 items, where
// the plan of 100,000 workspaces is 114 MB.
const MaxPlanBytes = 1 << 30

// errEdited means a plan file is not what backfill wrote.
var errEdited = errors.New("the plan was edited after it was written")

// LoadPlan reads a plan and refuses one that was edited in any way: its bytes
// must be exactly the canonical form of what they decode to, and the
// fingerprint must match.
func LoadPlan(path string) (*Plan, error) {
	b, err := inputfile.Read(path, MaxPlanBytes)
	if err != nil {
		return nil, err
	}
	p, err := ParsePlan(b)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", path, err)
	}
	return p, nil
}

// ParsePlan is LoadPlan on bytes.
func ParsePlan(b []byte) (*Plan, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Plan
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("not a plan file: %v", jsonError(b, err, dec.InputOffset()))
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		end += int64(len(b[end:]) - len(bytes.TrimLeft(b[end:], " \t\r\n")))
		return nil, fmt.Errorf("not a plan file: line %d: data after the plan object", lineAt(b, end))
	}
	if p.FormatVersion < minFormatVersion || p.FormatVersion > FormatVersion {
		return nil, fmt.Errorf("format_version %d, this backfill reads %d to %d", p.FormatVersion, minFormatVersion, FormatVersion)
	}
	if p.FormatVersion < 2 && (p.Databases != nil || p.Backfill != "") {
		return nil, fmt.Errorf("%w: format_version %d has no databases", errEdited, p.FormatVersion)
	}
	// One encoding, with the fingerprint empty, is both compared with the
	// file (its fingerprint's value spliced out) and hashed: at 100,000
	// items each encoding costs about a second.
	head := fmt.Appendf(nil, "{\n  \"format_version\": %d,\n  \"fingerprint\": ", p.FormatVersion)
	fp, _ := json.Marshal(p.Fingerprint)
	if !bytes.HasPrefix(b, append(head, fp...)) {
		return nil, fmt.Errorf("%w: it is not byte for byte the form backfill writes", errEdited)
	}
	sw := &sameWriter{want: [][]byte{head, []byte(`""`), b[len(head)+len(fp):]}}
	h := sha256.New()
	c := p
	c.Fingerprint = ""
	c.encodeTo(io.MultiWriter(sw, h))
	if !sw.done() {
		return nil, fmt.Errorf("%w: it is not byte for byte the form backfill writes", errEdited)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != p.Fingerprint {
		return nil, fmt.Errorf("%w: fingerprint %s does not match its content (%s)", errEdited, p.Fingerprint, got)
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return &p, nil
}

// check enforces what backfill itself guarantees of every plan it writes,
// so a plan forged with a valid fingerprint still cannot ask for a write
// that reconciliation would not have produced.
func (p *Plan) check() error {
	if !maps.Equal(p.Counts, countsOf(p.FormatVersion, p.Items)) {
		return fmt.Errorf("counts do not match the items")
	}
	// One entry a tenant: with two, one check could read one and the
	// write the other.
	seen := map[string]bool{}
	for _, d := range p.Databases {
		if seen[d.Tenant] {
			return fmt.Errorf("databases: tenant %q appears more than once", d.Tenant)
		}
		seen[d.Tenant] = true
	}
	known := map[Verdict]bool{}
	for _, v := range verdictsFor(p.FormatVersion) {
		known[v] = true
	}
	for i := range p.Items {
		it := &p.Items[i]
		if !known[it.Verdict] {
			return fmt.Errorf("item %s: unknown verdict %q", it.Key(), it.Verdict)
		}
		if (it.Action != nil) != (it.Verdict == Agree) {
			return fmt.Errorf("item %s: only agree items carry an action", it.Key())
		}
		if it.Action != nil && (it.Action.SetTemplate == "" || it.Action.ExpectCurrent != "" || it.DBTemplate != "") {
			return fmt.Errorf("item %s: an action must set a template over an empty one", it.Key())
		}
		// An agree item rests on evidence naming the value it writes and on
		// a CP claim; one that does not was not written by reconciliation.
		if it.Action != nil && (it.Evidence == nil || it.Evidence.Template != it.Action.SetTemplate || it.CP == nil || len(it.CP.Templates) == 0) {
			return fmt.Errorf("item %s: an agree item must cite evidence naming %q and a CP claim", it.Key(), it.Action.SetTemplate)
		}
		if i > 0 && !itemLess(&p.Items[i-1], it) {
			return fmt.Errorf("item %s: items are not sorted by tenant and workspace id, or repeat", it.Key())
		}
	}
	return nil
}

func itemLess(a, b *Item) bool {
	if a.Tenant != b.Tenant {
		return a.Tenant < b.Tenant
	}
	return a.WorkspaceID < b.WorkspaceID
}

// jsonError adds a line number to a JSON decoding error. stopped is where
// the decoder stopped, for errors that carry no offset of their own.
func jsonError(b []byte, err error, stopped int64) string {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("line %d: the file ends before the plan does", lineAt(b, int64(len(b))))
	default:
		// An unknown field has no offset: point at its key when it is
		// spelled plainly, else at the end of the object that holds it.
		off = stopped
		if key, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			if i := bytes.Index(b, []byte(key+":")); i >= 0 {
				off = int64(i)
			}
		}
	}
	if off < 0 || off > int64(len(b)) {
		return err.Error()
	}
	return fmt.Sprintf("line %d: %v", lineAt(b, off), err)
}

// lineAt is the 1-based line of byte offset off in b.
func lineAt(b []byte, off int64) int {
	return bytes.Count(b[:off], []byte("\n")) + 1
}

// Agreed returns the plan's agree items in plan order.
func (p *Plan) Agreed() []Item {
	out := make([]Item, 0, p.Writes())
	for _, it := range p.Items {
		if it.Verdict == Agree {
			out = append(out, it)
		}
	}
	return out
}

// Writes counts the agree items, the writes the plan asks for, without
// copying them.
func (p *Plan) Writes() int {
	n := 0
	for i := range p.Items {
		if p.Items[i].Verdict == Agree {
			n++
		}
	}
	return n
}

// ByTenant splits items (in plan order, so sorted by tenant) into one
// slice per tenant, keeping their order.
func ByTenant(items []Item) [][]Item {
	var out [][]Item
	for i := 0; i < len(items); {
		j := i
		for j < len(items) && items[j].Tenant == items[i].Tenant {
			j++
		}
		out = append(out, items[i:j])
		i = j
	}
	return out
}

// Refusal is a plan refused before any tenant is touched.
type Refusal struct{ Reason string }

func (e *Refusal) Error() string { return "refused: " + e.Reason }
