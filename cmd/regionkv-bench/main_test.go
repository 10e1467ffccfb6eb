package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/kv/client"
)

func TestFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		err  string
	}{
		{[]string{}, ""},
		{[]string{"--workload", "scan", "--scan-length", "5", "--distribution", "zipfian"}, ""},
		{[]string{"--workload", "delete"}, "--workload"},
		{[]string{"--read-ratio", "1.5"}, "--read-ratio"},
		{[]string{"--keys", "100000", "--key-size", "5"}, "too small"},
		{[]string{"--distribution", "zipfian", "--zipf-s", "1"}, "--zipf-s"},
		{[]string{"--clients", "0"}, "--clients"},
		{[]string{"--duration", "0s"}, "--duration or --count"},
		{[]string{"--value-size", "-1"}, "--value-size"},
		{[]string{"stray"}, "unexpected arguments"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
	} {
		_, err := parseFlags(c.args, io.Discard)
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("parseFlags(%q) = %v, want %q", c.args, err, c.err)
		}
	}
}

// memKV is an in-memory kv with a little latency, and optional failures.
type memKV struct {
	mu   sync.Mutex
	data map[string][]byte
	fail error
}

func (m *memKV) Put(_ context.Context, key, value []byte) error {
	time.Sleep(50 * time.Microsecond)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.data[string(key)] = append([]byte(nil), value...)
	return nil
}

func (m *memKV) Get(_ context.Context, key []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.data[string(key)]
	if !ok {
		return nil, client.ErrNotFound
	}
	return v, nil
}

func (m *memKV) Scan(_ context.Context, start, _ []byte, limit int, _ ...client.ScanOption) ([]client.KvPair, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.data {
		if k >= string(start) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []client.KvPair
	for _, k := range keys[:min(limit, len(keys))] {
		out = append(out, client.KvPair{Key: []byte(k), Value: m.data[k]})
	}
	return out, nil
}

func TestRunAgainstMemory(t *testing.T) {
	cfg, err := parseFlags([]string{"--workload", "mixed", "--clients", "4", "--count", "2000", "--warmup", "20ms", "--keys", "100", "--seed", "7"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := &memKV{data: map[string][]byte{}}
	var progress bytes.Buffer
	cfg.progress = true
	rep := newBench(cfg, m, &progress).run(context.Background())
	if rep.Ops != 2000 || rep.Errors.Total != 0 || rep.Latency["put"] == nil || rep.Latency["get"] == nil || rep.OpsPerSec <= 0 {
		t.Fatalf("report %+v", rep)
	}
	if len(m.data) == 0 || len(m.data) > 100 {
		t.Errorf("%d keys written, want 1..100", len(m.data))
	}
	for k, v := range m.data {
		if len(k) != 16 || k[0] != 'k' || len(v) != 256 {
			t.Errorf("key %q (%d B), value of %d B", k, len(k), len(v))
		}
	}
	var text bytes.Buffer
	if err := rep.writeText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"workload mixed (read ratio 0.50), 4 clients", "p99.9", "errors: none"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := rep.writeJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back["ops"] != float64(2000) {
		t.Errorf("JSON report: %v\n%s", err, js.String())
	}

	// Failures are counted by kind.
	m.fail = errors.Join(client.ErrUnknownOutcome, status.Error(codes.Unknown, "x"))
	cfg.workload, cfg.count, cfg.warmup = "put", 50, 0
	rep = newBench(cfg, m, io.Discard).run(context.Background())
	if rep.Errors.Total != 50 || rep.Errors.ByKind["unknown-outcome"] != 50 || rep.Ops != 0 {
		t.Errorf("errors %+v, ops %d", rep.Errors, rep.Ops)
	}
	text.Reset()
	rep.writeText(&text)
	if !strings.Contains(text.String(), "errors: 50 (unknown-outcome 50)") {
		t.Errorf("report:\n%s", text.String())
	}
}

func TestKeys(t *testing.T) {
	b := newBench(&config{keySize: 16, valueSize: 8}, nil, io.Discard)
	if k := string(b.key(42)); k != "k000000000000042" {
		t.Errorf("key(42) = %q", k)
	}
}
