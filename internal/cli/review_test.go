package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"backfill/apply/plan"
	"backfill/internal/evidence"
)

// TestForgedRuntimeIsNeverWritten: a plan resealed with a runtime-mismatch
// item's runtime edited to match passes re-derivation (which trusts the row
// the plan recorded), but the compare-and-swap requires the runtime and
// kind reconciliation used, so nothing is written.
func TestForgedRuntimeIsNeverWritten(t *testing.T) {
	f := newPlanFixture(t)
	if res := f.plan(t); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	reseal(t, "plan.json", "forged.json", func(p *plan.Plan) {
		it := itemNamed(p, "hermes-box")
		if it.Verdict != plan.RuntimeMismatch {
			t.Fatalf("fixture: %s", it.Verdict)
		}
		it.Runtime = "claude-code"
		it.Verdict, it.Reason, it.Action = plan.Agree, "", &plan.Action{SetTemplate: "seo-agent"}
	})
	if res := runAt(t, nil, "approve", "forged.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob", "--cp", "cp.csv"); res.code != 0 {
		t.Fatalf("approve refused (good): %d %s", res.code, res.stderr)
	}
	res := runAt(t, f.env, "apply", "--inventory", "inventory.yaml", "--plan", "forged.json", "--cp", "cp.csv", "--execute")
	if s := f.row(t, "acme", "hermes-box"); s.template != "" {
		t.Fatalf("a runtime-mismatch workspace (runtime hermes) was written %q\n%s", s.template, res.stdout)
	}
}

// TestSelfApprovalUnderAnotherAuthorNameIsRefused: under --allowed-signers
// the author must sign the plan, so one person cannot declare another
// author and approve their own plan.
func TestSelfApprovalUnderAnotherAuthorNameIsRefused(t *testing.T) {
	f := newPlanFixture(t)
	if res := f.plan(t, "--author", "carol"); res.code != 0 { // USER=alice runs it
		t.Fatalf("plan: %s", res.stderr)
	}
	keys := t.TempDir()
	aliceKey, alicePub := sshKey(t, keys, "alice")
	_, bobPub := sshKey(t, keys, "bob")
	signers := filepath.Join(keys, "allowed_signers")
	writeFile(t, signers, "alice "+alicePub+"\nbob "+bobPub+"\n")
	if res := runAt(t, nil, "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "alice", "--sign-key", aliceKey); res.code != 0 {
		t.Fatalf("approve: %s", res.stderr)
	}
	res := f.apply(t, "--execute", "--allowed-signers", signers)
	if res.code != 1 || !strings.Contains(res.stderr, "carries no signature of its author carol") {
		t.Fatalf("alice's plan, approved only by alice's key: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	// Alice signing a plan as dave does not make her dave.
	if res := f.plan(t, "--author", "dave", "--sign-key", aliceKey, "--out", "plan2.json"); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	if res := runAt(t, nil, "approve", "plan2.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "alice", "--sign-key", aliceKey); res.code != 0 {
		t.Fatalf("approve: %s", res.stderr)
	}
	res = runAt(t, f.env, "apply", "--inventory", "inventory.yaml", "--plan", "plan2.json", "--execute", "--allowed-signers", signers)
	if res.code != 1 || !strings.Contains(res.stderr, "names author dave but is signed by alice") {
		t.Fatalf("plan signed by alice as dave: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	// One key listed under two names is one person.
	writeFile(t, signers, "alice "+alicePub+"\nbob "+bobPub+"\nmallory "+alicePub+"\n")
	if res := runAt(t, nil, "approve", "plan3.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "x"); res.code == 0 {
		t.Fatal("approve of a missing plan succeeded")
	}
	f.env["USER"] = "alice"
	if res := f.plan(t, "--sign-key", aliceKey, "--out", "plan3.json"); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	if res := runAt(t, nil, "approve", "plan3.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "mallory", "--sign-key", aliceKey); res.code != 0 {
		t.Fatalf("approve: %s", res.stderr)
	}
	res = runAt(t, f.env, "apply", "--inventory", "inventory.yaml", "--plan", "plan3.json", "--execute", "--allowed-signers", signers)
	if res.code != 1 || !strings.Contains(res.stderr, "signed by a key of the plan's author") {
		t.Fatalf("approval by the author's key under another name: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	for tenant, names := range agreed {
		for _, n := range names {
			if s := f.row(t, tenant, n); s.writes != 0 {
				t.Fatalf("%s written: %+v", n, s)
			}
		}
	}
}

// TestOlderChainHeadCannotHideUnstableEvidence: a plan that cites an older
// chain head, hiding a later capture naming another custom template, is
// refused: captures recorded since the plan are reconciled too.
func TestOlderChainHeadCannotHideUnstableEvidence(t *testing.T) {
	f := newPlanFixture(t)
	if res := f.plan(t); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	store, err := evidence.OpenExisting(context.Background(), "evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	var first *evidence.Capture
	n := 0
	store.Captures(context.Background(), func(c *evidence.Capture) error {
		if c.WorkspaceID == f.ids["flip-flop"] && c.Outcome == evidence.Captured {
			n++
			if first == nil {
				cc := *c
				first = &cc
			}
		}
		return nil
	})
	store.Close()
	if n != 2 {
		t.Fatalf("fixture: %d captures", n)
	}
	reseal(t, "plan.json", "forged.json", func(p *plan.Plan) {
		it := *itemNamed(p, "flip-flop")
		it.Verdict, it.Reason, it.Action = plan.Agree, "", &plan.Action{SetTemplate: "seo-agent"}
		it.Evidence.Captures = 1
		p.Items = []plan.Item{it}
		p.Inputs.Evidence.ChainHead = first.Hash
	})
	if res := runAt(t, nil, "approve", "forged.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob", "--cp", "cp.csv"); res.code != 1 || !strings.Contains(res.stderr, "evidence recorded since the plan makes it unstable-evidence") {
		t.Fatalf("approve: %d %s", res.code, res.stderr)
	}
	approveRaw(t, "forged.json")
	res := runAt(t, f.env, "apply", "--inventory", "inventory.yaml", "--plan", "forged.json", "--cp", "cp.csv", "--execute")
	if res.code != 1 || !strings.Contains(res.stderr, "evidence recorded since the plan") {
		t.Fatalf("apply: %d %s%s", res.code, res.stdout, res.stderr)
	}
	if s := f.row(t, "acme", "flip-flop"); s.template != "" {
		t.Fatalf("an unstable-evidence workspace was written %q\n%s", s.template, res.stdout)
	}
}

// TestSearchPathCannotRedirectWrites: a DSN whose search_path points at a
// shadow copy of the table in another schema changes nothing: every query
// names public.workspaces, and the session's search_path is fixed.
func TestSearchPathCannotRedirectWrites(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	dsn := f.dsns["acme"]
	execSQL(t, dsn, `CREATE SCHEMA shadow`)
	execSQL(t, dsn, `CREATE TABLE shadow.workspaces (LIKE public.workspaces INCLUDING ALL)`)
	execSQL(t, dsn, `INSERT INTO shadow.workspaces SELECT * FROM public.workspaces`)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	f.env["ACME_DSN"] = dsn + sep + "search_path=shadow"
	res := f.apply(t, "--execute")
	if res.code != 0 || !strings.Contains(res.stdout, "applied 3") {
		t.Fatalf("apply: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "seo-agent" {
		t.Fatalf("public.workspaces not written: %+v", s)
	}
	var n int
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM shadow.workspaces WHERE template <> ''`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("shadow.workspaces: %d rows with a template (the fixture's 2 already-set), %v", n, err)
	}
}

// TestApplyKeepsThePlanItExecutes: a plan made against another copy of the
// store is kept by apply --execute in the store it journals to, so
// rollback by fingerprint works after the file is gone.
func TestApplyKeepsThePlanItExecutes(t *testing.T) {
	f := newPlanFixture(t)
	t.Chdir(f.dir)
	b, _ := os.ReadFile("evidence.db")
	os.WriteFile("bastion.db", b, 0o600) // the store as copied to the apply host
	if res := f.plan(t); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	p, err := plan.LoadPlan("plan.json")
	if err != nil {
		t.Fatal(err)
	}
	if res := runAt(t, nil, "--evidence", "bastion.db", "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob"); res.code != 0 {
		t.Fatalf("approve: %s", res.stderr)
	}
	if res := runAt(t, f.env, "--evidence", "bastion.db", "apply", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute"); res.code != 0 {
		t.Fatalf("apply: %s", res.stderr)
	}
	os.Remove("plan.json")
	prefix := strings.TrimPrefix(p.Fingerprint, "sha256:")[:12]
	res := runAt(t, f.env, "--evidence", "bastion.db", "rollback", "--inventory", "inventory.yaml", "--plan", prefix, "--execute")
	if res.code != 0 {
		t.Fatalf("the plan was applied through bastion.db but its undo handle is lost with its file: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}

// TestRefusalsCarryNoControlCharacters: a refusal naming a workspace whose
// name holds escape sequences cannot repaint itself as a success line.
func TestRefusalsCarryNoControlCharacters(t *testing.T) {
	f := newPlanFixture(t)
	if res := f.plan(t); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	reseal(t, "plan.json", "forged.json", func(p *plan.Plan) {
		it := itemNamed(p, "seo-1")
		it.WorkspaceName = "seo-1\r\x1b[2K\x1b[32mapproved, 3 writes\x1b[0m"
		it.Action.SetTemplate, it.Evidence.Template = "platform-agent", "platform-agent"
	})
	for _, args := range [][]string{
		{"approve", "forged.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob"},
		{"apply", "--inventory", "inventory.yaml", "--plan", "forged.json"},
	} {
		res := runAt(t, f.env, args...)
		if res.code == 0 {
			t.Fatalf("%v accepted", args)
		}
		if strings.ContainsAny(res.stderr, "\x1b\r") {
			t.Errorf("%s refusal carries raw control characters: %q", args[0], res.stderr)
		}
	}
}

// TestShadowSchemaAtPlanTimeWritesNothing: a plan made through a DSN whose
// search_path pointed at a shadow table still reads public.workspaces, so
// the hermes row stays a runtime mismatch and is never written.
func TestShadowSchemaAtPlanTimeWritesNothing(t *testing.T) {
	f := newPlanFixture(t)
	dsn := f.dsns["acme"]
	execSQL(t, dsn, `CREATE SCHEMA shadow`)
	execSQL(t, dsn, `CREATE TABLE shadow.workspaces (LIKE public.workspaces INCLUDING ALL)`)
	execSQL(t, dsn, `INSERT INTO shadow.workspaces SELECT * FROM public.workspaces`)
	execSQL(t, dsn, `UPDATE shadow.workspaces SET runtime = 'claude-code' WHERE name = 'hermes-box'`)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	f.env["ACME_DSN"] = dsn + sep + "search_path=shadow"
	if res := f.plan(t); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	if res := runAt(t, nil, "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob", "--cp", "cp.csv"); res.code != 0 {
		t.Fatalf("approve: %s", res.stderr)
	}
	f.env["ACME_DSN"] = dsn
	res := f.apply(t, "--execute", "--cp", "cp.csv")
	if s := f.row(t, "acme", "hermes-box"); s.template != "" {
		t.Fatalf("the real hermes workspace was written %q through a DSN the moved check accepted\n%s%s", s.template, res.stdout, res.stderr)
	}
}
