package apply

import (
	"context"
	"fmt"
	"strings"
	"time"

	"backfill/internal/approver"
	"backfill/internal/catalog"
	"backfill/internal/cp"
	"backfill/internal/evidence"
	"backfill/internal/sshsig"
)

// SignatureNamespace is the SSHSIG namespace of approvals: a signature made
// for anything else (a git commit, a file) is never taken for one.
const SignatureNamespace = "backfill-approval"

// ApproveOptions are the inputs of an approval.
type ApproveOptions struct {
	Plan    *Plan
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
		return nil, &GateError{"--by: " + err.Error()}
	}
	if approver.Same(o.By, o.Plan.Author) && !o.AllowSelf {
		return nil, &GateError{fmt.Sprintf("%s is the plan's author; a second person must approve (or pass --allow-self-approval)", o.By)}
	}
	if head := o.Plan.Inputs.Evidence.ChainHead; head != "" {
		ok, err := o.Store.HasCaptureHash(ctx, head)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, &GateError{fmt.Sprintf("the plan was made from other evidence: its chain head %s is not in %s", head, o.Store.Path())}
		}
	}
	if err := Rederive(ctx, o.Plan, o.Store, o.Catalog, o.CP); err != nil {
		return nil, err
	}
	rollup := o.Plan.Rollup()
	a := &evidence.Approval{Fingerprint: o.Plan.Fingerprint, By: o.By, PlanAuthor: o.Plan.Author, At: o.Now(),
		Writes: len(o.Plan.Agreed()), RollupSHA256: RollupDigest(rollup)}
	if o.SignKey != nil {
		sig, err := sshsig.Sign(o.SignKey, SignatureNamespace, []byte(o.Plan.Fingerprint))
		if err != nil {
			return nil, &GateError{"--sign-key: " + err.Error()}
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
// existed. With them, some approval must carry a signature of the
// fingerprint that verifies against the allowed signers for a principal
// who is its approver and is not the plan's author: whoever can write the
// store can insert approval rows, but cannot sign as someone else.
func checkApprovals(ctx context.Context, o Options) error {
	p := o.Plan
	approvals, err := o.Store.Approvals(ctx, p.Fingerprint)
	if err != nil {
		return err
	}
	if len(approvals) == 0 {
		return &GateError{fmt.Sprintf("plan %s is not approved: run `backfill approve PLAN --by NAME`", p.Fingerprint)}
	}
	if o.AllowedSigners == nil {
		return nil
	}
	rollup := RollupDigest(p.Rollup())
	var why []string
	for _, a := range approvals {
		if a.Signature == "" {
			why = append(why, fmt.Sprintf("approval %d by %s is not signed", a.ID, a.By))
			continue
		}
		if a.RollupSHA256 != "" && (a.RollupSHA256 != rollup || a.Writes != len(p.Agreed())) {
			why = append(why, fmt.Sprintf("approval %d by %s names other writes (%d, rollup %s)", a.ID, a.By, a.Writes, a.RollupSHA256))
			continue
		}
		principals, err := o.AllowedSigners.Verify([]byte(a.Signature), SignatureNamespace, []byte(p.Fingerprint), o.Now())
		if err != nil {
			why = append(why, fmt.Sprintf("approval %d by %s: %v", a.ID, a.By, err))
			continue
		}
		var isApprover, isAuthor bool
		for _, pr := range principals {
			isApprover = isApprover || approver.Same(pr, a.By)
			isAuthor = isAuthor || approver.Same(pr, p.Author)
		}
		switch {
		case isAuthor:
			why = append(why, fmt.Sprintf("approval %d is signed by a key of the plan's author %s", a.ID, p.Author))
		case !isApprover:
			why = append(why, fmt.Sprintf("approval %d names %s but is signed by %s", a.ID, a.By, strings.Join(principals, ", ")))
		default:
			return nil
		}
	}
	return &GateError{fmt.Sprintf("plan %s has no approval signed by an allowed signer other than its author: %s", p.Fingerprint, strings.Join(why, "; "))}
}
