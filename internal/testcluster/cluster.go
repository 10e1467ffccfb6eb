package testcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/regionkv/regionkv/internal/freeport"
	"github.com/regionkv/regionkv/kv/node"
	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/scheduler/client"
)

// DefaultStoreArgs make stores react fast: 50 ms ticks, region heartbeats
// and split checks every 10 ticks, store heartbeats every 500 ms, and small
// engines.
var DefaultStoreArgs = []string{
	"--raft-base-tick-interval", "50ms",
	"--region-heartbeat-ticks", "10",
	"--split-check-ticks", "10",
	"--store-heartbeat-interval", "500ms",
	"--memtable-size", "16MiB",
	"--block-cache-size", "8MiB",
}

// DefaultSchedulerArgs make the balance schedulers run every 200 ms.
var DefaultSchedulerArgs = []string{"--schedule-interval", "200ms"}

// quiet discards the logs of the test's own scheduler clients.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// ReadyTimeout bounds the wait for a started process to serve.
const ReadyTimeout = 30 * time.Second

// Options configures a Cluster.
type Options struct {
	// StoreArgs and SchedulerArgs are extra flags for every store and for
	// the scheduler; they come after the defaults and so override them.
	StoreArgs, SchedulerArgs []string
}

// Cluster is a scheduler and stores running as processes for one test.
type Cluster struct {
	t    *testing.T
	bins Binaries
	dir  string
	opts Options

	mu        sync.Mutex
	scheduler *Scheduler
	stores    []*Store
	sched     *client.Client
	conns     []*grpc.ClientConn
}

// New returns a cluster with nothing started. Everything it starts is
// killed when the test ends; if the test failed, the tail of every log is
// printed first.
func New(t *testing.T, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bins: Build(t), dir: t.TempDir(), opts: opts}
	t.Cleanup(c.cleanup)
	return c
}

func (c *Cluster) cleanup() {
	c.mu.Lock()
	defer c.mu.Unlock()
	procs := c.processes()
	if c.t.Failed() {
		for _, p := range procs {
			c.t.Logf("==== %s (%s): last lines of its log\n%s", p.Name, p.logPath, p.tail(80))
		}
	}
	if dir := os.Getenv(LogDirEnv); dir != "" {
		c.keepLogs(dir, procs)
	}
	if c.sched != nil {
		c.sched.Close()
	}
	for _, conn := range c.conns {
		conn.Close()
	}
	for _, p := range procs {
		p.Kill()
	}
}

// LogDirEnv names an environment variable: when set to a directory, every
// process's log is copied there (as <test>/<process>.log) when its test
// ends, e.g. for CI artifacts.
const LogDirEnv = "REGIONKV_TESTCLUSTER_LOGS"

func (c *Cluster) keepLogs(dir string, procs []*Process) {
	dst := filepath.Join(dir, strings.ReplaceAll(c.t.Name(), "/", "_"))
	if err := os.MkdirAll(dst, 0o755); err != nil {
		c.t.Logf("keep logs: %v", err)
		return
	}
	for _, p := range procs {
		if b, err := os.ReadFile(p.logPath); err == nil {
			_ = os.WriteFile(filepath.Join(dst, filepath.Base(p.logPath)), b, 0o644)
		}
	}
}

// processes returns every process; callers hold mu.
func (c *Cluster) processes() []*Process {
	var ps []*Process
	if c.scheduler != nil {
		ps = append(ps, c.scheduler.Process)
	}
	for _, s := range c.stores {
		ps = append(ps, s.Process)
	}
	return ps
}

// Scheduler is the scheduler process.
type Scheduler struct {
	*Process
	Addr, StatusAddr, DataDir string
	c                         *Cluster
}

// StartScheduler starts the scheduler (one member) and waits until it
// leads.
func (c *Cluster) StartScheduler() *Scheduler {
	c.t.Helper()
	p := freeport.Addrs(c.t, 4)
	s := &Scheduler{Addr: p[0], StatusAddr: p[1], DataDir: filepath.Join(c.dir, "scheduler"), c: c}
	args := []string{
		"--data-dir", s.DataDir, "--addr", s.Addr, "--status-addr", s.StatusAddr,
		"--etcd-client-url", "http://" + p[2], "--etcd-peer-url", "http://" + p[3],
	}
	args = append(append(args, DefaultSchedulerArgs...), c.opts.SchedulerArgs...)
	s.Process = newProcess("scheduler", c.bins.Scheduler, filepath.Join(c.dir, "scheduler.log"), args)
	c.mu.Lock()
	c.scheduler = s
	c.mu.Unlock()
	s.Restart()
	return s
}

// Restart starts the scheduler again (after Kill or Stop) with the same
// flags and data dir, and waits until it leads.
func (s *Scheduler) Restart() {
	t := s.c.t
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	err := s.waitFor(context.Background(), ReadyTimeout, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		cli, err := client.New(ctx, []string{s.Addr}, client.Options{RetryInterval: 50 * time.Millisecond, Logger: quiet})
		if err != nil {
			return err
		}
		cli.Close()
		return nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, s.tail(40))
	}
}

// Store is a store process.
type Store struct {
	*Process
	// ID is the store id, known once the store has started.
	ID                        uint64
	Addr, StatusAddr, DataDir string
	c                         *Cluster
	kv                        kvpb.KvClient
}

// StartStore starts a new store with an empty data dir, with extra flags
// after the others, and waits until it serves.
func (c *Cluster) StartStore(extra ...string) *Store {
	c.t.Helper()
	c.mu.Lock()
	if c.scheduler == nil {
		c.mu.Unlock()
		c.t.Fatal("testcluster: start the scheduler first")
	}
	n := len(c.stores) + 1
	schedAddr := c.scheduler.Addr
	c.mu.Unlock()
	p := freeport.Addrs(c.t, 2)
	s := &Store{Addr: p[0], StatusAddr: p[1], DataDir: filepath.Join(c.dir, fmt.Sprintf("store%d", n)), c: c}
	args := []string{"--data-dir", s.DataDir, "--addr", s.Addr, "--status-addr", s.StatusAddr, "--scheduler", schedAddr}
	args = append(append(append(args, DefaultStoreArgs...), c.opts.StoreArgs...), extra...)
	s.Process = newProcess(fmt.Sprintf("store%d", n), c.bins.Server, filepath.Join(c.dir, fmt.Sprintf("store%d.log", n)), args)
	conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	s.kv = kvpb.NewKvClient(conn)
	c.mu.Lock()
	c.stores = append(c.stores, s)
	c.conns = append(c.conns, conn)
	c.mu.Unlock()
	s.Restart()
	return s
}

// Restart starts the store again (after Kill or Stop) with the same flags
// and data dir, and waits until it serves.
func (s *Store) Restart() {
	t := s.c.t
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	var st node.StatusJSON
	err := s.waitFor(context.Background(), ReadyTimeout, func(ctx context.Context) error {
		var err error
		st, err = s.Status(ctx)
		return err
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, s.tail(40))
	}
	if s.ID != 0 && st.StoreID != s.ID {
		t.Fatalf("%s restarted as store %d, was store %d", s.Name, st.StoreID, s.ID)
	}
	s.ID = st.StoreID
}

// KV returns a client of the store's Kv service.
func (s *Store) KV() kvpb.KvClient { return s.kv }

// Status returns the store's /status.
func (s *Store) Status(ctx context.Context) (node.StatusJSON, error) {
	var st node.StatusJSON
	_, err := getJSON(ctx, "http://"+s.StatusAddr+"/status", &st)
	return st, err
}

// Stores returns every store started, in start order.
func (c *Cluster) Stores() []*Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Store(nil), c.stores...)
}

// Scheduler returns the scheduler process.
func (c *Cluster) Scheduler() *Scheduler {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scheduler
}

// SchedulerClient returns a client of the scheduler, made on first use.
func (c *Cluster) SchedulerClient() *client.Client {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sched == nil {
		ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
		defer cancel()
		cli, err := client.New(ctx, []string{c.scheduler.Addr}, client.Options{RetryInterval: 50 * time.Millisecond, Logger: quiet})
		if err != nil {
			c.t.Fatal(err)
		}
		c.sched = cli
	}
	return c.sched
}

// SchedulerAPI calls the scheduler's status API: method on path (e.g.
// "/api/v1/config") with a JSON body (nil: none), decoding the answer into
// out (if not nil). It returns the HTTP status.
func (c *Cluster) SchedulerAPI(ctx context.Context, method, path string, body, out any) (int, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Scheduler().StatusAddr+path, r)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	return doJSON(req, out)
}

func getJSON(ctx context.Context, url string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	return doJSON(req, out)
}

func doJSON(req *http.Request, out any) (int, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %v in %s", req.Method, req.URL, err, b)
		}
	}
	return resp.StatusCode, nil
}
