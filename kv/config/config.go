// Package config is a store's configuration (regionkv-server): its
// defaults, its TOML form, where the keys are the command-line flag names,
// and its validation. Raftstore() turns it into the raftstore.Config the
// store runs with.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/regionkv/regionkv/internal/tomlconf"
	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/raftstore"
)

// Defaults (DESIGN §1: loopback by default).
const (
	DefaultDataDir    = "data/store"
	DefaultAddr       = "127.0.0.1:20160"
	DefaultStatusAddr = "127.0.0.1:20180"
	DefaultScheduler  = "127.0.0.1:2379"
)

// Config configures a store. The TOML keys are the flag names. Zero raft
// tunables mean the raftstore's defaults (raftstore.DefaultConfig).
type Config struct {
	// DataDir holds the store's two Badger DBs (raft/, kv/), its snapshot
	// files (snap/) and the LOCK file.
	DataDir string `toml:"data-dir"`
	// Addr is the gRPC listen address; AdvertiseAddr is what other stores
	// and clients are told to dial (default: Addr, with the actual port if
	// Addr's is 0).
	Addr          string `toml:"addr"`
	AdvertiseAddr string `toml:"advertise-addr"`
	// StatusAddr is the status HTTP listen address ("" disables it).
	StatusAddr string `toml:"status-addr"`
	// Scheduler lists the scheduler members' gRPC addresses,
	// comma-separated.
	Scheduler string `toml:"scheduler"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log-level"`

	// RaftBaseTickInterval is one raft tick; heartbeats and elections are
	// counted in ticks.
	RaftBaseTickInterval Duration `toml:"raft-base-tick-interval"`
	RaftHeartbeatTicks   int      `toml:"raft-heartbeat-ticks"`
	RaftElectionTicks    int      `toml:"raft-election-ticks"`
	// RegionMaxSize: a region larger than this splits, at about
	// RegionSplitSize from its start.
	RegionMaxSize   ByteSize `toml:"region-max-size"`
	RegionSplitSize ByteSize `toml:"region-split-size"`
	// SplitCheckTicks is how often (in ticks) a leader measures its region;
	// RegionHeartbeatTicks how often it reports it to the scheduler.
	SplitCheckTicks      int `toml:"split-check-ticks"`
	RegionHeartbeatTicks int `toml:"region-heartbeat-ticks"`
	// StoreHeartbeatInterval is how often the store reports its statistics;
	// the scheduler considers a store down after max-store-down-time
	// without one.
	StoreHeartbeatInterval Duration `toml:"store-heartbeat-interval"`
	// RaftWorkers is the size of the raft worker pool.
	RaftWorkers int `toml:"raft-workers"`
	// DisableLeaseRead makes every read take a ReadIndex round instead of
	// being answered from the leader's lease.
	DisableLeaseRead bool `toml:"disable-lease-read"`
	// DisableHugePages stops the process from advising its heap to use
	// transparent huge pages (internal/hugepage).
	DisableHugePages bool `toml:"disable-huge-pages"`

	// MemTableSize and BlockCacheSize size the kv Badger DB (0: the engine's
	// defaults, 128 MiB and 256 MiB).
	MemTableSize   ByteSize `toml:"memtable-size"`
	BlockCacheSize ByteSize `toml:"block-cache-size"`
	// KVCompression is how the kv DB compresses its tables: none (the
	// default), snappy or zstd (engine.Options.Compression).
	KVCompression string `toml:"kv-compression"`
}

// Default returns the default configuration.
func Default() Config {
	return Config{
		DataDir:    DefaultDataDir,
		Addr:       DefaultAddr,
		StatusAddr: DefaultStatusAddr,
		Scheduler:  DefaultScheduler,
		LogLevel:   "info",
	}
}

// LoadFile reads a TOML file over cfg. Keys the Config does not know are
// returned as undecoded (the caller reports them); a malformed file is an
// error.
func (cfg *Config) LoadFile(path string) (undecoded []string, err error) {
	return tomlconf.Load(path, cfg)
}

// SchedulerAddrs returns the scheduler addresses.
func (cfg *Config) SchedulerAddrs() []string {
	var addrs []string
	for _, a := range strings.Split(cfg.Scheduler, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// Validate reports every problem of cfg at once.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.DataDir == "" {
		errs = append(errs, errors.New("data-dir is required"))
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr %q: %w", cfg.Addr, err))
	}
	if cfg.AdvertiseAddr != "" {
		if host, port, err := net.SplitHostPort(cfg.AdvertiseAddr); err != nil {
			errs = append(errs, fmt.Errorf("advertise-addr %q: %w", cfg.AdvertiseAddr, err))
		} else if host == "" || port == "0" {
			errs = append(errs, fmt.Errorf("advertise-addr %q must name a host and a port", cfg.AdvertiseAddr))
		}
	}
	if cfg.StatusAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.StatusAddr); err != nil {
			errs = append(errs, fmt.Errorf("status-addr %q: %w", cfg.StatusAddr, err))
		}
	}
	addrs := cfg.SchedulerAddrs()
	if len(addrs) == 0 {
		errs = append(errs, errors.New("scheduler: at least one scheduler address is required"))
	}
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("scheduler address %q: %w", a, err))
		}
	}
	if _, err := ParseLogLevel(cfg.LogLevel); err != nil {
		errs = append(errs, err)
	}
	for name, v := range map[string]int{
		"raft-heartbeat-ticks": cfg.RaftHeartbeatTicks, "raft-election-ticks": cfg.RaftElectionTicks,
		"split-check-ticks": cfg.SplitCheckTicks, "region-heartbeat-ticks": cfg.RegionHeartbeatTicks,
		"raft-workers": cfg.RaftWorkers,
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s %d must not be negative", name, v))
		}
	}
	for name, v := range map[string]time.Duration{
		"raft-base-tick-interval": cfg.RaftBaseTickInterval.Duration, "store-heartbeat-interval": cfg.StoreHeartbeatInterval.Duration,
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s %v must not be negative", name, v))
		}
	}
	if cfg.MemTableSize != 0 && cfg.MemTableSize < minMemTableSize {
		// The kv DB's value threshold is 15% of it, and must leave region
		// states in the LSM tree (raftstore.NewStore).
		errs = append(errs, fmt.Errorf("memtable-size %d is below %d", cfg.MemTableSize, minMemTableSize))
	}
	if err := engine.CheckCompression(cfg.KVCompression); err != nil {
		errs = append(errs, fmt.Errorf("kv-compression: %w", err))
	}
	if err := cfg.Raftstore().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// minMemTableSize is the smallest memtable-size accepted.
const minMemTableSize = 1 << 20

// Raftstore returns the raftstore configuration: the tunables set here over
// the raftstore's defaults. The caller sets Scheduler and Logger.
func (cfg *Config) Raftstore() raftstore.Config {
	c := raftstore.DefaultConfig()
	setIf(&c.RaftBaseTickInterval, cfg.RaftBaseTickInterval.Duration)
	setIf(&c.RaftHeartbeatTicks, cfg.RaftHeartbeatTicks)
	setIf(&c.RaftElectionTicks, cfg.RaftElectionTicks)
	setIf(&c.RegionMaxSize, uint64(cfg.RegionMaxSize))
	setIf(&c.RegionSplitSize, uint64(cfg.RegionSplitSize))
	if cfg.RegionMaxSize > 0 && cfg.RegionSplitSize == 0 {
		// Keep the default ratio (split at two thirds of the max).
		c.RegionSplitSize = uint64(cfg.RegionMaxSize) * 2 / 3
	}
	if cfg.RegionSplitSize > 0 && cfg.RegionMaxSize == 0 && c.RegionSplitSize > c.RegionMaxSize {
		c.RegionMaxSize = c.RegionSplitSize * 3 / 2
	}
	setIf(&c.SplitCheckTickTicks, cfg.SplitCheckTicks)
	setIf(&c.RegionHeartbeatTickTicks, cfg.RegionHeartbeatTicks)
	setIf(&c.StoreHeartbeatInterval, cfg.StoreHeartbeatInterval.Duration)
	setIf(&c.RaftWorkers, cfg.RaftWorkers)
	c.DisableLeaseRead = cfg.DisableLeaseRead
	return c
}

// Engine returns the engine options.
func (cfg *Config) Engine(logger *slog.Logger) engine.Options {
	return engine.Options{MemTableSize: int64(cfg.MemTableSize), BlockCacheSize: int64(cfg.BlockCacheSize),
		Compression: cfg.KVCompression, Logger: logger}
}

func setIf[T comparable](field *T, v T) {
	var zero T
	if v != zero {
		*field = v
	}
}

// ParseLogLevel parses debug, info, warn or error.
func ParseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// Duration is a time.Duration written as "3s" in TOML and flags.
type Duration = tomlconf.Duration

// ByteSize is a size in bytes, written as a number with an optional unit:
// "96MiB", "64KiB", "1GiB", "512" (B, KiB, MiB, GiB; KB, MB and GB mean the
// same binary units, as in TiKV).
type ByteSize uint64

var byteUnits = []struct {
	suffix string
	mult   uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	mult := uint64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("size %q: want a number of bytes with an optional unit (KiB, MiB, GiB)", text)
	}
	if n > ^uint64(0)/mult {
		return fmt.Errorf("size %q is too large", text)
	}
	*b = ByteSize(n * mult)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (b ByteSize) MarshalText() ([]byte, error) {
	for i := 2; i >= 0; i-- { // GiB, MiB, KiB: the largest unit that divides
		if u, m := byteUnits[i], uint64(b); m > 0 && m%u.mult == 0 {
			return []byte(strconv.FormatUint(m/u.mult, 10) + u.suffix), nil
		}
	}
	return []byte(strconv.FormatUint(uint64(b), 10)), nil
}

func (b ByteSize) String() string {
	t, _ := b.MarshalText()
	return string(t)
}
