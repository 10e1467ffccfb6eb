package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRunRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.toml")
	if err := os.WriteFile(unknown, []byte("name = \"a\"\nno-such-key = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	malformed := filepath.Join(dir, "malformed.toml")
	if err := os.WriteFile(malformed, []byte("name = \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"version", []string{"--version"}, 0},
		{"unknown flag", []string{"--no-such-flag"}, 2},
		{"stray argument", []string{"extra"}, 2},
		{"unknown config key", []string{"--config", unknown}, 2},
		{"malformed config", []string{"--config", malformed}, 2},
		{"missing config", []string{"--config", filepath.Join(dir, "absent.toml")}, 2},
		{"bad log level", []string{"--log-level", "loud"}, 2},
		{"bad initial cluster", []string{"--name", "a", "--initial-cluster", "b=http://127.0.0.1:1"}, 2},
		{"bad lease", []string{"--leader-lease", "10ms"}, 2},
		{"unknown scheduler", []string{"--schedulers", "balance-hot-region"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(tc.args); got != tc.code {
				t.Errorf("run(%q) = %d, want %d", tc.args, got, tc.code)
			}
		})
	}
}
