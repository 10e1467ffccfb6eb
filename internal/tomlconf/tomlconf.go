// Package tomlconf holds what the server's and the scheduler's TOML config
// files share: reading a file over a config struct, and durations written
// as "100ms".
package tomlconf

import (
	"fmt"
	"os"
	"time"

	"github.com/BurntSushi/toml"
)

// Load reads the TOML file at path over cfg (a pointer to a struct). Keys cfg
// does not know are returned as undecoded (the caller reports them); a
// malformed file is an error.
func Load(path string, cfg any) (undecoded []string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	md, err := toml.Decode(string(b), cfg)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	for _, k := range md.Undecoded() {
		undecoded = append(undecoded, k.String())
	}
	return undecoded, nil
}

// Duration is a time.Duration written as "100ms" in TOML and flags.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
