// Command regionkv-scheduler runs one member of the regionkv scheduler: ids,
// stores and the region tree, heartbeats, operators from the replica checker
// and the balance schedulers, with its metadata in an embedded etcd.
//
//	regionkv-scheduler --data-dir /var/lib/regionkv-scheduler
//
// Flags override the TOML file given with --config, whose keys are the flag
// names. A three-member scheduler is started with the same --initial-cluster
// on each member:
//
//	--name s1 --etcd-peer-url http://10.0.0.1:2390 \
//	--initial-cluster s1=http://10.0.0.1:2390,s2=http://10.0.0.2:2390,s3=http://10.0.0.3:2390
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/regionkv/regionkv/scheduler/server"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg := server.DefaultConfig()
	fs := flag.NewFlagSet("regionkv-scheduler", flag.ContinueOnError)
	configPath := fs.String("config", "", "TOML config file (flags override it)")
	version := fs.Bool("version", false, "print the version and exit")
	// The flags write into a scratch copy; only those given on the command
	// line are applied over the config file.
	flagCfg := server.DefaultConfig()
	fs.StringVar(&flagCfg.Name, "name", cfg.Name, "member name, unique within --initial-cluster")
	fs.StringVar(&flagCfg.DataDir, "data-dir", cfg.DataDir, "data directory (the embedded etcd lives in <data-dir>/etcd)")
	fs.StringVar(&flagCfg.Addr, "addr", cfg.Addr, "gRPC listen address")
	fs.StringVar(&flagCfg.AdvertiseAddr, "advertise-addr", cfg.AdvertiseAddr, "gRPC address advertised to stores and clients (default: --addr)")
	fs.StringVar(&flagCfg.StatusAddr, "status-addr", cfg.StatusAddr, "status HTTP listen address (empty: disabled)")
	fs.StringVar(&flagCfg.EtcdClientURL, "etcd-client-url", cfg.EtcdClientURL, "embedded etcd client URL")
	fs.StringVar(&flagCfg.EtcdPeerURL, "etcd-peer-url", cfg.EtcdPeerURL, "embedded etcd peer URL")
	fs.StringVar(&flagCfg.InitialCluster, "initial-cluster", cfg.InitialCluster, "members of a new scheduler cluster: name=peer-url,... (default: this member alone)")
	fs.TextVar(&flagCfg.LeaderLease, "leader-lease", cfg.LeaderLease, "how long a silent leader keeps leadership (>= 1s)")
	fs.TextVar(&flagCfg.ScheduleInterval, "schedule-interval", cfg.ScheduleInterval, "how often the balance schedulers run")
	fs.StringVar(&flagCfg.Schedulers, "schedulers", cfg.Schedulers, "balance schedulers to run, comma-separated, or none (changeable at run time: /api/v1/schedulers)")
	fs.StringVar(&flagCfg.LogLevel, "log-level", cfg.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&flagCfg.EtcdLogLevel, "etcd-log-level", cfg.EtcdLogLevel, "log level of the embedded etcd")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *version {
		fmt.Println("regionkv-scheduler", server.Version)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "regionkv-scheduler: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *configPath != "" {
		undecoded, err := cfg.LoadFile(*configPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "regionkv-scheduler:", err)
			return 2
		}
		if len(undecoded) > 0 {
			fmt.Fprintf(os.Stderr, "regionkv-scheduler: unknown keys in %s: %s\n", *configPath, strings.Join(undecoded, ", "))
			return 2
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "name":
			cfg.Name = flagCfg.Name
		case "data-dir":
			cfg.DataDir = flagCfg.DataDir
		case "addr":
			cfg.Addr = flagCfg.Addr
		case "advertise-addr":
			cfg.AdvertiseAddr = flagCfg.AdvertiseAddr
		case "status-addr":
			cfg.StatusAddr = flagCfg.StatusAddr
		case "etcd-client-url":
			cfg.EtcdClientURL = flagCfg.EtcdClientURL
		case "etcd-peer-url":
			cfg.EtcdPeerURL = flagCfg.EtcdPeerURL
		case "initial-cluster":
			cfg.InitialCluster = flagCfg.InitialCluster
		case "leader-lease":
			cfg.LeaderLease = flagCfg.LeaderLease
		case "schedule-interval":
			cfg.ScheduleInterval = flagCfg.ScheduleInterval
		case "schedulers":
			cfg.Schedulers = flagCfg.Schedulers
		case "log-level":
			cfg.LogLevel = flagCfg.LogLevel
		case "etcd-log-level":
			cfg.EtcdLogLevel = flagCfg.EtcdLogLevel
		}
	})

	level, err := server.ParseLogLevel(cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "regionkv-scheduler:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	s, err := server.New(cfg, logger)
	if err != nil {
		logger.Error("invalid configuration", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := s.Start(ctx); err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}
	<-ctx.Done()
	stop() // a second signal kills the process
	logger.Info("shutting down")
	s.Close()
	return 0
}
