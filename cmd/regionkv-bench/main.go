// Command regionkv-bench is a load generator for a regionkv cluster. It
// talks to the cluster through the Go client (kv/client), like an
// application would.
//
//	regionkv-bench --workload put --clients 64 --duration 10s
//	regionkv-bench --workload mixed --read-ratio 0.9 --preload --keys 100000
//	regionkv-bench --workload scan --scan-length 50 --preload --json
//
// Workloads: put, get, mixed (gets with probability --read-ratio, puts
// otherwise) and scan (forward scans of --scan-length pairs). Keys are
// drawn from --keys keys, uniformly or with a zipfian skew; each is
// --key-size bytes ("k" and a zero-padded number), values --value-size
// bytes. --preload writes every key first. The run lasts --duration, or
// --count operations, after --warmup (not measured).
//
// While it runs, a progress line goes to stderr (when stderr is a terminal,
// or with --progress). The final report gives the throughput, latency
// percentiles (p50, p95, p99, p99.9, max; from an HDR histogram) per
// operation, and the errors by kind; --json prints it as JSON on stdout.
// Gets of missing keys count as "not found", not as errors. The exit code is
// 0 if no operation failed, 1 if some did, 2 on bad flags.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/regionkv/regionkv/kv/client"
)

// SchedulerEnv names the environment variable that sets the default of
// --scheduler.
const SchedulerEnv = "REGIONKV_SCHEDULER"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is the benchmark's flags.
type config struct {
	schedulers   string
	workload     string
	readRatio    float64
	keySize      int
	valueSize    int
	keys         int
	distribution string
	zipfS        float64
	preload      bool
	clients      int
	duration     time.Duration
	count        int64
	warmup       time.Duration
	scanLength   int
	timeout      time.Duration
	retryUnknown bool
	progress     bool
	jsonOut      bool
	seed         uint64
	conns        int
	unary        bool
	cpuProfile   string
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{}
	def := os.Getenv(SchedulerEnv)
	if def == "" {
		def = "127.0.0.1:2379"
	}
	fs := flag.NewFlagSet("regionkv-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.schedulers, "scheduler", def, "scheduler gRPC address(es), comma-separated (env "+SchedulerEnv+")")
	fs.StringVar(&cfg.workload, "workload", "mixed", "put, get, mixed or scan")
	fs.Float64Var(&cfg.readRatio, "read-ratio", 0.5, "mixed: the fraction of operations that are gets")
	fs.IntVar(&cfg.keySize, "key-size", 16, "key size in bytes")
	fs.IntVar(&cfg.valueSize, "value-size", 256, "value size in bytes")
	fs.IntVar(&cfg.keys, "keys", 100_000, "number of distinct keys")
	fs.StringVar(&cfg.distribution, "distribution", "uniform", "key distribution: uniform or zipfian")
	fs.Float64Var(&cfg.zipfS, "zipf-s", 1.1, "zipfian: the skew exponent s (> 1; larger is more skewed)")
	fs.BoolVar(&cfg.preload, "preload", false, "write every key before the run")
	fs.IntVar(&cfg.clients, "clients", 16, "concurrent clients (goroutines sharing one Go client)")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to run (after the warm-up)")
	fs.Int64Var(&cfg.count, "count", 0, "run this many operations instead of --duration (0: use --duration)")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "run this long first, unmeasured")
	fs.IntVar(&cfg.scanLength, "scan-length", 10, "scan: pairs per scan")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "give up on one operation (and on finding the scheduler) after this long")
	fs.BoolVar(&cfg.retryUnknown, "retry-unknown", false, "retry writes whose outcome is unknown instead of counting them as errors")
	fs.BoolVar(&cfg.progress, "progress", false, "print the progress line even when stderr is not a terminal")
	fs.BoolVar(&cfg.jsonOut, "json", false, "print the report as JSON on stdout")
	fs.Uint64Var(&cfg.seed, "seed", 0, "random seed (0: from the clock)")
	fs.IntVar(&cfg.conns, "conns", 0, "gRPC connections per store (0: one per 16 clients, at least 2)")
	fs.BoolVar(&cfg.unary, "unary", false, "send each get, put and delete as its own gRPC call, not on the client's batch streams")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the benchmark process to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return cfg, cfg.validate()
}

func (c *config) validate() error {
	switch c.workload {
	case "put", "get", "mixed", "scan":
	default:
		return fmt.Errorf("--workload %q: want put, get, mixed or scan", c.workload)
	}
	switch {
	case c.readRatio < 0 || c.readRatio > 1:
		return fmt.Errorf("--read-ratio %v: want 0 to 1", c.readRatio)
	case c.keys <= 0:
		return fmt.Errorf("--keys must be positive")
	case c.keySize < 1+len(fmt.Sprint(c.keys-1)):
		return fmt.Errorf("--key-size %d is too small for %d keys (want at least %d)", c.keySize, c.keys, 1+len(fmt.Sprint(c.keys-1)))
	case c.keySize > 8<<10:
		return fmt.Errorf("--key-size %d: at most 8 KiB", c.keySize)
	case c.valueSize < 0 || c.valueSize > 8<<20:
		return fmt.Errorf("--value-size %d: want 0 to 8 MiB", c.valueSize)
	case c.distribution != "uniform" && c.distribution != "zipfian":
		return fmt.Errorf("--distribution %q: want uniform or zipfian", c.distribution)
	case c.distribution == "zipfian" && c.zipfS <= 1:
		return fmt.Errorf("--zipf-s %v: must be > 1", c.zipfS)
	case c.clients <= 0:
		return fmt.Errorf("--clients must be positive")
	case c.conns < 0 || c.conns > 64:
		return fmt.Errorf("--conns %d: want 0 to 64", c.conns)
	case c.count < 0, c.count == 0 && c.duration <= 0:
		return fmt.Errorf("give a positive --duration or --count")
	case c.warmup < 0:
		return fmt.Errorf("--warmup must not be negative")
	case c.scanLength <= 0 || c.scanLength > 100_000:
		return fmt.Errorf("--scan-length %d: want 1 to 100000", c.scanLength)
	case c.timeout <= 0:
		return fmt.Errorf("--timeout must be positive")
	}
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	return nil
}

func (c *config) schedulerAddrs() []string {
	var addrs []string
	for _, s := range strings.Split(c.schedulers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			addrs = append(addrs, s)
		}
	}
	return addrs
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "regionkv-bench:", err)
		return 2
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	cli, err := client.New(cctx, cfg.schedulerAddrs(), client.Options{
		Timeout:             cfg.timeout,
		RetryUnknownOutcome: cfg.retryUnknown,
		ConnsPerStore:       cmp.Or(cfg.conns, max(2, cfg.clients/16)),
		UnaryCalls:          cfg.unary,
	})
	cancel()
	if err != nil {
		fmt.Fprintln(stderr, "regionkv-bench:", err)
		return 1
	}
	defer cli.Close()

	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "regionkv-bench: cpu profile:", err)
			return 1
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	b := newBench(cfg, cli, stderr)
	if cfg.preload {
		if err := b.preload(ctx); err != nil {
			fmt.Fprintln(stderr, "regionkv-bench: preload:", err)
			return 1
		}
	}
	rep := b.run(ctx)
	if cfg.jsonOut {
		err = rep.writeJSON(stdout)
	} else {
		err = rep.writeText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "regionkv-bench:", err)
		return 1
	}
	if rep.Errors.Total > 0 {
		return 1
	}
	return 0
}
