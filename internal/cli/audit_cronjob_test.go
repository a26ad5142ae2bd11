package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"backfill/internal/filesapi"
)

// loadCronJob reads the CronJob in a manifest under deploy/ and returns
// the Job it makes.
func loadCronJob(t *testing.T, file string) *k8sJob {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", file))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var cj struct {
			Kind string
			Spec struct {
				JobTemplate k8sJob `yaml:"jobTemplate"`
			}
		}
		err := dec.Decode(&cj)
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s holds no CronJob", file)
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if cj.Kind == "CronJob" {
			return &cj.Spec.JobTemplate
		}
	}
}

// TestAuditCronJobLocally plays deploy/audit-cronjob.yaml twice on this
// machine, as two scheduled runs: the container as a real backfill process
// with the manifest's arguments, the Secret's environment, the ConfigMap's
// inventory and the claim as a directory that outlives each pod. The first
// run finds a workspace gone and one unreadable and exits 3 (which the
// manifest maps to FailJob); once both are readable the next exits 0. The
// store on the claim verifies and holds both audits.
func TestAuditCronJobLocally(t *testing.T) {
	t.Parallel()
	bin := backfillBinary(t)
	f := newShardFleet(t)
	job := loadCronJob(t, "audit-cronjob.yaml")
	claim := filepath.Join(f.dir, "audit-claim")
	if err := os.Mkdir(claim, 0o700); err != nil {
		t.Fatal(err)
	}
	cl := &cluster{bin: bin, claims: map[string]string{"backfill-audit-evidence": claim},
		config: filepath.Dir(f.inventory), secrets: f.secrets, dropFlag: map[string]string{}}

	first, err := cl.runPod(t, job, 0)
	if err != nil {
		t.Fatal(err)
	}
	if first.codes["audit"] != 3 || !strings.Contains(first.output["audit"], `"reason": "incomplete"`) {
		t.Fatalf("first scheduled audit: exit %d, want 3 (acme's gone workspace, bolt's unreadable one)\n%s", first.codes["audit"], first.output["audit"])
	}

	// Both become readable before the next schedule.
	root := func(tenant string) string { return filepath.Join(f.dir, "live", tenant) }
	if err := filesapi.WriteConfig(root("acme"), uuidFor(1, 3), []byte(seoConfig)); err != nil {
		t.Fatal(err)
	}
	// bolt's config.yaml was a directory.
	if err := os.Remove(filepath.Join(root("bolt"), uuidFor(2, 3), "config.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := filesapi.WriteConfig(root("bolt"), uuidFor(2, 3), []byte(seoConfig)); err != nil {
		t.Fatal(err)
	}
	second, err := cl.runPod(t, job, 0)
	if err != nil {
		t.Fatal(err)
	}
	if second.codes["audit"] != 0 || !strings.Contains(second.output["audit"], `"reason": "complete"`) {
		t.Fatalf("second scheduled audit: exit %d, want 0\n%s", second.codes["audit"], second.output["audit"])
	}

	store := filepath.Join(claim, "evidence.db")
	if code, out := runBin(t, bin, nil, "--evidence", store, "verify"); code != 0 {
		t.Fatalf("verify the claim's store: %d %s", code, out)
	}
	code, out := runBin(t, bin, nil, "--evidence", store, "status", "--json")
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
		t.Fatalf("status --json: %d %v\n%s", code, err, out)
	}
	if st.AuditsRecorded != 2 || st.Audits[0].Reason != "complete" || st.Audits[1].Reason != "incomplete" ||
		st.Audits[0].Captured != 2 || st.Audits[0].Appeared != 0 {
		t.Fatalf("audit history on the claim: %+v", st.Audits)
	}
}
