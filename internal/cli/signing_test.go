package cli

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"backfill/apply"
	"backfill/apply/plan"
	"backfill/internal/evidence"
	"backfill/internal/sshsig"
)

// sshKey makes an ed25519 key pair with the real ssh-keygen and returns the
// private key's path and the public key's line.
func sshKey(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	kg, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not found")
	}
	path := filepath.Join(dir, name)
	if out, err := exec.Command(kg, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return path, strings.TrimSpace(string(pub))
}

// TestSignedApprovals: with --allowed-signers, --execute needs an approval
// signed by a listed principal other than the author. Approval rows that
// whoever can write the store could add (unsigned, signed by an unlisted
// key, signed by the author's key, or inserted with raw SQL) do not count,
// and nothing is written until a real signed approval exists; the
// signature verifies with ssh-keygen itself.
func TestSignedApprovals(t *testing.T) {
	f := newPlanFixture(t)
	keys := t.TempDir()
	bobKey, bobPub := sshKey(t, keys, "bob")
	aliceKey, alicePub := sshKey(t, keys, "alice")
	if res := f.plan(t, "--sign-key", aliceKey); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	malloryKey, _ := sshKey(t, keys, "mallory")
	signers := filepath.Join(keys, "allowed_signers")
	writeFile(t, signers, "bob namespaces=\"backfill-approval\" "+bobPub+"\nalice "+alicePub+"\n")
	p, err := plan.LoadPlan("plan.json")
	if err != nil {
		t.Fatal(err)
	}
	execute := func() result {
		return f.apply(t, "--execute", "--allowed-signers", signers)
	}
	refused := func(why string) {
		t.Helper()
		res := execute()
		if res.code != 1 || !strings.Contains(res.stderr, "no approval signed by an allowed signer") || !strings.Contains(res.stderr, why) {
			t.Fatalf("want a refusal naming %q: exit %d\n%s%s", why, res.code, res.stdout, res.stderr)
		}
		for tenant, names := range agreed {
			for _, n := range names {
				if s := f.row(t, tenant, n); s.writes != 0 {
					t.Fatalf("%s written: %+v", n, s)
				}
			}
		}
	}

	// An unsigned approval by bob, and rows forged through the store's own
	// API: signed by an unlisted key, and by the author's own key.
	if res := runAt(t, nil, "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob"); res.code != 0 || !strings.Contains(res.stdout, "unsigned") {
		t.Fatalf("approve: %d %s%s", res.code, res.stdout, res.stderr)
	}
	refused("is not signed")
	// oldStyle signs the bare fingerprint, as approvals did before they
	// recorded what they checked.
	forgeSigned := func(by, keyPath string, oldStyle bool) {
		key, _ := os.ReadFile(keyPath)
		a := &evidence.Approval{Fingerprint: p.Fingerprint, By: by, PlanAuthor: p.Author, At: time.Now(), Writes: 3,
			RollupSHA256:         plan.RollupDigest(p.Rollup()),
			CheckedCatalogSHA256: p.Inputs.Catalog.SHA256, CheckedCPSHA256: p.Inputs.CP.SHA256}
		msg := apply.ApprovalMessage(a)
		if oldStyle {
			msg = []byte(p.Fingerprint)
		}
		sig, err := sshsig.Sign(key, apply.SignatureNamespace, msg)
		if err != nil {
			t.Fatal(err)
		}
		a.Signature = string(sig)
		store, err := evidence.OpenExisting(context.Background(), "evidence.db")
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		if err := store.Append(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	forge := func(by, keyPath string) { forgeSigned(by, keyPath, false) }
	forge("bob", malloryKey)
	refused("is not in")
	forge("alice", aliceKey)
	refused("signed by a key of the plan's author")
	forge("bob", aliceKey)
	refused("signed by a key of the plan's author")
	// bob's real signature of the bare fingerprint (an approval from before
	// approvals recorded what they checked), carried by a store writer to a
	// row that claims the plan's inputs were checked: it does not sign that.
	forgeSigned("bob", bobKey, true)
	refused("signature does not match the message")

	// A row inserted with raw SQL breaks the chain: refused before any
	// signature is even looked at.
	db, err := sql.Open("sqlite", "evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	bobSig, _ := os.ReadFile(bobKey)
	sig, _ := sshsig.Sign(bobSig, "file", []byte(p.Fingerprint))
	_, err = db.Exec(`INSERT INTO approvals (fingerprint, approved_by, plan_author, at, prev_hash, hash, writes, rollup_sha256, signature)
  VALUES (?, 'bob', 'alice', '2026-11-27T15:00:00Z', 'x', 'y', 3, '', ?)`, p.Fingerprint, string(sig))
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res := execute(); res.code != 1 || !strings.Contains(res.stderr, "refused") {
		t.Fatalf("raw SQL approval: %d %s%s", res.code, res.stdout, res.stderr)
	}
	for tenant, names := range agreed {
		for _, n := range names {
			if s := f.row(t, tenant, n); s.writes != 0 {
				t.Fatalf("%s written: %+v", n, s)
			}
		}
	}
}

// TestSignedApprovalApplies: bob's signed approval verifies with ssh-keygen
// and lets apply --execute write.
// signedAndApproved plans f signed by alice and approves it signed by bob,
// and returns the allowed_signers file naming both and its directory.
func signedAndApproved(t *testing.T, f *planFixture) (signers, keys string) {
	t.Helper()
	keys = t.TempDir()
	bobKey, bobPub := sshKey(t, keys, "bob")
	aliceKey, alicePub := sshKey(t, keys, "alice")
	if res := f.plan(t, "--sign-key", aliceKey); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	signers = filepath.Join(keys, "allowed_signers")
	writeFile(t, signers, "bob "+bobPub+"\nalice "+alicePub+"\n")
	if res := runAt(t, nil, "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob", "--sign-key", bobKey); res.code != 0 || !strings.Contains(res.stdout, "signed;") {
		t.Fatalf("approve --sign-key: %d %s%s", res.code, res.stdout, res.stderr)
	}
	return signers, keys
}

func TestSignedApprovalApplies(t *testing.T) {
	f := newPlanFixture(t)
	signers, keys := signedAndApproved(t, f)
	p, _ := plan.LoadPlan("plan.json")
	store, err := evidence.OpenExisting(context.Background(), "evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	as, err := store.Approvals(context.Background(), p.Fingerprint)
	store.Close()
	if err != nil || len(as) != 1 || as[0].Writes != 3 || as[0].RollupSHA256 != plan.RollupDigest(p.Rollup()) {
		t.Fatalf("approval: %+v %v", as, err)
	}
	// ssh-keygen agrees the signature is bob's, over the fingerprint and
	// the digests of what the approval checked.
	sigPath := filepath.Join(keys, "approval.sig")
	writeFile(t, sigPath, as[0].Signature)
	cmd := exec.Command("ssh-keygen", "-Y", "verify", "-f", signers, "-I", "bob", "-n", apply.SignatureNamespace, "-s", sigPath)
	cmd.Stdin = strings.NewReader("backfill-approval-v2\nfingerprint " + p.Fingerprint + "\ncatalog " + p.Inputs.Catalog.SHA256 + "\ncp " + p.Inputs.CP.SHA256 + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -Y verify: %v\n%s", err, out)
	}
	if show := runAt(t, nil, "show", "plan.json"); !strings.Contains(show.stdout, "approved by bob") || !strings.Contains(show.stdout, "(signed)") {
		t.Fatalf("show: %s", show.stdout)
	}
	if res := f.apply(t, "--execute", "--allowed-signers", signers); res.code != 0 || !strings.Contains(res.stdout, "applied 3") {
		t.Fatalf("apply: %d %s%s", res.code, res.stdout, res.stderr)
	}
}

// TestApproverNames: --by takes only a plain identifier, and author and
// approver compare after NFKC and case folding.
func TestApproverNames(t *testing.T) {
	f := newPlanFixture(t)
	if res := f.plan(t); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	for _, by := range []string{"b\u043eb", "bob\x1b[2J", "bob smith", "ｂｏｂ", ""} {
		res := runAt(t, nil, "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", by)
		if res.code == 0 || strings.Contains(res.stderr, "\x1b") {
			t.Errorf("--by %q: exit %d\n%s", by, res.code, res.stderr)
		}
	}
	for _, by := range []string{"ALICE", "Alice"} {
		if res := runAt(t, nil, "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", by); res.code != 1 || !strings.Contains(res.stderr, "author") {
			t.Errorf("--by %s: exit %d %s", by, res.code, res.stderr)
		}
	}
	if res := runAt(t, nil, "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob.smith@example.com"); res.code != 0 {
		t.Errorf("plain name refused: %s", res.stderr)
	}
}

// Found by review: rollback had no approval gate, so a plan nobody
// approved, with one journal row saying it wrote a value a person set
// (a writer of the store can append both), cleared that value. Under
// --allowed-signers, rollback --execute now needs what apply needs: the
// author's signature and a signed approval. The signed plan's own undo
// still runs, and without --allowed-signers the run says signatures were
// not checked.
func TestSignedRollbackRefusesAnUnapprovedPlan(t *testing.T) {
	f := newPlanFixture(t)
	signers, _ := signedAndApproved(t, f)
	if res := f.apply(t, "--execute", "--allowed-signers", signers); res.code != 0 {
		t.Fatalf("apply: %d %s%s", res.code, res.stdout, res.stderr)
	}

	// The forgery: set-matching (a value a person set) as an agree item of
	// a re-sealed plan, and a journal row saying apply wrote it.
	reseal(t, "plan.json", "forged.json", func(p *plan.Plan) {
		it := itemNamed(p, "set-matching")
		it.Verdict, it.DBTemplate, it.Drift = plan.Agree, "", false
		it.Action = &plan.Action{SetTemplate: "seo-agent"}
		it.Evidence.Template = "seo-agent"
	})
	forged, err := plan.LoadPlan("forged.json")
	if err != nil {
		t.Fatal(err)
	}
	store, err := evidence.OpenExisting(context.Background(), "evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Append(context.Background(), &evidence.Entry{Fingerprint: forged.Fingerprint, Operation: evidence.OpApply, Operator: "alice",
		Tenant: "acme", WorkspaceID: f.ids["set-matching"], Before: "", After: "seo-agent", Outcome: evidence.Applied, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	store.Close()
	res := runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "forged.json", "--execute", "--allowed-signers", signers)
	if res.code != 1 || !strings.Contains(res.stderr, "not approved") {
		t.Errorf("rollback of the forged plan under signers: %d %s%s", res.code, res.stdout, res.stderr)
	}
	if s := f.row(t, "acme", "set-matching"); s.template != "seo-agent" {
		t.Errorf("acme/set-matching cleared: %+v", s)
	}

	res = runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute", "--allowed-signers", signers)
	if res.code != 0 || !strings.Contains(res.stdout, "rolled-back 3") {
		t.Fatalf("rollback of the signed plan: %d %s%s", res.code, res.stdout, res.stderr)
	}
	if strings.Contains(res.stderr, "signatures are not checked") {
		t.Errorf("warned with --allowed-signers given: %s", res.stderr)
	}
	res = runAt(t, f.env, "apply", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute")
	if !strings.Contains(res.stderr, "no --allowed-signers: signatures are not checked") {
		t.Errorf("no warning without --allowed-signers: %s", res.stderr)
	}
}
