package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/regionkv/regionkv/internal/tomlconf"
	"github.com/regionkv/regionkv/scheduler/schedulers"
)

// Defaults of Config (DESIGN §1: everything on loopback by default).
const (
	DefaultName          = "scheduler"
	DefaultDataDir       = "regionkv-scheduler"
	DefaultAddr          = "127.0.0.1:2379"
	DefaultStatusAddr    = "127.0.0.1:2381"
	DefaultEtcdClientURL = "http://127.0.0.1:2389"
	DefaultEtcdPeerURL   = "http://127.0.0.1:2390"
	DefaultLeaderLease   = 3 * time.Second
	DefaultStartTimeout  = 60 * time.Second
	// DefaultScheduleInterval is how often the balance schedulers run.
	DefaultScheduleInterval = 500 * time.Millisecond
)

// Config configures a scheduler member. The TOML keys are the flag names.
type Config struct {
	// Name identifies the member in --initial-cluster; unique per member.
	Name string `toml:"name"`
	// DataDir holds the embedded etcd's data (DataDir/etcd).
	DataDir string `toml:"data-dir"`
	// Addr is the gRPC listen address; AdvertiseAddr what clients are told
	// to dial (default: Addr, with the actual port when Addr's is 0).
	Addr          string `toml:"addr"`
	AdvertiseAddr string `toml:"advertise-addr"`
	// StatusAddr is the status HTTP listen address ("" disables it).
	StatusAddr string `toml:"status-addr"`
	// EtcdClientURL and EtcdPeerURL are the embedded etcd's client and peer
	// URLs (listened on and advertised).
	EtcdClientURL string `toml:"etcd-client-url"`
	EtcdPeerURL   string `toml:"etcd-peer-url"`
	// InitialCluster lists the members of a new scheduler cluster as
	// "name=peer-url,..."; default: this member alone. Ignored once the data
	// dir holds an etcd.
	InitialCluster string `toml:"initial-cluster"`
	// LeaderLease is how long a leader that stopped renewing its lease
	// keeps leadership (whole seconds, >= 1s).
	LeaderLease Duration `toml:"leader-lease"`
	// StartTimeout bounds the wait for the embedded etcd to be ready (with
	// several members, for a quorum of them to start).
	StartTimeout Duration `toml:"start-timeout"`
	// LogLevel is debug, info, warn or error; EtcdLogLevel the same for the
	// embedded etcd's own logs (default warn).
	LogLevel     string `toml:"log-level"`
	EtcdLogLevel string `toml:"etcd-log-level"`

	// ScheduleInterval is how often the balance schedulers run.
	ScheduleInterval Duration `toml:"schedule-interval"`
	// Schedulers lists the schedulers that run from the start,
	// comma-separated (default: balance-leader,balance-region; "none" for
	// none). They can be changed at run time through the status API.
	Schedulers string `toml:"schedulers"`

	// IDBatch is how many ids one persisted reservation covers (0: default).
	IDBatch uint64 `toml:"id-batch"`
	// EtcdUnsafeNoFsync turns off the embedded etcd's fsyncs. Tests only:
	// a crash loses metadata.
	EtcdUnsafeNoFsync bool `toml:"etcd-unsafe-no-fsync"`
}

// Duration is a time.Duration written as "3s" in TOML and flags.
type Duration = tomlconf.Duration

// DefaultConfig returns the default configuration.
func DefaultConfig() Config {
	return Config{
		Name:             DefaultName,
		DataDir:          DefaultDataDir,
		Addr:             DefaultAddr,
		StatusAddr:       DefaultStatusAddr,
		EtcdClientURL:    DefaultEtcdClientURL,
		EtcdPeerURL:      DefaultEtcdPeerURL,
		LeaderLease:      Duration{Duration: DefaultLeaderLease},
		StartTimeout:     Duration{Duration: DefaultStartTimeout},
		ScheduleInterval: Duration{Duration: DefaultScheduleInterval},
		Schedulers:       strings.Join(schedulers.Known(), ","),
		LogLevel:         "info",
		EtcdLogLevel:     "warn",
	}
}

// LoadFile reads a TOML file over cfg. Keys the Config does not know are
// returned as undecoded (the caller reports them); a malformed file is an
// error.
func (cfg *Config) LoadFile(path string) (undecoded []string, err error) {
	return tomlconf.Load(path, cfg)
}

// Validate checks cfg and fills derived defaults (scheme-less URLs get
// http://, InitialCluster defaults to this member alone).
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.Name == "" || strings.ContainsAny(cfg.Name, "=,") {
		errs = append(errs, fmt.Errorf("name %q must be non-empty without '=' or ','", cfg.Name))
	}
	if cfg.DataDir == "" {
		errs = append(errs, errors.New("data-dir is required"))
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr %q: %w", cfg.Addr, err))
	}
	if cfg.AdvertiseAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.AdvertiseAddr); err != nil {
			errs = append(errs, fmt.Errorf("advertise-addr %q: %w", cfg.AdvertiseAddr, err))
		}
	}
	if cfg.StatusAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.StatusAddr); err != nil {
			errs = append(errs, fmt.Errorf("status-addr %q: %w", cfg.StatusAddr, err))
		}
	}
	var err error
	if cfg.EtcdClientURL, err = normalizeURL(cfg.EtcdClientURL); err != nil {
		errs = append(errs, fmt.Errorf("etcd-client-url: %w", err))
	}
	if cfg.EtcdPeerURL, err = normalizeURL(cfg.EtcdPeerURL); err != nil {
		errs = append(errs, fmt.Errorf("etcd-peer-url: %w", err))
	}
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.Name + "=" + cfg.EtcdPeerURL
	} else if err := checkInitialCluster(cfg.InitialCluster, cfg.Name); err != nil {
		errs = append(errs, err)
	}
	if cfg.LeaderLease.Duration < time.Second {
		errs = append(errs, fmt.Errorf("leader-lease %v must be at least 1s", cfg.LeaderLease))
	}
	if cfg.StartTimeout.Duration <= 0 {
		cfg.StartTimeout.Duration = DefaultStartTimeout
	}
	if cfg.ScheduleInterval.Duration <= 0 {
		cfg.ScheduleInterval.Duration = DefaultScheduleInterval
	}
	if _, err := cfg.schedulerNames(); err != nil {
		errs = append(errs, err)
	}
	if _, err := ParseLogLevel(cfg.LogLevel); err != nil {
		errs = append(errs, err)
	}
	switch cfg.EtcdLogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("etcd-log-level %q: want debug, info, warn or error", cfg.EtcdLogLevel))
	}
	return errors.Join(errs...)
}

// schedulerNames returns the names in Schedulers, checked.
func (cfg *Config) schedulerNames() ([]string, error) {
	if cfg.Schedulers == "none" || cfg.Schedulers == "" {
		return nil, nil
	}
	names := strings.Split(cfg.Schedulers, ",")
	for _, n := range names {
		if !slices.Contains(schedulers.Known(), n) {
			return nil, fmt.Errorf("schedulers: unknown scheduler %q (known: %s)", n, strings.Join(schedulers.Known(), ", "))
		}
	}
	return names, nil
}

func normalizeURL(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty URL")
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" {
		return "", fmt.Errorf("%q: only http:// is supported", s)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	return u.String(), nil
}

// checkInitialCluster checks "name=url,name=url" and that name is in it.
func checkInitialCluster(ic, name string) error {
	found := false
	for _, m := range strings.Split(ic, ",") {
		n, u, ok := strings.Cut(m, "=")
		if !ok || n == "" {
			return fmt.Errorf("initial-cluster %q: want name=peer-url,...", ic)
		}
		if _, err := url.Parse(u); err != nil {
			return fmt.Errorf("initial-cluster %q: %w", ic, err)
		}
		found = found || n == name
	}
	if !found {
		return fmt.Errorf("initial-cluster %q does not name this member %q", ic, name)
	}
	return nil
}

// ParseLogLevel parses debug, info, warn or error.
func ParseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
