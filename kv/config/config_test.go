package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestByteSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"0": 0, "512": 512, "64KiB": 64 << 10, "96MiB": 96 << 20, "1GiB": 1 << 30, "2 MB": 2 << 20, "3K": 3 << 10, "7B": 7,
	} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err != nil || uint64(b) != want {
			t.Errorf("%q = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "1.5MiB", "12XB", "99999999999999999999GiB"} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q parsed as %d", bad, b)
		}
	}
	for b, want := range map[ByteSize]string{0: "0", 1000: "1000", 64 << 10: "64KiB", 96 << 20: "96MiB", 3 << 30: "3GiB", 1536 << 10: "1536KiB"} {
		if got := b.String(); got != want {
			t.Errorf("%d prints as %q, want %q", uint64(b), got, want)
		}
	}
}

func TestLoadFileAndRaftstore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.toml")
	body := `data-dir = "/tmp/s1"
addr = "127.0.0.1:0"
scheduler = "127.0.0.1:1, 127.0.0.1:2"
raft-base-tick-interval = "50ms"
region-max-size = "96KiB"
region-split-size = "64KiB"
split-check-ticks = 5
kv-compression = "zstd"
no-such-key = 1
`
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	undecoded, err := cfg.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(undecoded, []string{"no-such-key"}) {
		t.Errorf("undecoded keys %v", undecoded)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := cfg.SchedulerAddrs(); !slices.Equal(got, []string{"127.0.0.1:1", "127.0.0.1:2"}) {
		t.Errorf("scheduler addrs %v", got)
	}
	if eo := cfg.Engine(nil); eo.Compression != "zstd" {
		t.Errorf("engine compression %q", eo.Compression)
	}
	rc := cfg.Raftstore()
	if rc.RaftBaseTickInterval != 50*time.Millisecond || rc.RegionMaxSize != 96<<10 || rc.RegionSplitSize != 64<<10 || rc.SplitCheckTickTicks != 5 {
		t.Errorf("raftstore config %+v", rc)
	}
	if rc.RaftElectionTicks != 10 || rc.RegionHeartbeatTickTicks != 100 {
		t.Errorf("unset tunables lost their defaults: %+v", rc)
	}
}

func TestValidate(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"no data dir":         func(c *Config) { c.DataDir = "" },
		"bad addr":            func(c *Config) { c.Addr = "nope" },
		"advertise port 0":    func(c *Config) { c.AdvertiseAddr = "10.0.0.1:0" },
		"no scheduler":        func(c *Config) { c.Scheduler = " , " },
		"bad scheduler":       func(c *Config) { c.Scheduler = "host" },
		"bad log level":       func(c *Config) { c.LogLevel = "loud" },
		"split above max":     func(c *Config) { c.RegionMaxSize, c.RegionSplitSize = 64<<10, 96<<10 },
		"election <= hb":      func(c *Config) { c.RaftElectionTicks, c.RaftHeartbeatTicks = 2, 2 },
		"negative ticks":      func(c *Config) { c.SplitCheckTicks = -1 },
		"tick below 1ms":      func(c *Config) { c.RaftBaseTickInterval.Duration = time.Microsecond },
		"negative heartbeats": func(c *Config) { c.StoreHeartbeatInterval.Duration = -time.Second },
		"unknown compression": func(c *Config) { c.KVCompression = "lz4" },
		"tiny memtable":       func(c *Config) { c.MemTableSize = 512 << 10 },
	} {
		cfg := Default()
		mutate(&cfg)
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	cfg := Default()
	cfg.RegionMaxSize = 30 << 20 // the split size follows
	if err := cfg.Validate(); err != nil || cfg.Raftstore().RegionSplitSize != 20<<20 {
		t.Errorf("max size alone: %v, split size %d", err, cfg.Raftstore().RegionSplitSize)
	}
	def := Default()
	if err := def.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
