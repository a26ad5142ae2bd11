package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"backfill/apply/plan"
	"backfill/internal/evidence"
	"backfill/internal/filesapi"
	"backfill/internal/fixture"
	"backfill/internal/pgtest"
	"backfill/snapshot"
)

// The parts of a Kubernetes Job this test plays: its pods' containers,
// their arguments, environment and mounts, and its volumes.
type k8sContainer struct {
	Name string
	Args []string
	Env  []struct {
		Name      string
		Value     string
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	}
	EnvFrom []struct {
		SecretRef *struct{ Name string } `yaml:"secretRef"`
	} `yaml:"envFrom"`
	VolumeMounts []struct {
		Name      string
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sJob struct {
	Kind     string
	Metadata struct{ Name string }
	// uid is this run's metadata.uid, which the Job controller labels its
	// pods with; the test sets it.
	uid  string
	Spec struct {
		Completions    int
		CompletionMode string `yaml:"completionMode"`
		Template       struct {
			Spec struct {
				InitContainers []k8sContainer `yaml:"initContainers"`
				Containers     []k8sContainer
				Volumes        []struct {
					Name                  string
					EmptyDir              any `yaml:"emptyDir"`
					ConfigMap             any `yaml:"configMap"`
					PersistentVolumeClaim *struct {
						ClaimName string `yaml:"claimName"`
					} `yaml:"persistentVolumeClaim"`
				}
			}
		}
	}
}

// loadJob reads the Job in a manifest under deploy/.
// loadJob reads the Job of a manifest, with each old, new pair of subst
// replaced in its text first, as the operator's sed does.
func loadJob(t *testing.T, file string, subst ...string) *k8sJob {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", file))
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.NewReplacer(subst...).Replace(string(b)))
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var j k8sJob
		err := dec.Decode(&j)
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s holds no Job", file)
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if j.Kind == "Job" {
			return &j
		}
	}
}

const (
	completionIndexPath = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
	controllerUIDPath   = "metadata.labels['batch.kubernetes.io/controller-uid']"
)

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(NAME) as the kubelet does: with a defined variable's
// value, else left as written.
func expand(s string, env map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// cluster is where pods' volumes live on this machine: a directory per
// claim, shared by every pod, and the ConfigMap's files.
type cluster struct {
	bin      string
	claims   map[string]string
	config   string            // the ConfigMap's directory
	secrets  map[string]string // the Secret envFrom reads
	dropFlag map[string]string // command -> flag this build does not have yet
}

// podResult is one pod's containers' exit codes and output, in order.
type podResult struct {
	codes  map[string]int
	output map[string]string
	failed string // the init container that failed the pod, if one did
}

// runPod plays one pod of job with the given completion index: init
// containers in order, each to completion (a non-zero exit fails the pod),
// then the main container. Each container is a backfill process with
// exactly the environment Kubernetes would give it, and its mount paths
// mapped onto this machine's directories.
// It may run on a goroutine of its own, so it reports errors rather than
// stopping the test.
func (cl *cluster) runPod(t *testing.T, job *k8sJob, index int) (podResult, error) {
	spec := job.Spec.Template.Spec
	vols := map[string]string{}
	for _, v := range spec.Volumes {
		switch {
		case v.EmptyDir != nil:
			vols[v.Name] = t.TempDir() // this pod's own
		case v.PersistentVolumeClaim != nil:
			dir, ok := cl.claims[v.PersistentVolumeClaim.ClaimName]
			if !ok {
				return podResult{}, fmt.Errorf("claim %s has no directory", v.PersistentVolumeClaim.ClaimName)
			}
			vols[v.Name] = dir
		case v.ConfigMap != nil:
			vols[v.Name] = cl.config
		default:
			return podResult{}, fmt.Errorf("volume %s: a kind this test does not play", v.Name)
		}
	}
	res := podResult{codes: map[string]int{}, output: map[string]string{}}
	containers := append(append([]k8sContainer{}, spec.InitContainers...), spec.Containers...)
	for i, c := range containers {
		mounts := map[string]string{}
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = vols[m.Name]
		}
		local := func(p string) string {
			best := ""
			for mp := range mounts {
				if (p == mp || strings.HasPrefix(p, mp+"/")) && len(mp) > len(best) {
					best = mp
				}
			}
			if best == "" {
				return p
			}
			return mounts[best] + strings.TrimPrefix(p, best)
		}
		env := map[string]string{}
		var envList []string
		set := func(k, v string) {
			env[k] = v
			envList = append(envList, k+"="+v)
		}
		for _, ef := range c.EnvFrom {
			if ef.SecretRef == nil {
				return res, fmt.Errorf("%s: envFrom other than secretRef", c.Name)
			}
			for k, v := range cl.secrets {
				set(k, v)
			}
		}
		for _, e := range c.Env {
			switch {
			case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == completionIndexPath:
				set(e.Name, strconv.Itoa(index))
			case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == controllerUIDPath && job.uid != "":
				set(e.Name, job.uid)
			case e.ValueFrom != nil:
				return res, fmt.Errorf("%s: env %s: a source this test does not play", c.Name, e.Name)
			default:
				set(e.Name, local(expand(e.Value, env)))
			}
		}
		// The Job controller's own, appended after the rest.
		if _, ok := env["JOB_COMPLETION_INDEX"]; !ok {
			set("JOB_COMPLETION_INDEX", strconv.Itoa(index))
		}
		if mp, ok := mounts["/tmp"]; ok {
			set("TMPDIR", mp) // SQLite's temporary files go to /tmp, here the pod's emptyDir
		}
		var args []string
		for _, a := range c.Args {
			args = append(args, local(expand(a, env)))
		}
		args = cl.withoutMissingFlags(t, args)
		cmd := exec.Command(cl.bin, args...)
		cmd.Env = envList
		cmd.Dir = t.TempDir() // the image's root file system is read-only: nothing may land in the working directory
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			return res, err
		}
		res.codes[c.Name], res.output[c.Name] = code, string(out)
		if i < len(spec.InitContainers) && code != 0 {
			res.failed = c.Name
			return res, nil
		}
	}
	return res, nil
}

// withoutMissingFlags drops a flag the manifests use that this build does
// not have yet (snapshot --allow-gone is being added separately).
func (cl *cluster) withoutMissingFlags(t *testing.T, args []string) []string {
	for cmd, fl := range cl.dropFlag {
		if slices.Contains(args, cmd) && slices.Contains(args, fl) {
			t.Logf("running %s without %s: this build does not have it yet", cmd, fl)
			args = slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == fl })
		}
	}
	return args
}

// shardFleet is six tenants over the platform's files API and the file
// collector (the image has no shell or docker for exec collectors), two per
// shard of three. Among their workspaces: one agrees with its CP claim, one
// is already set, one runs the runtime default, one is gone (acme), one
// cannot be read (bolt: a directory where config.yaml should be), and grove
// has no CP record.
type shardFleet struct {
	dir, inventory, cp string
	secrets            map[string]string
	tenants            []string
}

func newShardFleet(t *testing.T) *shardFleet {
	t.Helper()
	f := &shardFleet{dir: t.TempDir(), secrets: map[string]string{}, tenants: []string{"acme", "bolt", "cedar", "delta", "flint", "grove"}}
	var inv strings.Builder
	inv.WriteString("version: 1\ntenants:\n")
	cp := "tenant,workspace_id,template\n"
	for ti, tenant := range f.tenants {
		dsn := pgtest.NewTenantDB(t)
		root := filepath.Join(f.dir, "live", tenant)
		rows := []ws{
			{id: uuidFor(ti+1, 0), name: tenant + "-seo"},
			{id: uuidFor(ti+1, 1), name: tenant + "-set", template: "seo-agent"},
			{id: uuidFor(ti+1, 2), name: tenant + "-default"},
		}
		for i, content := range []string{seoConfig, seoConfig, defaultConfig} {
			if err := filesapi.WriteConfig(root, rows[i].id, []byte(content)); err != nil {
				t.Fatal(err)
			}
		}
		switch tenant {
		case "acme":
			rows = append(rows, ws{id: uuidFor(ti+1, 3), name: "acme-gone"}) // no config: gone
		case "bolt":
			rows = append(rows, ws{id: uuidFor(ti+1, 3), name: "bolt-unreadable"})
			if err := os.MkdirAll(filepath.Join(root, uuidFor(ti+1, 3), "config.yaml"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		insertRows(t, dsn, rows...)
		pw := strings.ToUpper(tenant) + "_PG_PASSWORD"
		f.secrets[pw] = plantedPGPassword
		fmt.Fprintf(&inv, "  - name: %s\n    dsn: %q\n", tenant, strings.Replace(dsn, "postgres://postgres@", "postgres://postgres:${"+pw+"}@", 1))
		if ti%2 == 0 {
			srv := filesServer(t, root, plantedToken, 0)
			tok := strings.ToUpper(tenant) + "_TOKEN"
			f.secrets[tok] = plantedToken
			fmt.Fprintf(&inv, "    collector:\n      http:\n        url: %q\n        headers: {Authorization: \"Bearer ${%s}\"}\n        json_field: content\n",
				srv.URL+"/configs/{workspace_id}/config.yaml", tok)
		} else {
			fmt.Fprintf(&inv, "    collector:\n      file: \"%s/{workspace_id}/config.yaml\"\n", root)
		}
		if tenant != "grove" {
			cp += tenant + ",,seo-agent\n"
		}
	}
	f.inventory = writeFile(t, filepath.Join(f.dir, "config", "inventory.yaml"), inv.String())
	f.cp = writeFile(t, filepath.Join(f.dir, "cp.csv"), cp)
	return f
}

// runBin runs the backfill binary with only the fleet's secrets in its
// environment, and returns its exit code and output.
func runBin(t *testing.T, bin string, env map[string]string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// outcome is what a store says of one workspace.
type outcome struct{ latest, earliestSHA string }

func storeOutcomes(t *testing.T, bin, store string) map[string]outcome {
	t.Helper()
	code, out := runBin(t, bin, nil, "--evidence", store, "export", "--format", "json")
	if code != 0 {
		t.Fatalf("export %s: %d %s", store, code, out)
	}
	var recs []exportRecord
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("export %s: %v\n%s", store, err, out)
	}
	m := map[string]outcome{}
	for _, r := range recs {
		m[r.Tenant+"/"+r.WorkspaceID] = outcome{r.LatestOutcome, r.EarliestSHA256}
	}
	return m
}

// planVerdicts plans on store and returns the counts per verdict and each
// workspace's verdict.
func planVerdicts(t *testing.T, bin string, f *shardFleet, store string) (map[string]int, map[string]string) {
	t.Helper()
	catalog := fixture.CatalogDir(t)
	out := filepath.Join(t.TempDir(), "plan.json")
	code, text := runBin(t, bin, f.secrets, "--evidence", store, "plan", "--inventory", f.inventory, "--cp", f.cp,
		"--catalog", catalog, "--out", out, "--author", "ops")
	if code != 0 {
		t.Fatalf("plan on %s: %d %s", store, code, text)
	}
	p, err := plan.LoadPlan(out)
	if err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]string{}
	for _, it := range p.Items {
		verdicts[it.Tenant+"/"+it.WorkspaceID] = string(it.Verdict)
	}
	return p.Counts, verdicts
}

// TestIndexedJobLocally plays deploy/snapshot-indexed-job.yaml and
// deploy/merge-job.yaml on this machine: one real backfill process per
// container, N pods at once as the Job's parallelism allows, each with its
// completion index, its own emptyDir for the store and the shared claim as
// a directory; then the merge Job; then the operator's verify and plan on
// a copy of merged.db. The result must equal one unsharded snapshot of the
// same fleet: the same workspaces captured, the same verdicts.
func TestIndexedJobLocally(t *testing.T) {
	t.Parallel()
	bin := backfillBinary(t)
	f := newShardFleet(t)
	job := loadJob(t, "snapshot-indexed-job.yaml")
	merge := loadJob(t, "merge-job.yaml")
	n := job.Spec.Completions
	if job.Spec.CompletionMode != "Indexed" || n < 2 {
		t.Fatalf("snapshot job: %s with %d completions", job.Spec.CompletionMode, n)
	}
	// Every shard has tenants, so every pod does real work.
	for k := range n {
		has := 0
		for _, tenant := range f.tenants {
			if (snapshot.Shard{K: k, N: n}).Has(tenant) {
				has++
			}
		}
		if has == 0 {
			t.Fatalf("shard %d/%d has no tenant of %v: pick other names", k, n, f.tenants)
		}
	}
	cl := &cluster{bin: bin, claims: map[string]string{"backfill-shared": filepath.Join(f.dir, "shared")},
		config: filepath.Dir(f.inventory), secrets: f.secrets, dropFlag: map[string]string{}}
	if err := os.Mkdir(cl.claims["backfill-shared"], 0o755); err != nil {
		t.Fatal(err)
	}
	if _, help := runBin(t, bin, nil, "snapshot", "--help"); !strings.Contains(help, "--allow-gone") {
		cl.dropFlag["snapshot"] = "--allow-gone"
	}

	// Two runs of the Job, as when it is applied again before a later wave:
	// each publishes its own copies (a new UID), none refused for the
	// other's, and the merge reads the second's.
	shared := cl.claims["backfill-shared"]
	var wantShared []string
	for run := 1; run <= 2; run++ {
		job.uid = fmt.Sprintf("0f0e0d0c-0000-4000-8000-00000000000%d", run)
		cl.runShards(t, job, n)
		for k := range n {
			wantShared = append(wantShared, fmt.Sprintf("run-%s-shard-%d.db", job.uid, k))
		}
		sort.Strings(wantShared)
		if got := dirNames(t, shared); !slices.Equal(got, wantShared) {
			t.Fatalf("shared volume after run %d of the shards: %q, want %q", run, got, wantShared)
		}
	}

	// Applied as written, without the run's UID, merge finds no copies.
	if mp, err := cl.runPod(t, merge, 0); err != nil || mp.failed != "merge" || mp.codes["merge"] != 1 {
		t.Fatalf("merge job applied without the run's UID: %+v %v", mp, err)
	}
	merge = loadJob(t, "merge-job.yaml", "SNAPSHOT-JOB-UID", job.uid)
	mp, err := cl.runPod(t, merge, 0)
	if err != nil {
		t.Fatal(err)
	}
	if mp.failed != "" || mp.codes["publish"] != 0 {
		t.Fatalf("merge job: %+v", mp)
	}
	mergedName := "run-" + job.uid + "-merged.db"
	wantShared = append(wantShared, mergedName)
	sort.Strings(wantShared)
	if got := dirNames(t, shared); !slices.Equal(got, wantShared) {
		t.Fatalf("shared volume after the merge: %q, want %q", got, wantShared)
	}
	// Nothing on the shared volume is in WAL mode.
	for _, name := range wantShared {
		if wal, err := evidence.IsWAL(filepath.Join(shared, name)); err != nil || wal {
			t.Errorf("%s on the shared volume: WAL %v, %v", name, wal, err)
		}
	}

	// The operator copies the merged store off the shared volume for phase two.
	merged := filepath.Join(t.TempDir(), "merged.db")
	b, err := os.ReadFile(filepath.Join(shared, mergedName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(merged, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := runBin(t, bin, nil, "--evidence", merged, "verify"); code != 0 {
		t.Fatalf("verify merged: %d %s", code, out)
	}
	checkShardedEqualsOne(t, bin, f, merged)
}

// runShards plays every index of the Indexed Job at once and checks each
// pod's exit codes.
func (cl *cluster) runShards(t *testing.T, job *k8sJob, n int) {
	t.Helper()
	pods := make([]podResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for k := range n {
		wg.Go(func() { pods[k], errs[k] = cl.runPod(t, job, k) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for k, p := range pods {
		if p.failed != "" {
			t.Fatalf("pod %d: init container %s exited %d:\n%s", k, p.failed, p.codes[p.failed], p.output[p.failed])
		}
		// bolt's unreadable workspace is a shortfall: its shard's publish
		// exits 3 (FailIndex) once the copy is in place; the others 0.
		want := 0
		if (snapshot.Shard{K: k, N: n}).Has("bolt") {
			want = 3
		}
		if p.codes["publish"] != want {
			t.Errorf("pod %d: publish exited %d, want %d:\n%s", k, p.codes["publish"], want, p.output["publish"])
		}
		if !strings.Contains(p.output["publish"], "the copy verifies") {
			t.Errorf("pod %d: publish:\n%s", k, p.output["publish"])
		}
	}
}

// checkShardedEqualsOne: the merged store holds what one unsharded snapshot
// of the fleet holds, and plans alike.
func checkShardedEqualsOne(t *testing.T, bin string, f *shardFleet, merged string) {
	t.Helper()
	// One unsharded snapshot of the same fleet.
	single := filepath.Join(t.TempDir(), "single.db")
	if code, out := runBin(t, bin, f.secrets, "--evidence", single, "snapshot", "--inventory", f.inventory); code != 3 {
		t.Fatalf("unsharded snapshot: exit %d, want 3 (bolt's unreadable workspace)\n%s", code, out)
	}
	got, want := storeOutcomes(t, bin, merged), storeOutcomes(t, bin, single)
	if len(want) != 6*3+2 || !maps.Equal(got, want) {
		t.Errorf("merged store's workspaces differ from the unsharded snapshot's:\nmerged   %v\nunsharded %v", got, want)
	}
	captured := 0
	for _, o := range got {
		if o.latest == evidence.Captured {
			captured++
		}
	}
	if captured != 6*3 {
		t.Errorf("%d workspaces captured, want 18", captured)
	}
	gotCounts, gotVerdicts := planVerdicts(t, bin, f, merged)
	wantCounts, wantVerdicts := planVerdicts(t, bin, f, single)
	if !maps.Equal(gotCounts, wantCounts) || !maps.Equal(gotVerdicts, wantVerdicts) {
		t.Errorf("plan on the merged store %v, on the unsharded one %v", gotCounts, wantCounts)
	}
	// agree: the five tenants with a CP claim; cp-missing: grove's seo.
	if gotCounts["agree"] != 5 || gotCounts["already-set"] != 6 || gotCounts["no-evidence"] != 2 || gotCounts["cp-missing"] != 1 {
		t.Errorf("plan counts: %v", gotCounts)
	}
}
