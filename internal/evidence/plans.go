package evidence

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// PlanRecord is one plan kept in the store, without its bytes.
type PlanRecord struct {
	ID          int64
	Fingerprint string
	Author      string
	CreatedAt   time.Time
	Size        int64 // of the plan file's bytes
	// Signature is the author's armored SSHSIG over the fingerprint
	// (namespace backfill-plan), "" when the plan was not signed.
	Signature string
}

// plan is a plan as appended to the plans chain: its file's sha256 and
// length, and its bytes deflated.
type plan struct {
	fingerprint, author string
	createdAt           time.Time
	sha                 string
	size                int64
	deflated            []byte
	signature           string
}

type planCols struct{ fingerprint, author, createdAt, sha, signature string }

// hash covers the bytes through their sha256, so that verify and the chain
// need not hold whole plans at once.
func (p planCols) hash(id int64, prev string) string {
	return chainHash("plans", prev, id, p.fingerprint, p.author, p.createdAt, p.sha, p.signature)
}

func (p *plan) table() string { return "plans" }

func (p *plan) insert(ctx context.Context, tx *txn, id int64, prev string) (string, error) {
	pc := planCols{p.fingerprint, p.author, formatTime(p.createdAt), p.sha, p.signature}
	h := pc.hash(id, prev)
	err := tx.insert(ctx, "plans", `INSERT INTO plans (id, fingerprint, author, created_at, bytes, signature, prev_hash, hash, encoding, size) VALUES (?,?,?,?,?,?,?,?,?,?)`,
		id, pc.fingerprint, pc.author, pc.createdAt, p.deflated, pc.signature, prev, h, planDeflate, p.size)
	if err != nil {
		return "", err
	}
	return h, nil
}

// planDeflate is the encoding of plans kept since schema 9: raw DEFLATE
// (RFC 1951) of the plan file's bytes.
const planDeflate = "deflate"

// planReader reads a kept plan's file bytes back from how they are kept.
// A deflated plan must end where its stream does: bytes after it would be
// hidden from every hash.
func planReader(stored []byte, encoding string) (io.Reader, error) {
	switch encoding {
	case "":
		return bytes.NewReader(stored), nil
	case planDeflate:
		br := bytes.NewReader(stored)
		return &inflater{r: flate.NewReader(br), rest: br}, nil
	}
	return nil, fmt.Errorf("unknown encoding %q", encoding)
}

// inflater is a DEFLATE stream that is an error when bytes follow its end.
type inflater struct {
	r    io.Reader
	rest *bytes.Reader // what the decompressor has not read (it reads byte by byte)
}

func (f *inflater) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if err == io.EOF && f.rest.Len() > 0 {
		return n, fmt.Errorf("%d bytes follow its deflate stream", f.rest.Len())
	}
	return n, err
}

// planDigest is the sha256 and length of a kept plan's file bytes, read as
// they decode.
func planDigest(stored []byte, encoding string) (string, int64, error) {
	sha, n, _, err := planDigestHead(stored, encoding)
	return sha, n, err
}

// planDigestHead is planDigest with the first bytes of the plan file too.
func planDigestHead(stored []byte, encoding string) (string, int64, []byte, error) {
	r, err := planReader(stored, encoding)
	if err != nil {
		return "", 0, nil, err
	}
	h := sha256.New()
	head := &headWriter{max: planHeadBytes}
	n, err := io.Copy(io.MultiWriter(h, head), r)
	if err != nil {
		return "", 0, nil, fmt.Errorf("its bytes do not decode: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, head.b, nil
}

// planHeadBytes holds a plan file's opening object, format version and
// fingerprint, the fields its canonical form puts first.
const planHeadBytes = 256

// headWriter keeps the first max bytes written to it.
type headWriter struct {
	b   []byte
	max int
}

func (w *headWriter) Write(p []byte) (int, error) {
	if room := w.max - len(w.b); room > 0 {
		w.b = append(w.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// headFingerprint is the fingerprint a plan file's first bytes name, or ""
// when they do not open with format_version and fingerprint, as every plan
// backfill can load does.
func headFingerprint(head []byte) string {
	d := json.NewDecoder(bytes.NewReader(head))
	var toks []any
	for len(toks) < 5 {
		t, err := d.Token()
		if err != nil {
			return ""
		}
		toks = append(toks, t)
	}
	if toks[0] != json.Delim('{') || toks[1] != "format_version" || toks[3] != "fingerprint" {
		return ""
	}
	fp, _ := toks[4].(string)
	return fp
}

// planCols9 are the columns schema 9 added to plans, as a SELECT list
// that reads an older store too.
func (s *Store) planCols9() string {
	if s.version >= 9 {
		return "encoding, coalesce(size, length(bytes))"
	}
	return "'', length(bytes)"
}

// PutPlanFrom keeps the plan file bytes write writes in the store under
// its fingerprint, with its author's signature ("" for none). The bytes
// are hashed and deflated as they come, so a plan of any size is kept
// without being held whole. Putting the same plan again (same fingerprint,
// same bytes) does nothing and keeps the first signature, except that
// signing a plan kept unsigned is an error (the row cannot change); other
// bytes under a fingerprint already kept are an error.
func (s *Store) PutPlanFrom(ctx context.Context, fingerprint, author string, createdAt time.Time, write func(io.Writer) error, signature string) error {
	if fingerprint == "" {
		return fmt.Errorf("put plan: no fingerprint")
	}
	if s.readOnly {
		return s.errReadOnly()
	}
	var z bytes.Buffer
	zw, err := flate.NewWriter(&z, flate.BestSpeed)
	if err != nil {
		return err
	}
	h := sha256.New()
	n := &byteCount{}
	if err := write(io.MultiWriter(zw, h, n)); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	sha, size := hex.EncodeToString(h.Sum(nil)), n.n
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Inside the write transaction, so two processes putting the same plan
	// do not both append it.
	var have []byte
	var encoding, signed string
	err = tx.QueryRowContext(ctx, "SELECT bytes, encoding, signature FROM plans WHERE fingerprint = ?", fingerprint).Scan(&have, &encoding, &signed)
	if err == nil {
		haveSHA, haveSize, derr := planDigest(have, encoding)
		same := derr == nil && haveSHA == sha && haveSize == size
		switch {
		case same && signed == "" && signature != "":
			// The kept row is append-only: a signature cannot be added to it.
			return fmt.Errorf("plan %s is already kept in %s without its author's signature (a plan of the same inputs made in the same second); make the plan again to sign it", fingerprint, s.path)
		case same:
			return nil
		case derr != nil:
			return fmt.Errorf("plan %s is already kept in %s, and %v; run `backfill verify`", fingerprint, s.path, derr)
		}
		return fmt.Errorf("plan %s is already kept in %s with other bytes (%d bytes, sha256 %s; now %d bytes, sha256 %s)",
			fingerprint, s.path, haveSize, haveSHA, size, sha)
	}
	if err != sql.ErrNoRows {
		return err
	}
	if err := appendTx(ctx, tx, &plan{fingerprint, author, createdAt, sha, size, z.Bytes(), signature}); err != nil {
		return err
	}
	return tx.Commit()
}

// byteCount counts the bytes written to it.
type byteCount struct{ n int64 }

func (c *byteCount) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	return len(b), nil
}

// Plans lists the plans kept in the store, oldest first, without their bytes.
func (s *Store) Plans(ctx context.Context) ([]PlanRecord, error) {
	if !s.hasTable("plans") {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, "SELECT id, fingerprint, author, created_at, "+s.planCols9()+", signature FROM plans ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PlanRecord
	for rows.Next() {
		var p PlanRecord
		var at string
		var encoding string
		if err := rows.Scan(&p.ID, &p.Fingerprint, &p.Author, &at, &encoding, &p.Size, &p.Signature); err != nil {
			return nil, err
		}
		p.CreatedAt = parseTime(at)
		out = append(out, p)
	}
	return out, rows.Err()
}

// minPrefix is the fewest hex digits PlanBytes accepts for a fingerprint.
const minPrefix = 8

// PlanBytes returns the one kept plan whose fingerprint is, or starts with,
// fingerprintOrPrefix: the full fingerprint, or at least 8 of its hex
// digits, with or without "sha256:". None, or more than one, is an error
// that lists the candidates. The bytes are checked against the plan's chain
// hash, so an edited plan is never returned.
func (s *Store) PlanBytes(ctx context.Context, fingerprintOrPrefix string) (string, []byte, error) {
	want := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(fingerprintOrPrefix), "sha256:"))
	if len(want) < minPrefix || strings.Trim(want, "0123456789abcdef") != "" {
		return "", nil, fmt.Errorf("plan %q: give its fingerprint, or at least %d of its hex digits", fingerprintOrPrefix, minPrefix)
	}
	plans, err := s.Plans(ctx)
	if err != nil {
		return "", nil, err
	}
	var match []PlanRecord
	for _, p := range plans {
		if strings.HasPrefix(strings.ToLower(strings.TrimPrefix(p.Fingerprint, "sha256:")), want) {
			match = append(match, p)
		}
	}
	switch len(match) {
	case 0:
		return "", nil, fmt.Errorf("no plan kept in %s has a fingerprint starting %q (%d plans kept)", s.path, fingerprintOrPrefix, len(plans))
	case 1:
	default:
		var b strings.Builder
		for _, p := range match {
			fmt.Fprintf(&b, "\n  %s by %s at %s", p.Fingerprint, p.Author, p.CreatedAt.Format(time.RFC3339))
		}
		return "", nil, fmt.Errorf("%q matches %d plans kept in %s; give more of the fingerprint:%s", fingerprintOrPrefix, len(match), s.path, b.String())
	}
	var pc planCols
	var stored []byte
	var encoding string
	var size int64
	var prev, hash string
	err = s.db.QueryRowContext(ctx, "SELECT fingerprint, author, created_at, bytes, "+s.planCols9()+", signature, prev_hash, hash FROM plans WHERE id = ?", match[0].ID).
		Scan(&pc.fingerprint, &pc.author, &pc.createdAt, &stored, &encoding, &size, &pc.signature, &prev, &hash)
	if err != nil {
		return "", nil, err
	}
	r, err := planReader(stored, encoding)
	if err != nil {
		return "", nil, fmt.Errorf("plan %s in %s: %v; run `backfill verify`", pc.fingerprint, s.path, err)
	}
	// size is not chained: it bounds what is decoded, and must then match.
	b := bytes.NewBuffer(make([]byte, 0, max(0, min(size, 64<<20))))
	if _, err := io.Copy(b, io.LimitReader(r, max(size, 0)+1)); err != nil {
		return "", nil, fmt.Errorf("plan %s in %s was altered: its bytes do not decode (%v); run `backfill verify`", pc.fingerprint, s.path, err)
	}
	pc.sha = SHA256Hex(b.Bytes())
	if pc.hash(match[0].ID, prev) != hash || int64(b.Len()) != size {
		return "", nil, fmt.Errorf("plan %s in %s was altered: its bytes do not match its hash; run `backfill verify`", pc.fingerprint, s.path)
	}
	return pc.fingerprint, b.Bytes(), nil
}

func (s *Store) verifyPlans(ctx context.Context, r *VerifyReport) error {
	if !s.hasTable("plans") {
		return nil
	}
	return s.verifyChain(ctx, r, "plans", "SELECT id, fingerprint, author, created_at, bytes, "+s.planCols9()+", signature, prev_hash, hash FROM plans ORDER BY id",
		func(sc scanner) (chainRow, error) {
			var id, size int64
			var pc planCols
			var stored []byte
			var encoding, prev, hash string
			if err := sc.Scan(&id, &pc.fingerprint, &pc.author, &pc.createdAt, &stored, &encoding, &size, &pc.signature, &prev, &hash); err != nil {
				return chainRow{}, err
			}
			sha, n, head, err := planDigestHead(stored, encoding)
			switch {
			case err != nil:
				r.problem("plan %d (%s): %v", id, pc.fingerprint, err)
			case n != size:
				r.problem("plan %d (%s): its size says %d bytes, it holds %d", id, pc.fingerprint, size, n)
			default:
				// The chain of plans is anchored nowhere, so whoever writes
				// the store can hash it again; the bytes still name their
				// plan. (Bytes that are no plan at all never load as one.)
				if fp := headFingerprint(head); fp != "" && fp != pc.fingerprint {
					r.problem("plan %d (%s): its bytes are another plan's, %q", id, pc.fingerprint, fp)
				}
			}
			pc.sha = sha
			r.Plans++
			return chainRow{id, prev, hash, pc.hash(id, prev), named("plan %d (%s)", id, pc.fingerprint)}, nil
		})
}
