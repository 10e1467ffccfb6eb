package main

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/regionkv/regionkv/kv/config"
)

func TestRunRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.toml")
	if err := os.WriteFile(unknown, []byte("data-dir = \"x\"\nno-such-key = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	malformed := filepath.Join(dir, "malformed.toml")
	if err := os.WriteFile(malformed, []byte("data-dir = \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"version", []string{"--version"}, 0},
		{"help", []string{"--help"}, 0},
		{"unknown flag", []string{"--no-such-flag"}, 2},
		{"stray argument", []string{"extra"}, 2},
		{"unknown config key", []string{"--config", unknown}, 2},
		{"malformed config", []string{"--config", malformed}, 2},
		{"missing config", []string{"--config", filepath.Join(dir, "absent.toml")}, 2},
		{"bad log level", []string{"--log-level", "loud"}, 2},
		{"bad size", []string{"--region-max-size", "huge"}, 2},
		{"bad duration", []string{"--raft-base-tick-interval", "often"}, 2},
		{"split above max", []string{"--region-max-size", "1MiB", "--region-split-size", "2MiB"}, 2},
		{"no scheduler", []string{"--scheduler", ""}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(tc.args); got != tc.code {
				t.Errorf("run(%q) = %d, want %d", tc.args, got, tc.code)
			}
		})
	}
}

// TestEveryKeyIsAFlag: each config key has a flag, and a flag given on the
// command line lands in its field.
func TestEveryKeyIsAFlag(t *testing.T) {
	var cfg config.Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fields := registerFlags(fs, &cfg)
	if n := reflect.TypeOf(cfg).NumField(); len(fields) != n || len(usages) != n {
		t.Fatalf("%d flags and %d usages for %d config keys", len(fields), len(usages), n)
	}
	if err := fs.Parse([]string{"--region-split-size", "64KiB", "--raft-workers", "3", "--raft-base-tick-interval", "50ms", "--addr", "a:1"}); err != nil {
		t.Fatal(err)
	}
	if cfg.RegionSplitSize != 64<<10 || cfg.RaftWorkers != 3 || cfg.RaftBaseTickInterval.Milliseconds() != 50 || cfg.Addr != "a:1" {
		t.Errorf("parsed %+v", cfg)
	}
}
