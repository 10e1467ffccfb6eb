package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// report is the result of a run; its JSON form is what --json prints.
type report struct {
	Workload     string  `json:"workload"`
	ReadRatio    float64 `json:"read_ratio,omitempty"`
	Clients      int     `json:"clients"`
	KeySize      int     `json:"key_size"`
	ValueSize    int     `json:"value_size"`
	Keys         int     `json:"keys"`
	Distribution string  `json:"distribution"`
	ScanLength   int     `json:"scan_length,omitempty"`
	WarmupSec    float64 `json:"warmup_s"`
	Seed         uint64  `json:"seed"`
	Interrupted  bool    `json:"interrupted,omitempty"`

	DurationSec float64 `json:"duration_s"`
	Ops         int64   `json:"ops"` // successful operations
	OpsPerSec   float64 `json:"ops_per_s"`
	NotFound    int64   `json:"not_found"`
	// Latency holds one entry per operation kind that ran, and "all".
	Latency map[string]*latency `json:"latency"`
	Errors  errorsReport        `json:"errors"`

	order []string
}

// latency is a latency summary, in microseconds.
type latency struct {
	Count     int64   `json:"count"`
	OpsPerSec float64 `json:"ops_per_s"`
	Mean      float64 `json:"mean_us"`
	P50       int64   `json:"p50_us"`
	P95       int64   `json:"p95_us"`
	P99       int64   `json:"p99_us"`
	P999      int64   `json:"p99_9_us"`
	Max       int64   `json:"max_us"`
}

type errorsReport struct {
	Total  int64            `json:"total"`
	ByKind map[string]int64 `json:"by_kind"`
	Last   string           `json:"last,omitempty"`
}

func summarize(h *hdrhistogram.Histogram, secs float64) *latency {
	return &latency{
		Count: h.TotalCount(), OpsPerSec: float64(h.TotalCount()) / secs, Mean: h.Mean(),
		P50: h.ValueAtQuantile(50), P95: h.ValueAtQuantile(95), P99: h.ValueAtQuantile(99),
		P999: h.ValueAtQuantile(99.9), Max: h.Max(),
	}
}

func newReport(cfg *config, workers []*worker, elapsed time.Duration, interrupted bool) *report {
	r := &report{
		Workload: cfg.workload, Clients: cfg.clients, KeySize: cfg.keySize, ValueSize: cfg.valueSize, Keys: cfg.keys,
		Distribution: cfg.distribution, WarmupSec: cfg.warmup.Seconds(), Seed: cfg.seed, Interrupted: interrupted,
		DurationSec: elapsed.Seconds(), Latency: map[string]*latency{}, Errors: errorsReport{ByKind: map[string]int64{}},
	}
	if cfg.workload == "mixed" {
		r.ReadRatio = cfg.readRatio
	}
	if cfg.workload == "scan" {
		r.ScanLength = cfg.scanLength
	}
	secs := max(elapsed.Seconds(), 1e-9)
	all := hdrhistogram.New(minLatencyUs, maxLatencyUs, sigFigs)
	for op := range numOps {
		h := hdrhistogram.New(minLatencyUs, maxLatencyUs, sigFigs)
		for _, w := range workers {
			h.Merge(w.hist[op])
		}
		if h.TotalCount() == 0 {
			continue
		}
		all.Merge(h)
		r.Latency[opNames[op]] = summarize(h, secs)
		r.order = append(r.order, opNames[op])
	}
	r.Latency["all"] = summarize(all, secs)
	r.order = append(r.order, "all")
	r.Ops = all.TotalCount()
	r.OpsPerSec = float64(r.Ops) / secs
	for _, w := range workers {
		r.NotFound += w.notFnd
		for k, n := range w.errs {
			r.Errors.ByKind[k] += n
			r.Errors.Total += n
		}
	}
	return r
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func us(v int64) string {
	d := time.Duration(v) * time.Microsecond
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", v)
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(v)/1000)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func (r *report) writeText(w io.Writer) error {
	var desc strings.Builder
	fmt.Fprintf(&desc, "workload %s", r.Workload)
	switch r.Workload {
	case "mixed":
		fmt.Fprintf(&desc, " (read ratio %.2f)", r.ReadRatio)
	case "scan":
		fmt.Fprintf(&desc, " (%d pairs per scan)", r.ScanLength)
	}
	fmt.Fprintf(&desc, ", %d clients, %d keys (%s) of %d B, values of %d B, %.1fs measured after a %.1fs warm-up",
		r.Clients, r.Keys, r.Distribution, r.KeySize, r.ValueSize, r.DurationSec, r.WarmupSec)
	if r.Interrupted {
		desc.WriteString(" (interrupted)")
	}
	fmt.Fprintln(w, desc.String())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tcount\tops/s\tmean\tp50\tp95\tp99\tp99.9\tmax\t")
	for _, name := range r.order {
		l := r.Latency[name]
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, l.Count, l.OpsPerSec, us(int64(l.Mean)),
			us(l.P50), us(l.P95), us(l.P99), us(l.P999), us(l.Max))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.NotFound > 0 {
		fmt.Fprintf(w, "gets of missing keys: %d (not errors; --preload writes every key first)\n", r.NotFound)
	}
	if r.Errors.Total == 0 {
		_, err := fmt.Fprintln(w, "errors: none")
		return err
	}
	var kinds []string
	for _, k := range slices.Sorted(maps.Keys(r.Errors.ByKind)) {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, r.Errors.ByKind[k]))
	}
	_, err := fmt.Fprintf(w, "errors: %d (%s); last: %s\n", r.Errors.Total, strings.Join(kinds, ", "), r.Errors.Last)
	return err
}
