// Command regionkv-server runs a regionkv store: it joins the cluster
// through the scheduler (the first store of a new cluster bootstraps it),
// holds region replicas in its data dir, and serves the Kv gRPC API and a
// status HTTP server (/status, /metrics, /debug/pprof/).
//
//	regionkv-server --data-dir /var/lib/regionkv/s1 --addr 10.0.0.1:20160 \
//	    --status-addr 10.0.0.1:20180 --scheduler 10.0.0.9:2379
//
// Flags override the TOML file given with --config, whose keys are the flag
// names; unknown keys are an error. SIGINT or SIGTERM stops the store
// gracefully; a second signal kills it.
package main

import (
	"context"
	"encoding"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/regionkv/regionkv/internal/hugepage"
	"github.com/regionkv/regionkv/kv/config"
	"github.com/regionkv/regionkv/kv/node"
)

// usages documents every config key, which is also a flag.
var usages = map[string]string{
	"data-dir":                 "data directory (raftlog/ raft log, kv/ Badger DB, snap/, LOCK)",
	"addr":                     "gRPC listen address",
	"advertise-addr":           "gRPC address other stores and clients dial (default: --addr)",
	"status-addr":              "status HTTP listen address: /status, /metrics, /debug/pprof/ (empty: disabled)",
	"scheduler":                "scheduler gRPC addresses, comma-separated",
	"log-level":                "log level: debug, info, warn, error",
	"raft-base-tick-interval":  "one raft tick (default 100ms)",
	"raft-heartbeat-ticks":     "raft heartbeat interval in ticks (default 2)",
	"raft-election-ticks":      "raft election timeout in ticks (default 10)",
	"region-max-size":          "a region larger than this splits, e.g. 144MiB (default)",
	"region-split-size":        "where a large region splits, from its start (default 96MiB)",
	"split-check-ticks":        "how often a leader measures its region, in ticks (default 100)",
	"region-heartbeat-ticks":   "how often a leader reports its region to the scheduler, in ticks (default 100)",
	"store-heartbeat-interval": "how often the store reports its statistics (default 10s)",
	"raft-workers":             "raft worker goroutines (default: one per 4 CPUs, 1 to 8)",
	"disable-lease-read":       "answer every read through a ReadIndex round, never from the leader's lease",
	"disable-huge-pages":       "do not advise the heap to use transparent huge pages (advised when the kernel's THP mode is madvise)",
	"memtable-size":            "memtable size of the kv Badger DB (default 128MiB, at least 1MiB)",
	"block-cache-size":         "block cache of the kv DB (default 256MiB)",
	"kv-compression":           "compression of the kv DB's tables: none (default), snappy or zstd",
}

// gcPercent is the store's GOGC unless the GOGC environment variable sets
// one. At Go's default of 100 the heap, which holds the kv memtable's
// 128 MiB arena, grows to twice its live size between collections, and the
// runtime hands the freed pages back to the OS and faults them in again:
// three stores under 64-client puts took 14,775 page faults per second (one
// per 4 KiB allocated) with 233 MB resident each. At 50 they took 4,209 with
// 153 MB, and did 2-7% more puts at 16 regions for the extra collections
// (docs/BENCHMARKS.md).
const gcPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg := config.Default()
	fs := flag.NewFlagSet("regionkv-server", flag.ContinueOnError)
	configPath := fs.String("config", "", "TOML config file (flags override it)")
	version := fs.Bool("version", false, "print the version and exit")
	// The flags write into a scratch copy; only those given on the command
	// line are applied over the config file.
	flagCfg := config.Default()
	fields := registerFlags(fs, &flagCfg)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *version {
		fmt.Println("regionkv-server", node.Version)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "regionkv-server: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *configPath != "" {
		undecoded, err := cfg.LoadFile(*configPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "regionkv-server:", err)
			return 2
		}
		if len(undecoded) > 0 {
			fmt.Fprintf(os.Stderr, "regionkv-server: unknown keys in %s: %s\n", *configPath, strings.Join(undecoded, ", "))
			return 2
		}
	}
	dst, src := reflect.ValueOf(&cfg).Elem(), reflect.ValueOf(&flagCfg).Elem()
	fs.Visit(func(f *flag.Flag) {
		if i, ok := fields[f.Name]; ok {
			dst.Field(i).Set(src.Field(i))
		}
	})
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "regionkv-server: invalid configuration:", err)
		return 2
	}

	level, _ := config.ParseLogLevel(cfg.LogLevel) // checked by Validate
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.Start(ctx, cfg, logger)
	if err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}
	if !cfg.DisableHugePages {
		// After Start: the kv memtable's arena is mapped by now.
		hugepage.Keep(ctx, time.Second, logger)
	}
	code := 0
	select {
	case <-ctx.Done():
		logger.Info("signal received, shutting down")
	case err := <-n.Err():
		logger.Error("shutting down after a failure", "err", err)
		code = 1
	}
	stop() // a second signal kills the process
	n.Stop()
	return code
}

// registerFlags defines one flag per key of config.Config (its toml tag),
// writing into cfg, and returns the field index of each flag.
func registerFlags(fs *flag.FlagSet, cfg *config.Config) map[string]int {
	v := reflect.ValueOf(cfg).Elem()
	fields := make(map[string]int)
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("toml")
		usage, ok := usages[name]
		if !ok {
			panic(fmt.Sprintf("regionkv-server: config key %q has no usage", name))
		}
		switch p := v.Field(i).Addr().Interface().(type) {
		case *string:
			fs.StringVar(p, name, *p, usage)
		case *int:
			fs.IntVar(p, name, *p, usage)
		case *bool:
			fs.BoolVar(p, name, *p, usage)
		case encoding.TextUnmarshaler:
			fs.TextVar(p, name, v.Field(i).Interface().(encoding.TextMarshaler), usage)
		default:
			panic(fmt.Sprintf("regionkv-server: config key %q has unsupported type %T", name, p))
		}
		fields[name] = i
	}
	return fields
}
