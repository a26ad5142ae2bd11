package main

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"backfill/internal/fixture"
	"backfill/internal/pgtest"
	"backfill/snapshot"
)

const (
	benchToken = "bench-token"
	configSize = 2048
)

// sample is one timed process.
type sample struct {
	wall  time.Duration
	rssKB int64
	cpu   cpuTimes
}

// series is a row's runs.
type series []sample

func (s series) median() time.Duration {
	w := make([]time.Duration, len(s))
	for i, x := range s {
		w[i] = x.wall
	}
	slices.Sort(w)
	if len(w)%2 == 1 {
		return w[len(w)/2]
	}
	return (w[len(w)/2-1] + w[len(w)/2]) / 2
}

// mid is the run of median wall time (the lower of the middle two when
// there are an even number).
func (s series) mid() sample {
	x := slices.Clone(s)
	slices.SortFunc(x, func(a, b sample) int { return cmp.Compare(a.wall, b.wall) })
	return x[(len(x)-1)/2]
}

func (s series) peakMB() float64 {
	var m int64
	for _, x := range s {
		m = max(m, x.rssKB)
	}
	return float64(m) / 1024
}

func (s series) walls() string {
	var parts []string
	for _, x := range s {
		parts = append(parts, fmt.Sprintf("%.2f", x.wall.Seconds()))
	}
	return strings.Join(parts, ", ")
}

// row is one line of the results table.
type row struct {
	what, ideal, measured, ratio, target, verdict, rss string
}

// cpuRow is a line of the table of where the CPU went: a row's median run,
// and its ideal wall time in seconds (0: none).
type cpuRow struct {
	what  string
	run   sample
	ideal float64
}

// harness holds what the rows share.
type harness struct {
	o       options
	bin     string
	work    string
	env     []string
	logs    string
	rows    []row
	notes   []string
	seoBase []byte
	meters  []meter // the other processes whose CPU time a run is charged
	cpus    []cpuRow
}

// charge adds a row's median run to the table of where the CPU went.
func (h *harness) charge(what string, s series, ideal float64) {
	h.cpus = append(h.cpus, cpuRow{what, s.mid(), ideal})
}

// timed runs argv (argv[0] a program) with the harness's environment, its
// output to a log file, and returns its wall time and peak RSS; any exit
// status but 0 is an error.
func (h *harness) timed(ctx context.Context, label string, argv ...string) (sample, error) {
	logf, err := os.Create(filepath.Join(h.logs, label+".log"))
	if err != nil {
		return sample{}, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = h.env
	cmd.Dir = h.work
	cmd.Stdout = logf
	cmd.Stderr = logf
	before := make([]time.Duration, len(h.meters))
	kids := make([]int, len(h.meters))
	for i, m := range h.meters {
		before[i], kids[i] = m.read(), len(children(m.pid))
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{}, fmt.Errorf("%s: %v", label, err)
	}
	stop := make(chan struct{})
	peak := make(chan int64, 1)
	go func() { peak <- watchPeakRSS(cmd.Process.Pid, stop) }()
	err = cmd.Wait()
	wall := time.Since(start)
	close(stop)
	rss := <-peak
	cpu := cpuTimes{others: map[string]time.Duration{}}
	if ps := cmd.ProcessState; ps != nil {
		cpu.self = ps.UserTime() + ps.SystemTime()
	}
	for i, m := range h.meters {
		m.settle(kids[i])
		cpu.others[m.name] += m.read() - before[i]
	}
	if err != nil {
		tail, _ := os.ReadFile(logf.Name())
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return sample{}, fmt.Errorf("%s: %v\n%s", label, err, tail)
	}
	fmt.Fprintf(os.Stderr, "benchfleet: %-28s %7.2fs  %6.1f MB\n", label, wall.Seconds(), float64(rss)/1024)
	return sample{wall, rss, cpu}, nil
}

// watchPeakRSS returns the largest VmHWM (KiB) read from /proc/pid/status
// every 10ms until stop is closed. wait4's ru_maxrss cannot be used: the
// child is started with vfork, and at exec Linux carries the parent's
// high-water mark into the child's, so every figure would be at least
// benchfleet's own peak. Growth in the last 10ms of a run can be missed.
func watchPeakRSS(pid int, stop <-chan struct{}) int64 {
	status := fmt.Sprintf("/proc/%d/status", pid)
	var peak int64
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(status); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					if kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64); err == nil {
						peak = max(peak, kb)
					}
				}
			}
		}
		select {
		case <-stop:
			return peak
		case <-tick.C:
		}
	}
}

// repeat runs f o.runs times; setup, when not nil, runs untimed before each.
func (h *harness) repeat(label string, setup func(i int) error, f func(i int) (sample, error)) (series, error) {
	var s series
	for i := 0; i < h.o.runs; i++ {
		if setup != nil {
			if err := setup(i); err != nil {
				return nil, err
			}
		}
		x, err := f(i)
		if err != nil {
			return nil, fmt.Errorf("%s run %d: %w", label, i+1, err)
		}
		s = append(s, x)
	}
	return s, nil
}

func (h *harness) backfill(ctx context.Context, label, store string, args ...string) (sample, error) {
	return h.timed(ctx, label, append([]string{h.bin, "--evidence", store}, args...)...)
}

func (h *harness) fetcher(ctx context.Context, label, urls string, conc int) (sample, error) {
	return h.helper(ctx, label, "fetch", "--urls", urls, "--token", benchToken, "-c", strconv.Itoa(conc))
}

// helper times one of benchfleet's own helper commands as its own process.
func (h *harness) helper(ctx context.Context, label string, args ...string) (sample, error) {
	self, err := os.Executable()
	if err != nil {
		return sample{}, err
	}
	return h.timed(ctx, label, append([]string{self}, args...)...)
}

// curl is the script an operator would otherwise write: xargs -P C curl,
// one file per workspace, given the URL list for free. A process per URL
// costs far more than a request on a loaded machine, so it is timed over
// o.curlN URLs spread over the list and its wall time scaled to all of them.
func (h *harness) curl(ctx context.Context, label, urls string, conc int) (sample, error) {
	dir, err := os.MkdirTemp(h.work, "curl")
	if err != nil {
		return sample{}, err
	}
	defer os.RemoveAll(dir)
	list, err := readLines(urls)
	if err != nil {
		return sample{}, err
	}
	n := min(h.o.curlN, len(list))
	var in strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&in, "%s %s\n", filepath.Join(dir, strconv.Itoa(i)), list[i*len(list)/n])
	}
	args := filepath.Join(dir, "args")
	if err := os.WriteFile(args, []byte(in.String()), 0o644); err != nil {
		return sample{}, err
	}
	x, err := h.timed(ctx, label, "xargs", "-a", args, "-P", strconv.Itoa(conc), "-n", "2",
		"curl", "-sf", "-H", "Authorization: Bearer "+benchToken, "-o")
	x.wall = x.wall * time.Duration(len(list)) / time.Duration(n)
	return x, err
}

func (h *harness) scaled(n, least int) int {
	return max(least, int(math.Round(float64(n)*h.o.scale)))
}

// hold writes each built fleet's inventory (B's through the proxy, C's
// against the files API without latency), URL list and CP records into the work
// directory, says where, and waits for a signal with everything running:
// for timing or profiling the binary by hand.
func hold(ctx context.Context, fleets map[string]*benchFleet, path func(string) string, proxyAddr, apiAddr, api0Addr string) error {
	for name, f := range fleets {
		dsn, addr := directDSN, apiAddr
		switch name {
		case "B":
			dsn = proxiedDSN(proxyAddr)
		case "C":
			addr = api0Addr
		}
		base := strings.ToLower(name)
		inv, urls, cp := path(base+".yaml"), path(base+".urls"), path(base+"-cp.csv")
		if err := writeInventory(inv, f, dsn, addr); err != nil {
			return err
		}
		if err := writeURLs(urls, f, addr); err != nil {
			return err
		}
		if err := writeCP(cp, f); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "benchfleet: fleet %s: inventory %s, URLs %s, CP records %s, catalog %s\n", name, inv, urls, cp, path("catalog"))
	}
	fmt.Fprintf(os.Stderr, "benchfleet: holding; run with BENCH_TOKEN=%s; interrupt to stop\n", benchToken)
	<-ctx.Done()
	return nil
}

// want reports whether row (A, B, C or D) is to run.
func (o options) want(row string) bool { return o.rows == nil || o.rows[row] }

func pass(ok bool) string {
	if ok {
		return "pass"
	}
	return "**fail**"
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func bench(ctx context.Context, o options) error {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	h := &harness{o: o, bin: bin, work: o.work, logs: filepath.Join(o.work, "logs")}
	if err := os.MkdirAll(h.logs, 0o755); err != nil {
		return err
	}
	h.seoBase = fixture.Live(seoConfig)
	catalogDir := filepath.Join(o.work, "catalog")
	// A --work directory used before holds an earlier copy.
	if err := os.RemoveAll(catalogDir); err != nil {
		return err
	}
	if err := fixture.WriteCatalog(catalogDir); err != nil {
		return err
	}
	// backfill gets a plain environment: the token, and nothing of the
	// harness's BACKFILL_* settings.
	h.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "BENCH_TOKEN=" + benchToken, "TZ=UTC"}
	loadBefore, _ := os.ReadFile("/proc/loadavg")

	fmt.Fprintln(os.Stderr, "benchfleet: starting a PostgreSQL cluster")
	cluster, err := pgtest.Start()
	if err != nil {
		return err
	}
	defer cluster.Close()
	proxy, err := startHelper("proxy", "--target", filepath.Join(cluster.Dir(), ".s.PGSQL.5432"), "--delay", o.dbLatency.String())
	if err != nil {
		return err
	}
	defer proxy.stop()
	root := filepath.Join(o.work, "files")
	api, err := startHelper("serve", "--root", root, "--token", benchToken, "--latency", o.apiLatency.String())
	if err != nil {
		return err
	}
	defer api.stop()
	api0, err := startHelper("serve", "--root", root, "--token", benchToken, "--latency", "0s")
	if err != nil {
		return err
	}
	defer api0.stop()
	pm, err := postmasterPID(filepath.Join(cluster.Dir(), "data"))
	if err != nil {
		return err
	}
	h.meters = []meter{{name: "PostgreSQL", pid: pm, tree: true}, {name: "files API", pid: api.cmd.Process.Pid},
		{name: "files API", pid: api0.cmd.Process.Pid}, {name: "proxy", pid: proxy.cmd.Process.Pid}}

	// The fleets. Sizes scale with --scale; tenant counts too, with a floor.
	type spec struct {
		no, tenants, n int
		name           string
	}
	specs := []spec{
		{1, h.scaled(50, 5), h.scaled(5000, 100), "A"},
		{2, h.scaled(500, 10), h.scaled(5000, 100), "B"},
		{3, h.scaled(50, 5), h.scaled(20000, 400), "C"},
		{4, h.scaled(50, 5), h.scaled(100000, 1000), "D"},
	}
	fleets := map[string]*benchFleet{}
	for _, s := range specs {
		if !o.want(s.name) {
			continue
		}
		start := time.Now()
		f, err := buildFleet(ctx, cluster, s.no, s.name, s.tenants, s.n, configSize, root, h.seoBase)
		if err != nil {
			return err
		}
		fleets[s.name] = f
		fmt.Fprintf(os.Stderr, "benchfleet: fleet %s: %d tenants, %d workspaces in %.1fs\n", s.name, s.tenants, s.n, time.Since(start).Seconds())
	}
	path := func(name string) string { return filepath.Join(o.work, name) }
	L := o.apiLatency.Seconds()
	if o.hold {
		return hold(ctx, fleets, path, proxy.addr, api.addr, api0.addr)
	}

	snap := func(label, inv string, conc int, keep string) func(int) (sample, error) {
		return func(i int) (sample, error) {
			store := path(fmt.Sprintf("%s-%d/evidence.db", label, i))
			os.MkdirAll(filepath.Dir(store), 0o755)
			x, err := h.backfill(ctx, fmt.Sprintf("%s-%d", label, i), store, "snapshot", "--inventory", inv, "--capture-concurrency", strconv.Itoa(conc))
			if keep != "" && err == nil && i == h.o.runs-1 {
				os.RemoveAll(filepath.Dir(keep))
				err = os.Rename(filepath.Dir(store), filepath.Dir(keep))
			} else {
				os.RemoveAll(filepath.Dir(store))
			}
			return x, err
		}
	}

	if o.want("A") {
		// A: snapshot, direct tenant DBs, files API at L, C=64; baselines.
		A := fleets["A"]
		if err := writeInventory(path("a.yaml"), A, directDSN, api.addr); err != nil {
			return err
		}
		if err := writeURLs(path("a.urls"), A, api.addr); err != nil {
			return err
		}
		sA, err := h.repeat("snapshot A", nil, snap("snapshot-A", path("a.yaml"), 64, ""))
		if err != nil {
			return err
		}
		fA, err := h.repeat("fetch A", nil, func(i int) (sample, error) { return h.fetcher(ctx, fmt.Sprintf("fetch-A-%d", i), path("a.urls"), 64) })
		if err != nil {
			return err
		}
		cA, err := h.repeat("curl A", nil, func(i int) (sample, error) { return h.curl(ctx, fmt.Sprintf("curl-A-%d", i), path("a.urls"), 64) })
		if err != nil {
			return err
		}
		idealA := float64(A.n) * L / 64
		rA := sA.median().Seconds() / idealA
		h.rows = append(h.rows,
			row{fmt.Sprintf("snapshot, %d tenant DBs, files API in another process, %d × 2 KiB at %v, C=64", len(A.tenants), A.n, o.apiLatency),
				fmt.Sprintf("%.2f s", idealA), secs(sA.median()) + " (" + sA.walls() + ")", fmt.Sprintf("%.2f× ideal", rA), "≤ 1.15× ideal", pass(rA <= 1.15), fmt.Sprintf("%.0f MB", sA.peakMB())},
			row{"  baseline: bare Go fetcher, same URLs, C=64", fmt.Sprintf("%.2f s", idealA), secs(fA.median()) + " (" + fA.walls() + ")",
				fmt.Sprintf("%.2f× ideal", fA.median().Seconds()/idealA), "", "", fmt.Sprintf("%.0f MB", fA.peakMB())},
			row{fmt.Sprintf("  baseline: `xargs -P 64 curl`, same URLs (%d timed, scaled)", min(o.curlN, A.n)), fmt.Sprintf("%.2f s", idealA), secs(cA.median()) + " (" + cA.walls() + ")",
				fmt.Sprintf("%.2f× ideal; backfill %.1f× faster", cA.median().Seconds()/idealA, cA.median().Seconds()/sA.median().Seconds()), "", "", ""},
		)
		h.charge("A: snapshot", sA, idealA)
		h.charge("A: bare fetcher", fA, idealA)
	}

	if o.want("B") {
		// B: 500 tenants of 10 behind the proxy.
		B := fleets["B"]
		if err := writeInventory(path("b.yaml"), B, proxiedDSN(proxy.addr), api.addr); err != nil {
			return err
		}
		storeB := path("b-kept/evidence.db")
		sB, err := h.repeat("snapshot B", nil, snap("snapshot-B", path("b.yaml"), 64, storeB))
		if err != nil {
			return err
		}
		if err := writeDSNs(path("b.dsns"), B, proxiedDSN(proxy.addr)); err != nil {
			return err
		}
		lB, err := h.repeat("connect B", nil, func(i int) (sample, error) {
			return h.helper(ctx, fmt.Sprintf("connect-B-%d", i), "connect", "--dsns", path("b.dsns"), "-c", strconv.Itoa(snapshot.DefaultTenantConcurrency))
		})
		if err != nil {
			return err
		}
		idealB := float64(B.n) * L / 64
		rB := sB.median().Seconds() / idealB
		h.rows = append(h.rows, row{fmt.Sprintf("same, %d tenants of %d, each tenant DB behind a loopback proxy adding %v each way", len(B.tenants), B.n/len(B.tenants), o.dbLatency),
			fmt.Sprintf("%.2f s", idealB), secs(sB.median()) + " (" + sB.walls() + ")", fmt.Sprintf("%.2f× ideal", rB), "≤ 1.3× ideal", pass(rB <= 1.3), fmt.Sprintf("%.0f MB", sB.peakMB())},
			row{fmt.Sprintf("  baseline: bare lister, connect and one query per tenant DB through the proxy, %d at once (every tenant DB is on this machine's one cluster)", snapshot.DefaultTenantConcurrency), "",
				secs(lB.median()) + " (" + lB.walls() + ")", fmt.Sprintf("%.2f× the ideal above", lB.median().Seconds()/idealB), "", "", fmt.Sprintf("%.0f MB", lB.peakMB())})
		h.charge("B: snapshot", sB, idealB)
		h.charge("B: bare lister", lB, 0)
	}

	if o.want("C") {
		// C: L=0 throughput against the bare fetcher and curl.
		C := fleets["C"]
		if err := writeInventory(path("c.yaml"), C, directDSN, api0.addr); err != nil {
			return err
		}
		if err := writeURLs(path("c.urls"), C, api0.addr); err != nil {
			return err
		}
		sC, err := h.repeat("snapshot C", nil, snap("snapshot-C", path("c.yaml"), 64, ""))
		if err != nil {
			return err
		}
		fC, err := h.repeat("fetch C", nil, func(i int) (sample, error) { return h.fetcher(ctx, fmt.Sprintf("fetch-C-%d", i), path("c.urls"), 64) })
		if err != nil {
			return err
		}
		cC, err := h.repeat("curl C", nil, func(i int) (sample, error) { return h.curl(ctx, fmt.Sprintf("curl-C-%d", i), path("c.urls"), 64) })
		if err != nil {
			return err
		}
		rate := func(s series) float64 { return float64(C.n) / s.median().Seconds() }
		rC := rate(sC) / rate(fC)
		h.rows = append(h.rows,
			row{fmt.Sprintf("snapshot at L=0, %d × 2 KiB, %d tenant DBs, files API in another process, C=64", C.n, len(C.tenants)),
				"", fmt.Sprintf("%.0f captures/s (%s s)", rate(sC), sC.walls()), fmt.Sprintf("%.0f%% of the bare fetcher", 100*rC), "≥ 80% of the bare fetcher", pass(rC >= 0.8), fmt.Sprintf("%.0f MB", sC.peakMB())},
			row{"  baseline: bare Go fetcher, same URLs, C=64", "", fmt.Sprintf("%.0f fetches/s (%s s)", rate(fC), fC.walls()), "", "", "", fmt.Sprintf("%.0f MB", fC.peakMB())},
			row{fmt.Sprintf("  baseline: `xargs -P 64 curl`, same URLs (%d timed, scaled)", min(o.curlN, C.n)), "", fmt.Sprintf("%.0f fetches/s (%s s)", rate(cC), cC.walls()), fmt.Sprintf("backfill %.1f× faster", rate(sC)/rate(cC)), "", "", ""},
		)
		h.charge("C: snapshot", sC, 0)
		h.charge("C: bare fetcher", fC, 0)
	}

	if o.want("D") {
		// D: 100,000 at L, C=256; the last run's store feeds plan and verify.
		D := fleets["D"]
		if err := writeInventory(path("d.yaml"), D, directDSN, api.addr); err != nil {
			return err
		}
		storeD := path("d-kept/evidence.db")
		sD, err := h.repeat("snapshot D", nil, snap("snapshot-D", path("d.yaml"), 256, storeD))
		if err != nil {
			return err
		}
		// The bare fetcher over the same URLs: what the machine allows with
		// nothing stored, when its cores, not the latency, bound the run.
		if err := writeURLs(path("d.urls"), D, api.addr); err != nil {
			return err
		}
		fD, err := h.repeat("fetch D", nil, func(i int) (sample, error) { return h.fetcher(ctx, fmt.Sprintf("fetch-D-%d", i), path("d.urls"), 256) })
		if err != nil {
			return err
		}
		idealD := float64(D.n) * L / 256
		rD := sD.median().Seconds() / idealD
		h.rows = append(h.rows, row{fmt.Sprintf("snapshot, %d workspaces in %d tenant DBs, %v, C=256", D.n, len(D.tenants), o.apiLatency),
			fmt.Sprintf("%.2f s", idealD), secs(sD.median()) + " (" + sD.walls() + ")", fmt.Sprintf("%.2f× ideal", rD), "≤ 1.15× ideal, peak RSS < 150 MB",
			pass(rD <= 1.15 && sD.peakMB() < 150), fmt.Sprintf("%.0f MB", sD.peakMB())},
			row{"  baseline: bare Go fetcher, same URLs, C=256", fmt.Sprintf("%.2f s", idealD), secs(fD.median()) + " (" + fD.walls() + ")",
				fmt.Sprintf("%.2f× ideal; backfill %.2f× it", fD.median().Seconds()/idealD, sD.median().Seconds()/fD.median().Seconds()), "", "", fmt.Sprintf("%.0f MB", fD.peakMB())})
		h.charge("D: snapshot", sD, idealD)
		h.charge("D: bare fetcher", fD, idealD)

		// E: plan over D, each run on a fresh copy of D's store (plan keeps
		// its plan in the store).
		if err := writeCP(path("d-cp.csv"), D); err != nil {
			return err
		}
		sE, err := h.repeat("plan D", nil, func(i int) (sample, error) {
			store := path(fmt.Sprintf("plan-D-%d/evidence.db", i))
			if err := copyStore(storeD, store); err != nil {
				return sample{}, err
			}
			defer os.RemoveAll(filepath.Dir(store))
			dir := filepath.Dir(store)
			return h.backfill(ctx, fmt.Sprintf("plan-D-%d", i), store, "plan", "--inventory", path("d.yaml"), "--cp", path("d-cp.csv"),
				"--catalog", catalogDir, "--out", filepath.Join(dir, "plan.json"), "--report", filepath.Join(dir, "plan.md"), "--author", "bench")
		})
		if err != nil {
			return err
		}
		h.rows = append(h.rows, row{fmt.Sprintf("plan, %d workspaces in %d tenant DBs", D.n, len(D.tenants)), "", secs(sE.median()) + " (" + sE.walls() + ")", "",
			"< 3 s, < 150 MB", pass(sE.median() < 3*time.Second && sE.peakMB() < 150), fmt.Sprintf("%.0f MB", sE.peakMB())})

		// G: verify D's store (read-only).
		sG, err := h.repeat("verify D", nil, func(i int) (sample, error) {
			return h.backfill(ctx, fmt.Sprintf("verify-D-%d", i), storeD, "verify")
		})
		if err != nil {
			return err
		}

		h.rows = append(h.rows, row{fmt.Sprintf("verify, %d captures", D.n), "", secs(sG.median()) + " (" + sG.walls() + ")", "",
			"< 2 s", pass(sG.median() < 2*time.Second), fmt.Sprintf("%.0f MB", sG.peakMB())})
		h.charge("plan", sE, 0)
		h.charge("verify", sG, 0)
	}

	if o.want("B") {
		// F: apply over B behind the proxy: plan and approve once, then each
		// run starts from the approved store and rows with template = ''.
		B := fleets["B"]
		storeB := path("b-kept/evidence.db")
		if err := writeCP(path("b-cp.csv"), B); err != nil {
			return err
		}
		planB := path("b-kept/plan.json")
		if _, err := h.backfill(ctx, "plan-B", storeB, "plan", "--inventory", path("b.yaml"), "--cp", path("b-cp.csv"), "--catalog", catalogDir,
			"--out", planB, "--author", "bench"); err != nil {
			return err
		}
		if _, err := h.backfill(ctx, "approve-B", storeB, "approve", planB, "--by", "reviewer", "--cp", path("b-cp.csv"), "--catalog", catalogDir); err != nil {
			return err
		}
		var storeF string
		sF, err := h.repeat("apply B", func(i int) error {
			if err := resetTemplates(ctx, B); err != nil {
				return err
			}
			storeF = path(fmt.Sprintf("apply-B-%d/evidence.db", i))
			return copyStore(storeB, storeF)
		}, func(i int) (sample, error) {
			defer os.RemoveAll(filepath.Dir(storeF))
			x, err := h.backfill(ctx, fmt.Sprintf("apply-B-%d", i), storeF, "apply", "--inventory", path("b.yaml"), "--plan", planB, "--execute", "--operator", "bench")
			if err != nil {
				return x, err
			}
			if n, err := countTemplate(ctx, B, "seo-agent"); err != nil || n != B.n {
				return x, fmt.Errorf("apply wrote %d of %d rows (%v)", n, B.n, err)
			}
			return x, nil
		})
		if err != nil {
			return err
		}
		h.rows = append(h.rows, row{fmt.Sprintf("apply, %d writes over %d tenants behind the %v proxy", B.n, len(B.tenants), o.dbLatency), "", secs(sF.median()) + " (" + sF.walls() + ")", "",
			"< 5 s", pass(sF.median() < 5*time.Second), fmt.Sprintf("%.0f MB", sF.peakMB())})
		h.charge("apply", sF, 0)
	}

	loadAfter, _ := os.ReadFile("/proc/loadavg")
	h.notes = append(h.notes, fmt.Sprintf("load average before: %s; after: %s", strings.TrimSpace(string(loadBefore)), strings.TrimSpace(string(loadAfter))))
	return h.write()
}

// cpuModel is /proc/cpuinfo's first model name.
func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func output(name string, args ...string) string {
	b, err := exec.Command(name, args...).Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func (h *harness) write() error {
	var b strings.Builder
	o := h.o
	fmt.Fprintf(&b, "# backfill benchmarks\n\nWritten by `make bench` on %s (BENCH_SCALE=%g, %d runs a row, medians).\n\n",
		time.Now().UTC().Format("2006-01-02T15:04Z"), o.scale, o.runs)
	b.WriteString("## As an operator runs it\n\n")
	b.WriteString("The built binary (`go build -o bin/backfill ./cmd/backfill`) runs as its own process with its defaults except the flags a row names, " +
		"against tenant databases on one throwaway PostgreSQL cluster (unix socket, or a loopback TCP proxy that delays every chunk each way) " +
		"and a files API (`internal/filesapi.Server`, read with backfill's `http` collector: one GET a capture) served by another process with a delay per request. " +
		"Each backfill run starts from a new evidence store. The baselines run over the same URLs in the same run: `benchfleet fetch` " +
		"(backfill's HTTP client settings, same concurrency, JSON decoded, nothing stored) and `xargs -P C curl -o FILE`. " +
		"Ideal is N·L/C. Peak RSS is the largest of the runs' (VmHWM of the process, read every 10ms: wait4 would report benchfleet's own peak, which Linux carries into a child at exec). " +
		"The figures in parentheses are every run's wall time.\n\n")
	fmt.Fprintf(&b, "- CPU: %d cores (`nproc` %s), %s\n", runtime.NumCPU(), output("nproc"), cpuModel())
	fmt.Fprintf(&b, "- Memory: %s\n", output("sh", "-c", "free -h | awk '/^Mem:/ {print $2\" total, \"$7\" available\"}'"))
	fmt.Fprintf(&b, "- %s; backfill %s\n", output("go", "version"), output(h.bin, "--version"))
	fmt.Fprintf(&b, "- %s\n", output("postgres", "--version"))
	for _, n := range h.notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	if o.scale != 1 {
		fmt.Fprintf(&b, "- **Scaled run** (BENCH_SCALE=%g): the targets are for the full sizes, so the pass/fail column is only indicative.\n", o.scale)
	}
	b.WriteString("- **The machine is shared**: other people build and test on the same cores during the run, so wall times carry their load.\n\n")
	b.WriteString("| what | ideal | measured (median; runs) | ratio | target | | peak RSS |\n|---|---|---|---|---|---|---|\n")
	for _, r := range h.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.what, r.ideal, r.measured, r.ratio, r.target, r.verdict, r.rss)
	}
	b.WriteString("\n")
	h.writeCPU(&b)
	return os.WriteFile(h.o.out, []byte(b.String()), 0o644)
}

// writeCPU writes where each row's median run spent the machine's CPU:
// the timed process's own time (wait4's), and what the PostgreSQL cluster
// (postmaster, its backends and workers), the files API servers and the
// latency proxy spent meanwhile. Their sum over the cores is a floor no
// client can beat on this machine: tenant databases and a files API on
// other machines would not take these cores.
func (h *harness) writeCPU(b *strings.Builder) {
	if len(h.cpus) == 0 {
		return
	}
	cores := runtime.NumCPU()
	fmt.Fprintf(b, "## Where the CPU went (each row's median run)\n\n")
	fmt.Fprintf(b, "CPU seconds, user and system, spent while the run lasted: the timed process's own (from wait4), and the other processes' on this machine, read from /proc. "+
		"Their sum over the %d cores is the least wall time the run could take here, whatever the client did; "+
		"the tenant databases and the files API of a real fleet are on other machines and take none of the operator's cores.\n\n", cores)
	b.WriteString("| run | wall | timed process | PostgreSQL | files API | proxy | all | all ÷ cores | that ÷ ideal |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range h.cpus {
		floor := c.run.cpu.total().Seconds() / float64(cores)
		ratio := ""
		if c.ideal > 0 {
			ratio = fmt.Sprintf("%.2f×", floor/c.ideal)
		}
		o := c.run.cpu.others
		fmt.Fprintf(b, "| %s | %.2f s | %.2f s | %.2f s | %.2f s | %.2f s | %.2f s | %.2f s | %s |\n", c.what, c.run.wall.Seconds(), c.run.cpu.self.Seconds(),
			o["PostgreSQL"].Seconds(), o["files API"].Seconds(), o["proxy"].Seconds(), c.run.cpu.total().Seconds(), floor, ratio)
	}
	b.WriteString("\n")
}
