// Package deploy holds example Kubernetes manifests; this test reads every
// one of them and checks what must hold for them to work and be safe.
package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type obj = map[string]any

// doc is one YAML document of a manifest file.
type doc struct {
	file string
	obj
}

func (d doc) String() string {
	return fmt.Sprintf("%s: %s %s", d.file, str(d.obj, "kind"), str(d.obj, "metadata", "name"))
}

// get walks a path of map keys.
func get(o any, path ...string) any {
	for _, k := range path {
		m, ok := o.(obj)
		if !ok {
			return nil
		}
		o = m[k]
	}
	return o
}

func str(o any, path ...string) string {
	s, _ := get(o, path...).(string)
	return s
}

func list(o any, path ...string) []any {
	l, _ := get(o, path...).([]any)
	return l
}

func num(o any, path ...string) (int, bool) {
	n, ok := get(o, path...).(int)
	return n, ok
}

func loadManifests(t *testing.T) []doc {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yml, _ := filepath.Glob("*.yml")
	files = append(files, yml...)
	if len(files) == 0 {
		t.Fatal("no manifests under deploy/")
	}
	var docs []doc
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var o obj
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o == nil {
				continue
			}
			if str(o, "apiVersion") == "" || str(o, "kind") == "" || str(o, "metadata", "name") == "" {
				t.Errorf("%s: a document without apiVersion, kind or metadata.name", f)
			}
			docs = append(docs, doc{f, o})
		}
	}
	return docs
}

// workload is a Job, or a CronJob's job template, with its pod spec.
type workload struct {
	doc
	job, pod obj
}

func workloads(docs []doc) []workload {
	var out []workload
	for _, d := range docs {
		var job any
		switch str(d.obj, "kind") {
		case "Job":
			job = get(d.obj, "spec")
		case "CronJob":
			job = get(d.obj, "spec", "jobTemplate", "spec")
		default:
			continue
		}
		j, _ := job.(obj)
		p, _ := get(j, "template", "spec").(obj)
		out = append(out, workload{d, j, p})
	}
	return out
}

// container is one container of a pod, init or not.
type container struct {
	obj
	init bool
}

func (w workload) containers() []container {
	var out []container
	for _, c := range list(w.pod, "initContainers") {
		out = append(out, container{c.(obj), true})
	}
	for _, c := range list(w.pod, "containers") {
		out = append(out, container{c.(obj), false})
	}
	return out
}

func (c container) name() string { return str(c.obj, "name") }

func (c container) args() []string {
	var out []string
	for _, a := range append(list(c.obj, "command"), list(c.obj, "args")...) {
		s, _ := a.(string)
		out = append(out, s)
	}
	return out
}

// globalWithValue are backfill's global flags that take a value.
var globalWithValue = []string{"--evidence", "--log-format", "--log-level", "--partial-exit-code"}

// command is the backfill command the container runs and its arguments
// after it (the image's ENTRYPOINT is the binary).
func (c container) command() (string, []string) {
	args := c.args()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if slices.Contains(globalWithValue, a) {
			i++
			continue
		}
		if strings.HasPrefix(a, "-") {
			continue
		}
		return a, args[i+1:]
	}
	return "", nil
}

// flag is the value of --name in args, "" when absent.
func flag(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// positional is the command's arguments that are not flags or flag values.
func positional(rest []string) []string {
	var out []string
	for i := 0; i < len(rest); i++ {
		if slices.Contains(globalWithValue, rest[i]) || rest[i] == "--inventory" {
			i++
			continue
		}
		if !strings.HasPrefix(rest[i], "-") {
			out = append(out, rest[i])
		}
	}
	return out
}

func (c container) env(name string) (string, bool) {
	for _, e := range list(c.obj, "env") {
		if str(e, "name") == name {
			return str(e, "value"), true
		}
	}
	return "", false
}

// storePath is where the container's evidence store is: --evidence, else
// BACKFILL_EVIDENCE, else the image's default.
func (c container) storePath() string {
	if p := flag(c.args(), "--evidence"); p != "" {
		return p
	}
	if p, ok := c.env("BACKFILL_EVIDENCE"); ok {
		return p
	}
	return "/evidence/evidence.db"
}

// volumeFor is the pod volume that holds path in container c, and the path
// inside it, and whether c mounts it read-only.
func (w workload) volumeFor(c container, path string) (vol obj, rel string, readOnly bool) {
	best := ""
	var bestName string
	for _, m := range list(c.obj, "volumeMounts") {
		mp := str(m, "mountPath")
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best, bestName = mp, str(m, "name")
			readOnly, _ = get(m, "readOnly").(bool)
		}
	}
	if best == "" {
		return nil, "", false
	}
	for _, v := range list(w.pod, "volumes") {
		if str(v, "name") == bestName {
			return v.(obj), strings.TrimPrefix(strings.TrimPrefix(path, best), "/"), readOnly
		}
	}
	return nil, "", false
}

// claimModes is each PersistentVolumeClaim's access modes, by name.
func claimModes(docs []doc) map[string][]string {
	out := map[string][]string{}
	for _, d := range docs {
		if str(d.obj, "kind") != "PersistentVolumeClaim" {
			continue
		}
		var modes []string
		for _, m := range list(d.obj, "spec", "accessModes") {
			modes = append(modes, m.(string))
		}
		out[str(d.obj, "metadata", "name")] = modes
	}
	return out
}

// makefileImage is the image name `make image` tags (IMAGE ?= …).
func makefileImage(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^IMAGE \?= *(\S+)\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("the Makefile sets no IMAGE ?= …")
	}
	if !bytes.Contains(b, []byte("-t $(IMAGE):$(VERSION) -t $(IMAGE):latest")) {
		t.Fatal("make image no longer tags $(IMAGE):$(VERSION) and $(IMAGE):latest")
	}
	return string(m[1])
}

// mayExit3 names the commands that exit 3 when they complete with some
// targets not done.
var mayExit3 = []string{"snapshot", "publish", "audit", "plan", "apply", "rollback", "preflight"}

var secretName = regexp.MustCompile(`(?i)secret|passw|pwd|token|dsn|key|credential|auth|cookie|session`)

// TestManifests checks every manifest under deploy/ for what makes it work
// and safe. The image cannot be built here, so nothing is applied to a
// cluster; TestIndexedJobLocally in internal/cli runs these containers'
// commands as processes.
func TestManifests(t *testing.T) {
	docs := loadManifests(t)
	image := makefileImage(t)
	claims := claimModes(docs)
	wls := workloads(docs)
	if len(wls) == 0 {
		t.Fatal("no Job or CronJob under deploy/")
	}
	for _, d := range docs {
		if str(d.obj, "kind") == "Secret" {
			t.Errorf("%s: a Secret in an example manifest: credentials are created by the operator, never written here", d)
		}
	}
	var sawCronJob, sawIndexed bool
	for _, w := range wls {
		t.Run(strings.TrimSuffix(w.file, filepath.Ext(w.file))+"/"+str(w.obj, "metadata", "name"), func(t *testing.T) {
			checkWorkload(t, w, image, claims)
		})
		switch {
		case str(w.obj, "kind") == "CronJob":
			sawCronJob = true
			if p := str(w.obj, "spec", "concurrencyPolicy"); p != "Forbid" {
				t.Errorf("%s: concurrencyPolicy %q, want Forbid: two audits must never write one store", w, p)
			}
		case str(w.job, "completionMode") == "Indexed":
			sawIndexed = true
			checkIndexedJob(t, w)
		}
	}
	if !sawCronJob || !sawIndexed {
		t.Errorf("want a CronJob (standing audit) and an Indexed Job (sharded snapshot): %v %v", sawCronJob, sawIndexed)
	}
	checkMergeInputs(t, wls)
}

func checkWorkload(t *testing.T, w workload, image string, claims map[string][]string) {
	if rp := str(w.pod, "restartPolicy"); rp != "Never" {
		t.Errorf("restartPolicy %q: want Never (podFailurePolicy needs it, and a restarted container would hide exit codes)", rp)
	}
	if v, _ := get(w.pod, "automountServiceAccountToken").(bool); v || get(w.pod, "automountServiceAccountToken") == nil {
		t.Error("automountServiceAccountToken: want false, backfill needs no Kubernetes API")
	}
	podSC, _ := get(w.pod, "securityContext").(obj)
	names := map[string]bool{}
	var exit3 []string // containers whose command may end with exit 3
	for _, c := range w.containers() {
		names[c.name()] = true
		cmd, rest := c.command()
		if cmd == "" {
			t.Errorf("%s: no backfill command in %q", c.name(), c.args())
			continue
		}
		checkContainer(t, c, image, podSC)
		partialZero := flag(c.args(), "--partial-exit-code") == "0"
		if slices.Contains(mayExit3, cmd) && !partialZero {
			if c.init {
				// Exit 3 there fails the pod before the next container
				// runs: whatever it captured is lost with the emptyDir.
				t.Errorf("init container %s runs %s, which may exit 3 and fail the pod before the next step: give it --partial-exit-code 0", c.name(), cmd)
			}
			exit3 = append(exit3, c.name())
		}

		// Where the store is: a Job's on the pod's own disk (an emptyDir);
		// a CronJob's on a ReadWriteOnce claim, the one writer's.
		var stores []string
		switch cmd {
		case "merge":
			if p := positional(rest); len(p) > 0 {
				stores = append(stores, p[0]) // OUT; the inputs are only read
			}
		case "version":
		default:
			stores = append(stores, c.storePath())
		}
		for _, s := range stores {
			vol, _, _ := w.volumeFor(c, s)
			switch {
			case vol == nil:
				t.Errorf("%s: store %s is on no volume: the root file system is read-only", c.name(), s)
			case str(w.obj, "kind") == "Job" && get(vol, "emptyDir") == nil:
				t.Errorf("%s: store %s is on volume %s, not an emptyDir: a Job's store (WAL) belongs on its pod's own disk; publish it to shared volumes", c.name(), s, str(vol, "name"))
			case str(w.obj, "kind") == "CronJob":
				claim := str(vol, "persistentVolumeClaim", "claimName")
				if claim == "" || !slices.Equal(claims[claim], []string{"ReadWriteOnce"}) && !slices.Equal(claims[claim], []string{"ReadWriteOncePod"}) {
					t.Errorf("%s: store %s on volume %s (claim %q, modes %v): want a ReadWriteOnce claim defined in deploy/", c.name(), s, str(vol, "name"), claim, claims[claim])
				}
			}
		}
		// Only publish writes to a shared (ReadWriteMany) volume: nothing
		// in WAL mode lands there.
		for _, m := range list(c.obj, "volumeMounts") {
			ro, _ := get(m, "readOnly").(bool)
			vol, _, _ := w.volumeFor(c, str(m, "mountPath"))
			claim := str(vol, "persistentVolumeClaim", "claimName")
			if claim != "" && slices.Contains(claims[claim], "ReadWriteMany") && !ro && cmd != "publish" {
				t.Errorf("%s: runs %s with shared claim %s mounted writable: only publish may write there (mount it readOnly)", c.name(), cmd, claim)
			}
		}
	}
	// Exit 3 is mapped: it fails the Job or the index at once, so it
	// alerts without a retry loop.
	rules := list(w.job, "podFailurePolicy", "rules")
	for _, r := range rules {
		if cn := str(r, "onExitCodes", "containerName"); cn != "" && !names[cn] {
			t.Errorf("podFailurePolicy names container %q, which the pod does not have", cn)
		}
	}
	for _, name := range exit3 {
		mapped := false
		for _, r := range rules {
			cn := str(r, "onExitCodes", "containerName")
			act := str(r, "action")
			if (cn == "" || cn == name) && str(r, "onExitCodes", "operator") == "In" && slices.Contains(list(r, "onExitCodes", "values"), any(3)) &&
				(act == "FailJob" || act == "FailIndex") {
				mapped = true
			}
		}
		if !mapped {
			t.Errorf("%s may exit 3 and no podFailurePolicy rule fails the Job or its index on it: it would be retried from scratch", name)
		}
	}
	for _, r := range rules {
		if str(r, "action") == "FailIndex" && get(w.job, "backoffLimitPerIndex") == nil {
			t.Error("FailIndex needs backoffLimitPerIndex")
		}
	}
}

func checkContainer(t *testing.T, c container, image string, podSC obj) {
	name := c.name()
	img := str(c.obj, "image")
	repo, tag, ok := strings.Cut(img, ":")
	if !ok || repo != image || tag == "" {
		t.Errorf("%s: image %q, want %s:<tag> as make image tags it", name, img, image)
	}
	sc, _ := get(c.obj, "securityContext").(obj)
	either := func(path ...string) any {
		if v := get(sc, path...); v != nil {
			return v
		}
		return get(podSC, path...)
	}
	for _, want := range []struct {
		path []string
		val  any
	}{
		{[]string{"readOnlyRootFilesystem"}, true},
		{[]string{"allowPrivilegeEscalation"}, false},
		{[]string{"runAsNonRoot"}, true},
		{[]string{"seccompProfile", "type"}, "RuntimeDefault"},
	} {
		var got any
		if want.path[0] == "runAsNonRoot" || want.path[0] == "seccompProfile" {
			got = either(want.path...)
		} else {
			got = get(sc, want.path...)
		}
		if got != want.val {
			t.Errorf("%s: securityContext.%s = %v, want %v", name, strings.Join(want.path, "."), got, want.val)
		}
	}
	if !slices.Contains(list(sc, "capabilities", "drop"), any("ALL")) {
		t.Errorf("%s: securityContext.capabilities.drop lacks ALL", name)
	}
	if u, ok := num(podSC, "runAsUser"); ok && u == 0 {
		t.Errorf("%s: runAsUser 0", name)
	}
	for _, kind := range []string{"requests", "limits"} {
		for _, res := range []string{"cpu", "memory"} {
			if get(c.obj, "resources", kind, res) == nil {
				t.Errorf("%s: resources.%s.%s is not set", name, kind, res)
			}
		}
	}
	// Credentials only through a Secret: no literal value under a name
	// that looks like one, no envFrom but secretRef, no DSN or token in
	// the arguments.
	defined := map[string]bool{}
	for _, e := range list(c.obj, "env") {
		n := str(e, "name")
		if v, ok := get(e, "value").(string); ok {
			if secretName.MatchString(n) {
				t.Errorf("%s: env %s is written inline: credentials come from a Secret (envFrom secretRef or secretKeyRef)", name, n)
			}
			for _, ref := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(v, -1) {
				if !defined[ref[1]] {
					// Kubernetes expands $(X) only from variables listed
					// before; left unexpanded, it stays literal.
					t.Errorf("%s: env %s uses $(%s), not defined before it in env", name, n, ref[1])
				}
			}
		} else if ref := get(e, "valueFrom", "secretKeyRef"); ref == nil && get(e, "valueFrom", "fieldRef") == nil {
			t.Errorf("%s: env %s: want a value, a secretKeyRef or a fieldRef", name, n)
		}
		defined[n] = true
	}
	for _, ef := range list(c.obj, "envFrom") {
		if get(ef, "secretRef") == nil {
			t.Errorf("%s: envFrom other than secretRef: credentials and settings belong in a Secret", name)
		}
	}
	for _, a := range c.args() {
		if regexp.MustCompile(`(?i)postgres(ql)?://[^/\s]*:[^@/\s]*@|bearer\s`).MatchString(a) {
			t.Errorf("%s: argument %q carries a credential", name, a)
		}
		for _, ref := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(a, -1) {
			if !defined[ref[1]] {
				t.Errorf("%s: argument %q uses $(%s), which its env does not define", name, a, ref[1])
			}
		}
	}
}

var shardRef = regexp.MustCompile(`^\$\(JOB_COMPLETION_INDEX\)/(\d+)$`)

func checkIndexedJob(t *testing.T, w workload) {
	n, ok := num(w.job, "completions")
	if !ok || n < 1 {
		t.Fatalf("%s: completions %v", w, get(w.job, "completions"))
	}
	if p, ok := num(w.job, "parallelism"); !ok || p > n {
		t.Errorf("%s: parallelism %v, want at most completions %d", w, get(w.job, "parallelism"), n)
	}
	snapshots, publishes := 0, 0
	for _, c := range w.containers() {
		cmd, rest := c.command()
		switch cmd {
		case "snapshot":
			snapshots++
			shard, ok := c.env("BACKFILL_SHARD")
			if s := flag(c.args(), "--shard"); s != "" {
				shard, ok = s, true
			}
			m := shardRef.FindStringSubmatch(shard)
			if !ok || m == nil {
				t.Errorf("%s: shard %q, want $(JOB_COMPLETION_INDEX)/N", c.name(), shard)
				continue
			}
			if k, _ := strconv.Atoi(m[1]); k != n {
				t.Errorf("%s: shard %q splits the fleet in %d, but the Job has %d completions: tenants would be missed or captured twice", c.name(), shard, k, n)
			}
		case "publish":
			publishes++
			p := positional(rest)
			if len(p) != 1 || !strings.Contains(p[0], "$(JOB_COMPLETION_INDEX)") {
				t.Errorf("%s: publish %q: want one DEST per index, named with $(JOB_COMPLETION_INDEX)", c.name(), p)
			}
			if c.init {
				t.Errorf("%s: publish must come after the snapshot", c.name())
			}
		}
	}
	if snapshots != 1 || publishes != 1 {
		t.Errorf("%s: %d snapshot and %d publish containers, want one of each", w, snapshots, publishes)
	}
}

// checkMergeInputs: the merge Job reads exactly the copies the Indexed Job
// publishes, one per index, from the same claim.
func checkMergeInputs(t *testing.T, wls []workload) {
	type file struct{ claim, rel string }
	published := map[file]bool{}
	var merged []file
	for _, w := range wls {
		for _, c := range w.containers() {
			cmd, rest := c.command()
			p := positional(rest)
			switch {
			case cmd == "publish" && str(w.job, "completionMode") == "Indexed" && len(p) == 1:
				n, _ := num(w.job, "completions")
				vol, rel, _ := w.volumeFor(c, p[0])
				for k := range n {
					published[file{str(vol, "persistentVolumeClaim", "claimName"), strings.ReplaceAll(rel, "$(JOB_COMPLETION_INDEX)", strconv.Itoa(k))}] = true
				}
			case cmd == "merge" && len(p) > 1:
				for _, in := range p[1:] {
					vol, rel, ro := w.volumeFor(c, in)
					if !ro {
						t.Errorf("merge input %s is on a writable mount: mount the shared volume readOnly", in)
					}
					merged = append(merged, file{str(vol, "persistentVolumeClaim", "claimName"), rel})
				}
			}
		}
	}
	if len(published) == 0 || len(merged) == 0 {
		t.Fatalf("want an Indexed Job that publishes and a Job that merges: published %v, merged %v", published, merged)
	}
	for _, f := range merged {
		if !published[f] {
			t.Errorf("merge reads %v, which no shard publishes (published: %v)", f, published)
		}
	}
	if len(merged) != len(published) {
		t.Errorf("merge reads %d stores, the Indexed Job publishes %d", len(merged), len(published))
	}
}
