package apply

import (
	"context"
	"fmt"
	"strings"
	"time"

	"backfill/apply/plan"

	"backfill/internal/approver"
	"backfill/internal/catalog"
	"backfill/internal/cp"
	"backfill/internal/evidence"
	"backfill/internal/sshsig"
)

// SignatureNamespace is the SSHSIG namespace of approvals: a signature made
// for anything else (a git commit, a file, a plan) is never taken for one.
const SignatureNamespace = "backfill-approval"

// planSignatureNamespace is the SSHSIG namespace of an author's signature
// of the plan they made.
const planSignatureNamespace = "backfill-plan"

// SignPlan signs the plan's fingerprint as its author, with an unencrypted
// OpenSSH private key.
func SignPlan(key []byte, p *plan.Plan) (string, error) {
	sig, err := sshsig.Sign(key, planSignatureNamespace, []byte(p.Fingerprint))
	if err != nil {
		return "", err
	}
	return string(sig), nil
}

// ApproveOptions are the inputs of an approval.
type ApproveOptions struct {
	Plan    *plan.Plan
	Store   *evidence.Store
	Catalog *catalog.Catalog // the plan's catalog, to derive every write again
	CP      *cp.Records      // optional: the plan's CP records, to check its claims too
	By      string
	// AllowSelf lets the plan's author approve it.
	AllowSelf bool
	// SignKey, when set, is an unencrypted OpenSSH private key: the approval
	// carries an SSHSIG signature of the plan's fingerprint by it.
	SignKey []byte
	Now     func() time.Time
}

// Approve records, after every check a reviewer relies on, an approval of
// the plan's exact fingerprint: the approver's name is a plain identifier
// and not the author's (unless AllowSelf), the plan was made from this
// store, and every write is what reconciliation derives again. The
// approval names the number of writes and the digest of their rollup.
func Approve(ctx context.Context, o ApproveOptions) (*evidence.Approval, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := approver.CheckName(o.By); err != nil {
		return nil, &plan.Refusal{Reason: "--by: " + err.Error()}
	}
	if approver.Same(o.By, o.Plan.Author) && !o.AllowSelf {
		return nil, &plan.Refusal{Reason: fmt.Sprintf("%s is the plan's author; a second person must approve (or pass --allow-self-approval)", o.By)}
	}
	if head := o.Plan.Inputs.Evidence.ChainHead; head != "" {
		ok, err := o.Store.HasCaptureHash(ctx, head)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, &plan.Refusal{Reason: fmt.Sprintf("the plan was made from other evidence: its chain head %s is not in %s", head, o.Store.Path())}
		}
	}
	if err := plan.Rederive(ctx, o.Plan, o.Store, o.Catalog, o.CP); err != nil {
		return nil, err
	}
	rollup := o.Plan.Rollup()
	a := &evidence.Approval{Fingerprint: o.Plan.Fingerprint, By: o.By, PlanAuthor: o.Plan.Author, At: o.Now(),
		Writes: o.Plan.Writes(), RollupSHA256: plan.RollupDigest(rollup),
		// Rederive refused any but the plan's: these are the plan's digests,
		// recorded as what this approver checked.
		CheckedCatalogSHA256: o.Catalog.Digest(), CheckedCPSHA256: o.CP.Digest()}
	if o.SignKey != nil {
		sig, err := sshsig.Sign(o.SignKey, SignatureNamespace, ApprovalMessage(a))
		if err != nil {
			return nil, &plan.Refusal{Reason: "--sign-key: " + err.Error()}
		}
		a.Signature = string(sig)
	}
	if err := o.Store.Append(ctx, a); err != nil {
		return nil, fmt.Errorf("record approval: %w", err)
	}
	return a, nil
}

// checkApprovals is the approval gate of apply --execute. Any approval of
// the fingerprint counts without allowed signers, as before signatures
// existed. With them, whoever can write the store can insert approval rows
// and whoever can edit a plan can name any author, but neither can sign as
// someone else, so:
//
//   - the plan kept in the store must carry its author's signature, valid
//     for a listed principal who is the plan's author (else anyone could
//     declare another author and approve their own plan);
//   - some approval must carry a signature valid for a listed principal who
//     is its approver and not the author, made with another key than the
//     author's.
func checkApprovals(ctx context.Context, o Options) error {
	p := o.Plan
	approvals, err := o.Store.Approvals(ctx, p.Fingerprint)
	if err != nil {
		return err
	}
	if len(approvals) == 0 {
		return &plan.Refusal{Reason: fmt.Sprintf("plan %s is not approved: run `backfill approve PLAN --by NAME`", p.Fingerprint)}
	}
	// Only an approval that derived the plan again from its own catalog and
	// CP records counts: one recorded before approve had to be given them
	// never checked the plan's claims against the CP.
	var why []string
	checked := approvals[:0:0]
	for _, a := range approvals {
		switch {
		case a.CheckedCatalogSHA256 == "" && a.CheckedCPSHA256 == "":
			why = append(why, fmt.Sprintf("approval %d by %s records no catalog or CP records it was checked against (approved by an older backfill)", a.ID, a.By))
		case !plan.ApprovalChecked(a, p):
			why = append(why, fmt.Sprintf("approval %d by %s was checked against other inputs (catalog %s, CP records %s)", a.ID, a.By, a.CheckedCatalogSHA256, a.CheckedCPSHA256))
		default:
			checked = append(checked, a)
		}
	}
	if len(checked) == 0 {
		return &plan.Refusal{Reason: fmt.Sprintf("plan %s has no approval checked against its catalog and CP records: %s; approve it again (backfill approve PLAN --by NAME --catalog DIR --cp SOURCE)",
			p.Fingerprint, strings.Join(why, "; "))}
	}
	if o.AllowedSigners == nil {
		return nil
	}
	authorKey, err := checkAuthor(ctx, o)
	if err != nil {
		return err
	}
	rollup := plan.RollupDigest(p.Rollup())
	for _, a := range checked {
		if a.Signature == "" {
			why = append(why, fmt.Sprintf("approval %d by %s is not signed", a.ID, a.By))
			continue
		}
		if a.RollupSHA256 != "" && (a.RollupSHA256 != rollup || a.Writes != p.Writes()) {
			why = append(why, fmt.Sprintf("approval %d by %s names other writes (%d, rollup %s)", a.ID, a.By, a.Writes, a.RollupSHA256))
			continue
		}
		principals, err := o.AllowedSigners.Verify([]byte(a.Signature), SignatureNamespace, ApprovalMessage(&a), o.Now())
		if err != nil {
			why = append(why, fmt.Sprintf("approval %d by %s: %v", a.ID, a.By, err))
			continue
		}
		var isApprover, isAuthor bool
		for _, pr := range principals {
			isApprover = isApprover || approver.Same(pr, a.By)
			isAuthor = isAuthor || approver.Same(pr, p.Author)
		}
		key, _ := sshsig.SignerKey([]byte(a.Signature)) // it verified, so it parses
		switch {
		case isAuthor || key == authorKey:
			why = append(why, fmt.Sprintf("approval %d is signed by a key of the plan's author %s", a.ID, p.Author))
		case !isApprover:
			why = append(why, fmt.Sprintf("approval %d names %s but is signed by %s", a.ID, a.By, strings.Join(principals, ", ")))
		default:
			return nil
		}
	}
	return &plan.Refusal{Reason: fmt.Sprintf("plan %s has no approval signed by an allowed signer other than its author: %s", p.Fingerprint, strings.Join(why, "; "))}
}

// ApprovalMessage is what an approver signs: the plan's fingerprint and
// the digests of the catalog and CP records the approval checked it
// against, so that a signature cannot be carried to a row claiming a
// check its signer never made (an approval from before approvals recorded
// them signed the fingerprint alone). Lines end in \n:
//
//	backfill-approval-v2
//	fingerprint sha256:…
//	catalog sha256:…
//	cp sha256:…
func ApprovalMessage(a *evidence.Approval) []byte {
	return fmt.Appendf(nil, "backfill-approval-v2\nfingerprint %s\ncatalog %s\ncp %s\n", a.Fingerprint, a.CheckedCatalogSHA256, a.CheckedCPSHA256)
}

// checkAuthor verifies, under allowed signers, the author's signature of
// the plan as kept in the store, and returns the key that made it.
func checkAuthor(ctx context.Context, o Options) (string, error) {
	p := o.Plan
	rec, err := plan.KeptRecord(ctx, o.Store, p.Fingerprint)
	if err != nil {
		return "", err
	}
	if rec == nil || rec.Signature == "" {
		return "", &plan.Refusal{Reason: fmt.Sprintf("plan %s carries no signature of its author %s: with --allowed-signers the author must sign it (plan --sign-key KEY)",
			p.Fingerprint, p.Author)}
	}
	principals, err := o.AllowedSigners.Verify([]byte(rec.Signature), planSignatureNamespace, []byte(p.Fingerprint), o.Now())
	if err != nil {
		return "", &plan.Refusal{Reason: fmt.Sprintf("plan %s: its author's signature: %v", p.Fingerprint, err)}
	}
	for _, pr := range principals {
		if approver.Same(pr, p.Author) {
			return sshsig.SignerKey([]byte(rec.Signature))
		}
	}
	return "", &plan.Refusal{Reason: fmt.Sprintf("plan %s names author %s but is signed by %s", p.Fingerprint, p.Author, strings.Join(principals, ", "))}
}
