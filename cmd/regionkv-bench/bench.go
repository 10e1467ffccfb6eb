package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/kv/client"
)

// Operation kinds, indexes into per-kind arrays.
const (
	opPut = iota
	opGet
	opScan
	numOps
)

var opNames = [numOps]string{"put", "get", "scan"}

// Latencies are recorded in microseconds, from 1 µs to 10 minutes, with 3
// significant digits.
const (
	minLatencyUs = 1
	maxLatencyUs = 10 * 60 * 1_000_000
	sigFigs      = 3
)

// Phases of a run.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// kv is what the benchmark needs from a store. The regionkv Go client
// implements it; a comparison with another store plugs in here.
type kv interface {
	Put(ctx context.Context, key, value []byte) error
	Get(ctx context.Context, key []byte) ([]byte, error)
	Scan(ctx context.Context, start, end []byte, limit int, opts ...client.ScanOption) ([]client.KvPair, error)
}

type bench struct {
	cfg    *config
	kv     kv
	stderr io.Writer
	// value is random bytes that values are cut from.
	value []byte

	phase     atomic.Int32
	issued    atomic.Int64 // operations started while measuring (--count)
	completed atomic.Int64 // operations done while measuring
	failed    atomic.Int64 // of those, failed
}

func newBench(cfg *config, kv kv, stderr io.Writer) *bench {
	rng := rand.New(rand.NewPCG(cfg.seed, 1))
	value := make([]byte, cfg.valueSize*2+64)
	for i := range value {
		value[i] = byte('a' + rng.IntN(26))
	}
	return &bench{cfg: cfg, kv: kv, stderr: stderr, value: value}
}

// key returns the i-th key: "k" and i zero-padded to the key size.
func (b *bench) key(i int) []byte {
	k := make([]byte, b.cfg.keySize)
	k[0] = 'k'
	s := strconv.Itoa(i)
	for j := 1; j < len(k)-len(s); j++ {
		k[j] = '0'
	}
	copy(k[len(k)-len(s):], s)
	return k
}

// preload writes every key once, in batches, from --clients writers.
func (b *bench) preload(ctx context.Context) error {
	c, ok := b.kv.(*client.Client)
	if !ok {
		return errors.New("preload needs the regionkv client")
	}
	start := time.Now()
	const batch = 256
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range b.cfg.clients {
		wg.Go(func() {
			for {
				lo := int(next.Add(batch)) - batch
				if lo >= b.cfg.keys || ctx.Err() != nil {
					return
				}
				var pairs []client.KvPair
				for i := lo; i < min(lo+batch, b.cfg.keys); i++ {
					pairs = append(pairs, client.KvPair{Key: b.key(i), Value: b.value[i%64 : i%64+b.cfg.valueSize]})
				}
				if err := c.BatchPut(ctx, pairs); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		fmt.Fprintf(b.stderr, "preloaded %d keys in %v\n", b.cfg.keys, time.Since(start).Round(time.Millisecond))
	}
	return firstErr
}

// worker is one client's state; only its goroutine touches it until the run
// ends.
type worker struct {
	rng    *rand.Rand
	zipf   *rand.Zipf
	hist   [numOps]*hdrhistogram.Histogram
	errs   map[string]int64
	notFnd int64
}

func (b *bench) newWorker(i int) *worker {
	w := &worker{rng: rand.New(rand.NewPCG(b.cfg.seed, uint64(i)+2)), errs: map[string]int64{}}
	if b.cfg.distribution == "zipfian" {
		w.zipf = rand.NewZipf(w.rng, b.cfg.zipfS, 1, uint64(b.cfg.keys-1))
	}
	for op := range w.hist {
		w.hist[op] = hdrhistogram.New(minLatencyUs, maxLatencyUs, sigFigs)
	}
	return w
}

func (w *worker) nextKey(n int) int {
	if w.zipf != nil {
		return int(w.zipf.Uint64())
	}
	return w.rng.IntN(n)
}

// pickOp chooses the next operation of the workload.
func (b *bench) pickOp(w *worker) int {
	switch b.cfg.workload {
	case "put":
		return opPut
	case "get":
		return opGet
	case "scan":
		return opScan
	}
	if w.rng.Float64() < b.cfg.readRatio {
		return opGet
	}
	return opPut
}

// do runs one operation and returns its error (nil for a missing key).
func (b *bench) do(ctx context.Context, w *worker, op int) (notFound bool, err error) {
	i := w.nextKey(b.cfg.keys)
	key := b.key(i)
	ctx, cancel := context.WithTimeout(ctx, b.cfg.timeout)
	defer cancel()
	switch op {
	case opPut:
		off := w.rng.IntN(64)
		return false, b.kv.Put(ctx, key, b.value[off:off+b.cfg.valueSize])
	case opGet:
		_, err := b.kv.Get(ctx, key)
		if errors.Is(err, client.ErrNotFound) {
			return true, nil
		}
		return false, err
	default:
		_, err := b.kv.Scan(ctx, key, nil, b.cfg.scanLength)
		return false, err
	}
}

// errorKind names the kind of a failed operation's error.
func errorKind(err error) string {
	var se *client.StoreError
	var re *client.RegionError
	switch {
	case errors.Is(err, client.ErrUnknownOutcome):
		return "unknown-outcome"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &se):
		return "store-error"
	case errors.As(err, &re):
		return "region-error"
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.OK && s.Code() != codes.Unknown {
		return "grpc-" + s.Code().String()
	}
	return "other"
}

// run runs the workload and returns the report.
func (b *bench) run(ctx context.Context) *report {
	cfg := b.cfg
	workers := make([]*worker, cfg.clients)
	for i := range workers {
		workers[i] = b.newWorker(i)
	}
	var lastErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				phase := b.phase.Load()
				if phase == phaseStop {
					return
				}
				if phase == phaseMeasure && cfg.count > 0 && b.issued.Add(1) > cfg.count {
					return
				}
				op := b.pickOp(w)
				start := time.Now()
				notFound, err := b.do(ctx, w, op)
				elapsed := time.Since(start)
				if phase != phaseMeasure || b.phase.Load() != phaseMeasure && cfg.count == 0 {
					continue // warm-up, or finished after the end of the run
				}
				if err != nil {
					if ctx.Err() != nil {
						return // interrupted: not the cluster's fault
					}
					w.errs[errorKind(err)]++
					b.failed.Add(1)
					lastErr.Store(&err)
				} else {
					_ = w.hist[op].RecordValue(max(elapsed.Microseconds(), minLatencyUs))
					if notFound {
						w.notFnd++
					}
				}
				b.completed.Add(1)
			}
		})
	}

	progress := cfg.progress || isTerminal(os.Stderr)
	if cfg.warmup > 0 {
		b.wait(ctx, cfg.warmup, nil)
	}
	b.phase.Store(phaseMeasure)
	start := time.Now()
	var p *progressLine
	if progress {
		p = &progressLine{w: b.stderr, b: b, start: start}
	}
	if cfg.count > 0 {
		b.waitCount(ctx, p)
	} else {
		b.wait(ctx, cfg.duration, p)
	}
	b.phase.Store(phaseStop)
	elapsed := time.Since(start)
	wg.Wait()
	if p != nil {
		p.finish()
	}
	rep := newReport(cfg, workers, elapsed, ctx.Err() != nil)
	if e := lastErr.Load(); e != nil {
		rep.Errors.Last = (*e).Error()
	}
	return rep
}

// wait sleeps for d (or until ctx ends), updating the progress line.
func (b *bench) wait(ctx context.Context, d time.Duration, p *progressLine) {
	end := time.NewTimer(d)
	defer end.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			return
		case <-tick.C:
			p.update()
		}
	}
}

// waitCount waits until --count operations have completed.
func (b *bench) waitCount(ctx context.Context, p *progressLine) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	for b.completed.Load() < b.cfg.count && ctx.Err() == nil {
		<-tick.C
		if time.Since(last) >= time.Second {
			p.update()
			last = time.Now()
		}
	}
}

// progressLine rewrites one line on stderr every second.
type progressLine struct {
	w          io.Writer
	b          *bench
	start      time.Time
	lastOps    int64
	lastUpdate time.Time
}

func (p *progressLine) update() {
	if p == nil {
		return
	}
	now := time.Now()
	ops := p.b.completed.Load()
	since := p.lastUpdate
	if since.IsZero() {
		since = p.start
	}
	rate := float64(ops-p.lastOps) / now.Sub(since).Seconds()
	p.lastOps, p.lastUpdate = ops, now
	fmt.Fprintf(p.w, "\r%6.1fs  %10d ops  %9.0f ops/s  %d errors   ", now.Sub(p.start).Seconds(), ops, rate, p.b.failed.Load())
}

func (p *progressLine) finish() {
	p.update()
	fmt.Fprintln(p.w)
}

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
