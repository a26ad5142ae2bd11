package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"backfill/internal/filesapi"
)

// The helper processes: each runs apart from the harness and from backfill,
// so that neither's CPU or memory is counted against the other.

// runServe serves the files API (filesapi.Server) over --root with a delay
// per request, prints its address on stdout and serves until killed.
func runServe(args []string) error {
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	root := fl.String("root", "", "directory of <workspace_id>/config.yaml")
	token := fl.String("token", "", "bearer token required")
	latency := fl.Duration("latency", 0, "delay added to every request")
	if err := fl.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	srv := &http.Server{Handler: (&filesapi.Server{Root: *root, Token: *token, Latency: *latency}).Handler(),
		ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// runProxy accepts TCP connections and relays each to the unix socket
// --target, delaying every chunk by --delay in each direction, as a link
// with that one-way latency and no bandwidth limit would.
func runProxy(args []string) error {
	fl := flag.NewFlagSet("proxy", flag.ContinueOnError)
	target := fl.String("target", "", "unix socket to relay to")
	delay := fl.Duration("delay", 0, "one-way delay added in each direction")
	if err := fl.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go relay(c, *target, *delay)
	}
}

func relay(client net.Conn, target string, delay time.Duration) {
	// Connection setup pays the round trip a remote server would.
	time.Sleep(delay)
	server, err := net.Dial("unix", target)
	if err != nil {
		client.Close()
		return
	}
	time.Sleep(delay)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); delayed(server, client, delay) }()
	go func() { defer wg.Done(); delayed(client, server, delay) }()
	wg.Wait()
	client.Close()
	server.Close()
}

// delayed copies src to dst, each chunk written delay after it was read;
// reads go on meanwhile, so latency does not cap throughput.
func delayed(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	ch := make(chan chunk, 4096)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 64<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{buf[:n], time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.b); err != nil {
			// The other side is gone: end both directions.
			src.Close()
			dst.Close()
			for range ch {
			}
			return
		}
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// runFetch is the bare fetcher: every URL of --urls fetched with -c
// requests in flight through a client configured as backfill's http and
// files_api collectors configure theirs (internal/collector defaultClient),
// the JSON field decoded, nothing stored.
func runFetch(args []string) error {
	fl := flag.NewFlagSet("fetch", flag.ContinueOnError)
	urlsFile := fl.String("urls", "", "file of URLs, one a line")
	token := fl.String("token", "", "bearer token")
	conc := fl.Int("c", 64, "requests in flight")
	if err := fl.Parse(args); err != nil {
		return err
	}
	urls, err := readLines(*urlsFile)
	if err != nil {
		return err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 90 * time.Second
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ExpectContinueTimeout = time.Second
	client := &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	var failed, bytes atomic.Int64
	eachAtOnce(len(urls), *conc, func(i int) {
		n, err := fetchOne(client, urls[i], *token)
		if err != nil {
			failed.Add(1)
			return
		}
		bytes.Add(int64(n))
	})
	if failed.Load() > 0 {
		return fmt.Errorf("%d of %d fetches failed", failed.Load(), len(urls))
	}
	fmt.Printf("%d fetched, %d bytes\n", len(urls), bytes.Load())
	return nil
}

func fetchOne(client *http.Client, url, token string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // backfill's default --timeout
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20+1)) // backfill's default --max-bytes
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var r filesapi.Response
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, err
	}
	return len(r.Content), nil
}

func readLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// helper is a helper process started from this binary.
type helper struct {
	cmd  *exec.Cmd
	addr string
}

// startHelper starts `benchfleet NAME ARGS...` and returns once it has
// printed its address. It dies with the harness (Pdeathsig).
func startHelper(name string, args ...string) (*helper, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{name}, args...)...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("%s: no address: %w", name, err)
	}
	return &helper{cmd: cmd, addr: strings.TrimSpace(line)}, nil
}

func (h *helper) stop() {
	h.cmd.Process.Signal(syscall.SIGTERM)
	if err := h.cmd.Wait(); err != nil && !errors.As(err, new(*exec.ExitError)) {
		fmt.Fprintf(os.Stderr, "benchfleet: helper: %v\n", err)
	}
}

// runConnect is the bare lister: every DSN of --dsns connected to with -c
// connections being opened at once, one query (the workspaces' ids) and a
// close. It is what no tool listing tenants can do without, so it bounds a
// run over many tenant databases that share this machine's cores.
func runConnect(args []string) error {
	fl := flag.NewFlagSet("connect", flag.ContinueOnError)
	dsnsFile := fl.String("dsns", "", "file of DSNs, one a line")
	conc := fl.Int("c", 128, "connections at once")
	if err := fl.Parse(args); err != nil {
		return err
	}
	dsns, err := readLines(*dsnsFile)
	if err != nil {
		return err
	}
	var rows atomic.Int64
	errs := make(chan error, len(dsns))
	eachAtOnce(len(dsns), *conc, func(i int) {
		n, err := listOne(dsns[i])
		if err != nil {
			errs <- err
			return
		}
		rows.Add(n)
	})
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Printf("%d databases listed, %d rows\n", len(dsns), rows.Load())
	return nil
}

func listOne(dsn string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	rs, err := conn.Query(ctx, "SELECT id FROM public.workspaces")
	if err != nil {
		return 0, err
	}
	var n int64
	for rs.Next() {
		n++
	}
	return n, rs.Err()
}

// eachAtOnce calls fn for every index below n from conc goroutines, each
// taking the next index as it finishes one, and returns when all are done.
func eachAtOnce(n, conc int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}
