package evidence

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Audit is one run of `backfill audit` as the store keeps it (schema
// version 7 on): when it ran, how it ended, its counts, and per tenant the
// set of workspaces with an empty template it saw, so that the next audit can say
// which appeared since.
type Audit struct {
	ID      int64
	At      time.Time // when it started
	EndedAt time.Time
	// Reason is how it ended, in snapshot's words: complete, gone,
	// tenants-failed, interrupted or incomplete.
	Reason         string
	MaxEvidenceAge time.Duration // 0: not set; stored in whole seconds
	TenantsFailed  int
	AuditCounts    // totals over its tenants
	Tenants        []AuditTenant
	PrevHash       string
	Hash           string
}

// AuditCounts are an audit's counts of workspaces with an empty template.
type AuditCounts struct {
	TemplateEmpty   int `json:"template_empty"`
	WithEvidence    int `json:"with_evidence"`
	WithoutEvidence int `json:"without_evidence"`
	Appeared        int `json:"appeared"` // not in the set of the last audit that listed the tenant
	Captured        int `json:"captured"` // first evidence captured by this audit
}

// Audit tenant outcomes.
const (
	AuditListed      = "listed"
	AuditStopped     = "stopped" // listed, then stopped (a misconfigured collector, or rate limited too long)
	AuditUnreachable = "unreachable"
	AuditNotListed   = "not-listed" // the audit was interrupted before listing it
	// AuditLeft: in the audit before, not in the inventory now. Named once,
	// by the first audit that misses it, so that a tenant dropped from the
	// inventory (and its workspaces without evidence) never leaves the
	// audit without a word.
	AuditLeft = "left-inventory"
	// AuditDatabaseChanged: listed, from another database than the one
	// the audit before knew for it (its DSN now reaches another database,
	// or the database was restored or re-created). Its workspaces are
	// counted as listed; it fails this audit once, as AuditLeft does.
	AuditDatabaseChanged = "database-changed"
)

// AuditTenant is one tenant as an audit saw it. It is stored as JSON in
// the audit's detail column, which the chain hash covers as stored.
type AuditTenant struct {
	Tenant  string `json:"tenant"`
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	// Database is the identity of the database the tenant was listed from
	// (tenantdb.Database.Ident) or, when it was not listed, the last one an
	// audit knew, so that each audit compares with the one before alone.
	// Empty in audits made before it was recorded.
	Database string `json:"database,omitempty"`
	AuditCounts
	Recaptured int `json:"recaptured"` // evidence older than the limit, captured again
	Stale      int `json:"stale"`      // evidence older than the limit that could not be captured again
	// Oldest and newest of its workspaces' latest evidence; nil without any.
	OldestEvidence *time.Time `json:"oldest_evidence,omitempty"`
	NewestEvidence *time.Time `json:"newest_evidence,omitempty"`
	// Seen is the sha256 of the audit set of the template = '' workspace
	// ids listed; "" when the tenant was not listed. A listed tenant with
	// none has the empty set's.
	Seen string `json:"seen,omitempty"`
	// SeenIDs, when not nil, is the set to store under Seen on append.
	SeenIDs []string `json:"-"`
}

// Listed reports whether the audit listed the tenant's workspaces, so its
// Seen set is complete.
func (t *AuditTenant) Listed() bool {
	return t.Outcome == AuditListed || t.Outcome == AuditStopped || t.Outcome == AuditDatabaseChanged
}

// Audit set encodings: the first byte of a set's stored bytes.
const (
	// setUUIDs: 16 bytes per id, sorted; every id a canonical lower-case
	// UUID, as PostgreSQL prints a uuid column. Random UUIDs do not
	// compress, so this is as small as they get.
	setUUIDs = 1
	// setText: each id length-prefixed (uvarint), sorted; for ids of any
	// other form.
	setText = 2
)

// encodeSet is the canonical bytes of a set of ids (sorted, each once) and
// how many it holds.
func encodeSet(ids []string) ([]byte, int) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	uuids := true
	for _, id := range ids {
		uuids = uuids && canonicalUUID(id)
	}
	if uuids {
		b := make([]byte, 1, 1+16*len(ids))
		b[0] = setUUIDs
		for _, id := range ids {
			raw, _ := hex.DecodeString(id[0:8] + id[9:13] + id[14:18] + id[19:23] + id[24:36])
			b = append(b, raw...)
		}
		return b, len(ids)
	}
	b := []byte{setText}
	for _, id := range ids {
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
	}
	return b, len(ids)
}

// decodeSet reads bytes encodeSet made.
func decodeSet(b []byte) ([]string, error) {
	if len(b) == 0 {
		return nil, errors.New("empty")
	}
	var ids []string
	switch body := b[1:]; b[0] {
	case setUUIDs:
		if len(body)%16 != 0 {
			return nil, fmt.Errorf("%d bytes of UUIDs is not a whole number of them", len(body))
		}
		for i := 0; i < len(body); i += 16 {
			h := hex.EncodeToString(body[i : i+16])
			ids = append(ids, h[0:8]+"-"+h[8:12]+"-"+h[12:16]+"-"+h[16:20]+"-"+h[20:32])
		}
	case setText:
		for len(body) > 0 {
			n, k := binary.Uvarint(body)
			if k <= 0 || uint64(len(body)-k) < n {
				return nil, errors.New("truncated")
			}
			ids = append(ids, string(body[k:k+int(n)]))
			body = body[k+int(n):]
		}
	default:
		return nil, fmt.Errorf("unknown encoding %d", b[0])
	}
	return ids, nil
}

func canonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range []byte(s) {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		default:
			return false
		}
	}
	return true
}

type auditCols struct {
	at, endedAt, reason                                                   string
	maxAge, tenants, failed, empty, withEv, withoutEv, appeared, captured int64
	detail                                                                string
}

func (a auditCols) hash(id int64, prev string) string {
	return chainHash("audits", prev, id, a.at, a.endedAt, a.reason, a.maxAge, a.tenants, a.failed,
		a.empty, a.withEv, a.withoutEv, a.appeared, a.captured, a.detail)
}

func (a *Audit) table() string { return "audits" }

func (a *Audit) insert(ctx context.Context, tx *txn, id int64, prev string) (string, error) {
	tenants := slices.Clone(a.Tenants)
	if tenants == nil {
		tenants = []AuditTenant{}
	}
	for i := range tenants {
		t := &tenants[i]
		if t.SeenIDs == nil {
			continue
		}
		b, count := encodeSet(t.SeenIDs)
		t.Seen = SHA256Hex(b)
		// Stored once per distinct set: an unchanged tenant's next audit
		// cites this row and adds nothing.
		n, err := tx.exec(ctx, `INSERT INTO audit_sets (sha256, count, ids) VALUES (?, ?, ?) ON CONFLICT (sha256) DO NOTHING`, t.Seen, count, b)
		if err != nil {
			return "", err
		}
		if n == 0 {
			var have int64
			if err := tx.queryRow(ctx, "SELECT count(*) FROM audit_sets WHERE sha256 = ?", t.Seen).Scan(&have); err != nil {
				return "", err
			}
			n = have
		}
		if err := checkInserted("audit_sets", n); err != nil {
			return "", err
		}
	}
	detail, err := json.Marshal(tenants)
	if err != nil {
		return "", err
	}
	ac := auditCols{
		at: formatTime(a.At), endedAt: formatTime(a.EndedAt), reason: a.Reason,
		maxAge: int64(a.MaxEvidenceAge / time.Second), tenants: int64(len(a.Tenants)), failed: int64(a.TenantsFailed),
		empty: int64(a.TemplateEmpty), withEv: int64(a.WithEvidence), withoutEv: int64(a.WithoutEvidence),
		appeared: int64(a.Appeared), captured: int64(a.Captured), detail: string(detail),
	}
	h := ac.hash(id, prev)
	err = tx.insert(ctx, "audits", `INSERT INTO audits (id, at, ended_at, reason, max_evidence_age, tenants, tenants_failed,
  template_empty, with_evidence, without_evidence, appeared, captured, detail, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		id, ac.at, ac.endedAt, ac.reason, ac.maxAge, ac.tenants, ac.failed, ac.empty, ac.withEv, ac.withoutEv,
		ac.appeared, ac.captured, ac.detail, prev, h)
	if err != nil {
		return "", err
	}
	a.Tenants = tenants
	a.ID, a.PrevHash, a.Hash = id, prev, h
	return h, nil
}

const auditSelect = `SELECT id, at, ended_at, reason, max_evidence_age, tenants, tenants_failed, template_empty,
  with_evidence, without_evidence, appeared, captured, detail, prev_hash, hash FROM audits`

func scanAudit(sc scanner) (*Audit, auditCols, error) {
	var a Audit
	var ac auditCols
	err := sc.Scan(&a.ID, &ac.at, &ac.endedAt, &ac.reason, &ac.maxAge, &ac.tenants, &ac.failed, &ac.empty,
		&ac.withEv, &ac.withoutEv, &ac.appeared, &ac.captured, &ac.detail, &a.PrevHash, &a.Hash)
	if err != nil {
		return nil, ac, err
	}
	a.At, a.EndedAt, a.Reason = parseTime(ac.at), parseTime(ac.endedAt), ac.reason
	a.MaxEvidenceAge = time.Duration(ac.maxAge) * time.Second
	a.TenantsFailed = int(ac.failed)
	a.AuditCounts = AuditCounts{TemplateEmpty: int(ac.empty), WithEvidence: int(ac.withEv), WithoutEvidence: int(ac.withoutEv),
		Appeared: int(ac.appeared), Captured: int(ac.captured)}
	// Stored detail that does not decode (only possible by hand) leaves no
	// tenants; its hash still covers the stored text, so verify sees edits.
	_ = json.Unmarshal([]byte(ac.detail), &a.Tenants)
	return &a, ac, nil
}

// Audits returns the store's latest n audits (every one when n <= 0),
// newest first, and how many it holds. A store older than version 7 has
// none.
func (s *Store) Audits(ctx context.Context, n int) ([]*Audit, int, error) {
	if !s.hasTable("audits") {
		return nil, 0, nil
	}
	var total int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM audits").Scan(&total); err != nil {
		return nil, 0, err
	}
	q := auditSelect + " ORDER BY id DESC"
	if n > 0 {
		q += fmt.Sprintf(" LIMIT %d", n)
	}
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []*Audit
	for rows.Next() {
		a, _, err := scanAudit(rows)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, a)
	}
	return out, total, rows.Err()
}

// Seen is the set of workspaces with an empty template an earlier audit listed in
// one tenant.
type Seen struct {
	AuditID int64
	At      time.Time
	IDs     map[string]bool
	// Database is the database that audit listed the tenant from
	// (AuditTenant.Database); empty in audits made before it was recorded.
	Database string
}

// LastSeen returns, for each of tenants, the set of the latest audit that
// listed it (an audit that could not reach a tenant says nothing of it, so
// the one before counts). A tenant no audit has listed is absent. Sets are
// checked against their hash as they are read.
func (s *Store) LastSeen(ctx context.Context, tenants []string) (map[string]*Seen, error) {
	out := map[string]*Seen{}
	if !s.hasTable("audits") || len(tenants) == 0 {
		return out, nil
	}
	want := map[string]bool{}
	for _, t := range tenants {
		want[t] = true
	}
	rows, err := s.db.QueryContext(ctx, auditSelect+" ORDER BY id DESC")
	if err != nil {
		return nil, err
	}
	refs := map[string]*Seen{}
	shas := map[string]string{}
	for rows.Next() && len(refs) < len(want) {
		a, _, err := scanAudit(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		for _, t := range a.Tenants {
			if want[t.Tenant] && refs[t.Tenant] == nil && t.Listed() && t.Seen != "" {
				refs[t.Tenant] = &Seen{AuditID: a.ID, At: a.At, Database: t.Database}
				shas[t.Tenant] = t.Seen
			}
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return nil, err
	}
	for t, ref := range refs {
		ids, err := s.auditSet(ctx, shas[t])
		if err != nil {
			return nil, fmt.Errorf("audit %d, tenant %s: %w", ref.AuditID, t, err)
		}
		ref.IDs = make(map[string]bool, len(ids))
		for _, id := range ids {
			ref.IDs[id] = true
		}
		out[t] = ref
	}
	return out, nil
}

// auditSet reads one stored set, checked against its hash: a set edited
// behind the store's back is never used to say what appeared.
func (s *Store) auditSet(ctx context.Context, sha string) ([]string, error) {
	var b []byte
	err := s.db.QueryRowContext(ctx, "SELECT ids FROM audit_sets WHERE sha256 = ?", sha).Scan(&b)
	if err == sql.ErrNoRows {
		return nil, fmt.Errorf("audit set %s is not in the evidence store %s; run `backfill verify`", sha, s.path)
	}
	if err != nil {
		return nil, err
	}
	if SHA256Hex(b) != sha {
		return nil, fmt.Errorf("audit set %s in %s was altered: its bytes do not match its hash; run `backfill verify`", sha, s.path)
	}
	ids, err := decodeSet(b)
	if err != nil {
		return nil, fmt.Errorf("audit set %s in %s: %w", sha, s.path, err)
	}
	return ids, nil
}

// verifyAudits re-hashes every audit set and walks the audits' chain;
// every set an audit cites must be stored, and every set stored must be
// cited (a set no audit cites means the audit that stored it was deleted,
// even from the end of the chain).
func (s *Store) verifyAudits(ctx context.Context, r *VerifyReport) error {
	if !s.hasTable("audits") {
		return nil
	}
	stored := map[string]bool{}
	rows, err := s.db.QueryContext(ctx, "SELECT sha256, count, ids FROM audit_sets")
	if err != nil {
		return err
	}
	for rows.Next() {
		var sha string
		var count int64
		var b []byte
		if err := rows.Scan(&sha, &count, &b); err != nil {
			rows.Close()
			return err
		}
		stored[sha] = true
		ids, derr := decodeSet(b)
		switch got := SHA256Hex(b); {
		case got != sha:
			r.problem("audit set stored under sha256 %s now hashes to %s", sha, got)
		case derr != nil:
			r.problem("audit set %s does not decode: %v", sha, derr)
		case int64(len(ids)) != count:
			r.problem("audit set %s holds %d ids, recorded as %d", sha, len(ids), count)
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return err
	}
	cited := map[string]bool{}
	err = s.verifyChain(ctx, r, "audits", auditSelect+" ORDER BY id", func(sc scanner) (chainRow, error) {
		a, ac, err := scanAudit(sc)
		if err != nil {
			return chainRow{}, err
		}
		r.Audits++
		name := fmt.Sprintf("audit %d (%s)", a.ID, ac.at)
		var tenants []AuditTenant
		if err := json.Unmarshal([]byte(ac.detail), &tenants); err != nil {
			r.problem("%s: its detail does not decode: %v", name, err)
		}
		for _, t := range tenants {
			if t.Seen == "" {
				continue
			}
			cited[t.Seen] = true
			if !stored[t.Seen] {
				r.problem("%s: tenant %s's set %s is missing", name, t.Tenant, t.Seen)
			}
		}
		return chainRow{a.ID, a.PrevHash, a.Hash, ac.hash(a.ID, a.PrevHash), func() string { return name }}, nil
	})
	if err != nil {
		return err
	}
	r.orphans(stored, cited, "audit set %s is cited by no audit: the audit that recorded it was deleted")
	return nil
}
