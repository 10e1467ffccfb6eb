package harness

import (
	"cmp"
	"fmt"
	"math"
	"math/rand"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Shorthands for hand-built histories.
func inPut(k, v string) KVInput { return KVInput{Kind: OpPut, Key: k, Value: v} }
func inGet(k string) KVInput    { return KVInput{Kind: OpGet, Key: k} }
func inDel(k string) KVInput    { return KVInput{Kind: OpDelete, Key: k} }

var (
	outOK      = KVOutput{}
	outMissing = KVOutput{Found: false}
	outUnknown = KVOutput{Unknown: true}
)

func outFound(v string) KVOutput { return KVOutput{Value: v, Found: true} }

// histOp builds one operation of a hand-built history. A ret of -1 means the
// outcome is unknown: the op never returns.
func histOp(client int, call, ret int64, in KVInput, out KVOutput) porcupine.Operation {
	if ret < 0 {
		ret = math.MaxInt64
	}
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

func TestKVModel(t *testing.T) {
	tests := []struct {
		name    string
		history []porcupine.Operation
		want    bool
	}{
		{name: "empty", history: nil, want: true},
		{
			name: "sequential put get",
			history: []porcupine.Operation{
				histOp(0, 0, 10, inPut("x", "1"), outOK),
				histOp(0, 20, 30, inGet("x"), outFound("1")),
			},
			want: true,
		},
		{
			name:    "missing key reads missing",
			history: []porcupine.Operation{histOp(0, 0, 10, inGet("x"), outMissing)},
			want:    true,
		},
		{
			name:    "missing key is not the empty value",
			history: []porcupine.Operation{histOp(0, 0, 10, inGet("x"), outFound(""))},
			want:    false,
		},
		{
			name: "empty value is not a missing key",
			history: []porcupine.Operation{
				histOp(0, 0, 10, inPut("x", ""), outOK),
				histOp(0, 20, 30, inGet("x"), outMissing),
			},
			want: false,
		},
		{
			name: "concurrent reads may see either value",
			history: []porcupine.Operation{
				histOp(0, 0, 100, inPut("x", "1"), outOK),
				histOp(1, 10, 20, inGet("x"), outMissing),
				histOp(2, 30, 40, inGet("x"), outFound("1")),
			},
			want: true,
		},
		{
			name: "concurrent reads must not go back in time",
			history: []porcupine.Operation{
				histOp(0, 0, 100, inPut("x", "1"), outOK),
				histOp(1, 10, 20, inGet("x"), outFound("1")),
				histOp(2, 30, 40, inGet("x"), outMissing),
			},
			want: false,
		},
		{
			name: "stale read after completed put",
			history: []porcupine.Operation{
				histOp(0, 0, 10, inPut("x", "1"), outOK),
				histOp(0, 20, 30, inPut("x", "2"), outOK),
				histOp(1, 40, 50, inGet("x"), outFound("1")),
			},
			want: false,
		},
		{
			name: "read of a never written value",
			history: []porcupine.Operation{
				histOp(0, 0, 10, inPut("x", "1"), outOK),
				histOp(1, 5, 15, inGet("x"), outFound("7")),
			},
			want: false,
		},
		{
			name: "read of a value written to another key",
			history: []porcupine.Operation{
				histOp(0, 0, 10, inPut("y", "1"), outOK),
				histOp(1, 20, 30, inGet("x"), outFound("1")),
			},
			want: false,
		},
		{
			name: "delete then read missing",
			history: []porcupine.Operation{
				histOp(0, 0, 10, inPut("x", "1"), outOK),
				histOp(0, 20, 30, inDel("x"), outOK),
				histOp(1, 40, 50, inGet("x"), outMissing),
			},
			want: true,
		},
		{
			name: "read sees a deleted key",
			history: []porcupine.Operation{
				histOp(0, 0, 10, inPut("x", "1"), outOK),
				histOp(0, 20, 30, inDel("x"), outOK),
				histOp(1, 40, 50, inGet("x"), outFound("1")),
			},
			want: false,
		},
		{
			name: "unknown put that took effect",
			history: []porcupine.Operation{
				histOp(0, 0, -1, inPut("x", "1"), outUnknown),
				histOp(1, 20, 30, inGet("x"), outFound("1")),
			},
			want: true,
		},
		{
			name: "unknown put that did not take effect",
			history: []porcupine.Operation{
				histOp(0, 0, -1, inPut("x", "1"), outUnknown),
				histOp(1, 20, 30, inGet("x"), outMissing),
				histOp(1, 40, 50, inGet("x"), outMissing),
			},
			want: true,
		},
		{
			name: "unknown put that took effect late",
			history: []porcupine.Operation{
				histOp(0, 0, -1, inPut("x", "1"), outUnknown),
				histOp(1, 20, 30, inGet("x"), outMissing),
				histOp(1, 40, 50, inGet("x"), outFound("1")),
			},
			want: true,
		},
		{
			name: "unknown put cannot be undone",
			history: []porcupine.Operation{
				histOp(0, 0, -1, inPut("x", "1"), outUnknown),
				histOp(1, 20, 30, inGet("x"), outFound("1")),
				histOp(1, 40, 50, inGet("x"), outMissing),
			},
			want: false,
		},
		{
			name: "unknown put cannot take effect before its call",
			history: []porcupine.Operation{
				histOp(1, 0, 10, inGet("x"), outFound("1")),
				histOp(0, 20, -1, inPut("x", "1"), outUnknown),
			},
			want: false,
		},
		{
			name: "unknown delete that took effect",
			history: []porcupine.Operation{
				histOp(0, 0, 10, inPut("x", "1"), outOK),
				histOp(0, 20, -1, inDel("x"), outUnknown),
				histOp(1, 30, 40, inGet("x"), outMissing),
			},
			want: true,
		},
		{
			name: "unknown get constrains nothing",
			history: []porcupine.Operation{
				histOp(0, 0, 10, inPut("x", "1"), outOK),
				histOp(1, 20, -1, inGet("x"), outUnknown),
			},
			want: true,
		},
		{
			name: "keys are independent",
			history: []porcupine.Operation{
				histOp(0, 0, 10, inPut("x", "1"), outOK),
				histOp(1, 0, 10, inPut("y", "2"), outOK),
				histOp(0, 20, 30, inGet("y"), outFound("2")),
				histOp(1, 20, 30, inGet("x"), outFound("1")),
			},
			want: true,
		},
		{
			name: "one bad key fails the history",
			history: []porcupine.Operation{
				histOp(0, 0, 10, inPut("x", "1"), outOK),
				histOp(0, 20, 30, inGet("x"), outFound("1")),
				histOp(1, 0, 10, inPut("y", "2"), outOK),
				histOp(1, 20, 30, inGet("y"), outMissing),
			},
			want: false,
		},
	}
	model := kvModel()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := porcupine.CheckOperations(model, tt.history); got != tt.want {
				t.Errorf("linearizable = %v, want %v", got, tt.want)
			}
			if got := porcupine.CheckOperations(model, patchUnknownWrites(tt.history)); got != tt.want {
				t.Errorf("patched: linearizable = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPatchUnknownWrites(t *testing.T) {
	const never = math.MaxInt64
	history := []porcupine.Operation{
		histOp(0, 0, 10, inPut("x", "1"), outOK),
		histOp(1, 5, -1, inPut("x", "lost"), outUnknown),   // never read: pruned
		histOp(1, 6, -1, inPut("x", "2"), outUnknown),      // read at 40: return 40
		histOp(2, 7, -1, inPut("x", "1"), outUnknown),      // value not unique: kept open
		histOp(2, 8, -1, inDel("x"), outUnknown),           // read missing at 60: kept open
		histOp(3, 9, -1, inDel("y"), outUnknown),           // no read of y: pruned
		histOp(3, 10, -1, inGet("x"), outUnknown),          // pruned
		histOp(4, 100, -1, inPut("x", "late"), outUnknown), // read before its call: pruned
		histOp(5, 11, 15, inGet("x"), outFound("1")),
		histOp(5, 20, 40, inGet("x"), outFound("2")),
		histOp(5, 45, 50, inGet("x"), outFound("late")),
		histOp(5, 50, 60, inGet("x"), outMissing),
	}
	var got []string
	for _, op := range patchUnknownWrites(history) {
		ret := fmt.Sprint(op.Return)
		if op.Return == never {
			ret = "never"
		}
		got = append(got, fmt.Sprintf("%s @%s", describeKVOperation(op.Input, op.Output), ret))
	}
	want := []string{
		`put("x", "1") @10`,
		`put("x", "2") -> unknown @40`,
		`put("x", "1") -> unknown @never`,
		`delete("x") -> unknown @never`,
		`get("x") -> "1" @15`,
		`get("x") -> "2" @40`,
		`get("x") -> "late" @50`,
		`get("x") -> missing @60`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("patched history:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(history) != 12 || history[2].Return != never {
		t.Error("patchUnknownWrites modified its input")
	}
}

// randomHistory returns a small history on two keys. It runs the ops in a
// random order consistent with their intervals, so it is linearizable unless
// corrupt is set, in which case one read result is replaced at random. Some
// ops have unknown outcomes; an unknown write takes effect or not at random.
func randomHistory(rng *rand.Rand, corrupt bool) []porcupine.Operation {
	keys := []string{"x", "y"}
	values := []string{"a", "b", "c", "d", "e", "f"}
	type planned struct {
		op      porcupine.Operation
		point   int64
		applies bool
	}
	ops := make([]planned, 4+rng.Intn(6))
	for i := range ops {
		call := rng.Int63n(60)
		ret := call + rng.Int63n(30)
		var in KVInput
		key := keys[rng.Intn(len(keys))]
		switch rng.Intn(5) {
		case 0, 1:
			in = inPut(key, values[rng.Intn(len(values))])
		case 2:
			in = inDel(key)
		default:
			in = inGet(key)
		}
		p := planned{
			op:      porcupine.Operation{ClientId: i, Input: in, Call: call, Return: ret},
			point:   call + rng.Int63n(ret-call+1),
			applies: true,
		}
		if rng.Intn(3) == 0 {
			p.op.Output = outUnknown
			p.op.Return = math.MaxInt64
			p.applies = rng.Intn(2) == 0
		}
		ops[i] = p
	}
	order := make([]int, len(ops))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(ops[a].point, ops[b].point) })
	state := make(map[string]string)
	for _, i := range order {
		p := &ops[i]
		in := p.op.Input.(KVInput)
		var out KVOutput
		if p.applies {
			switch in.Kind {
			case OpPut:
				state[in.Key] = in.Value
			case OpDelete:
				delete(state, in.Key)
			case OpGet:
				out.Value, out.Found = state[in.Key]
			}
		}
		if p.op.Output == nil {
			p.op.Output = out
		}
	}
	history := make([]porcupine.Operation, len(ops))
	for i, p := range ops {
		history[i] = p.op
	}
	if corrupt {
		for _, i := range rng.Perm(len(history)) {
			out := history[i].Output.(KVOutput)
			if history[i].Input.(KVInput).Kind == OpGet && !out.Unknown {
				if rng.Intn(3) == 0 {
					history[i].Output = outMissing
				} else {
					history[i].Output = outFound(values[rng.Intn(len(values))])
				}
				break
			}
		}
	}
	return history
}

// TestPatchUnknownWritesPreservesVerdict checks patchUnknownWrites against
// the unpatched history on many small random histories.
func TestPatchUnknownWritesPreservesVerdict(t *testing.T) {
	const seed = 20240611
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	model := kvModel()
	counts := make(map[bool]int)
	for i := range 3000 {
		h := randomHistory(rng, i%2 == 1)
		want := porcupine.CheckOperations(model, h)
		if got := porcupine.CheckOperations(model, patchUnknownWrites(h)); got != want {
			t.Fatalf("history %d: patched verdict %v, unpatched %v:\n%s", i, got, want, formatHistory(h))
		}
		if i%2 == 0 && !want {
			t.Fatalf("history %d was built linearizable but does not check:\n%s", i, formatHistory(h))
		}
		counts[want]++
	}
	t.Logf("linearizable: %d, not: %d", counts[true], counts[false])
	if counts[false] < 100 {
		t.Errorf("only %d non-linearizable histories generated", counts[false])
	}
}

func formatHistory(h []porcupine.Operation) string {
	var b strings.Builder
	for _, op := range h {
		fmt.Fprintf(&b, "  client %d [%d, %d] %s\n", op.ClientId, op.Call, op.Return, describeKVOperation(op.Input, op.Output))
	}
	return b.String()
}

func TestDescribeKVOperation(t *testing.T) {
	tests := []struct {
		in   KVInput
		out  KVOutput
		want string
	}{
		{inPut("k", "v"), outOK, `put("k", "v")`},
		{inPut("k", "v"), outUnknown, `put("k", "v") -> unknown`},
		{inGet("k"), outFound(""), `get("k") -> ""`},
		{inGet("k"), outMissing, `get("k") -> missing`},
		{inDel("k"), outOK, `delete("k")`},
	}
	for _, tt := range tests {
		if got := describeKVOperation(tt.in, tt.out); got != tt.want {
			t.Errorf("describe(%+v, %+v) = %s, want %s", tt.in, tt.out, got, tt.want)
		}
	}
}

func TestRecorderHistory(t *testing.T) {
	r := NewRecorder()
	r.Begin(0, inPut("x", "1")).Done(outOK)
	r.Begin(1, inPut("x", "2")).Unknown()
	r.Begin(2, inGet("x")).Unknown()                     // dropped
	r.Begin(2, inGet("x")).Done(KVOutput{Unknown: true}) // dropped
	r.Begin(3, inDel("x"))                               // never finished: outUnknown
	p := r.Begin(4, inGet("x"))
	p.Done(outFound("2"))
	p.Done(outMissing) // ignored
	p.Unknown()        // ignored

	if r.Len() != 6 {
		t.Errorf("Len = %d, want 6", r.Len())
	}
	h := r.history()
	var got []string
	for _, o := range h {
		if o.Return < o.Call {
			t.Errorf("%v returns before its call", o)
		}
		s := describeKVOperation(o.Input, o.Output)
		if o.Return == math.MaxInt64 {
			s += " @never"
		}
		got = append(got, s)
	}
	want := []string{
		`put("x", "1")`,
		`put("x", "2") -> unknown @never`,
		`delete("x") -> unknown @never`,
		`get("x") -> "2"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("history:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// memStore is a linearizable in-memory store for exercising the Recorder.
// With stale set, reads come from a copy taken at the first write, so they
// are stale after the second.
type memStore struct {
	mu       sync.Mutex
	data     map[string]string
	snapshot map[string]string
	stale    bool
}

func (s *memStore) apply(in KVInput) KVOutput {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch in.Kind {
	case OpPut:
		if s.snapshot == nil {
			s.snapshot = map[string]string{in.Key: in.Value}
		}
		s.data[in.Key] = in.Value
	case OpDelete:
		delete(s.data, in.Key)
	case OpGet:
		src := s.data
		if s.stale && s.snapshot != nil {
			src = s.snapshot
		}
		v, ok := src[in.Key]
		return KVOutput{Value: v, Found: ok}
	}
	return KVOutput{}
}

// runClients drives store from clients goroutines doing random operations on
// a few keys, some of which end with an outUnknown outcome, and records them.
func runClients(t testing.TB, seed int64, store *memStore, clients, opsPerClient int) *Recorder {
	t.Helper()
	r := NewRecorder()
	var wg sync.WaitGroup
	for c := range clients {
		rng := rand.New(rand.NewSource(seed + int64(c)))
		wg.Go(func() {
			for i := range opsPerClient {
				key := fmt.Sprintf("k%d", rng.Intn(3))
				var in KVInput
				switch x := rng.Intn(10); {
				case x < 4:
					in = inPut(key, fmt.Sprintf("c%d-%d", c, i))
				case x < 5:
					in = inDel(key)
				default:
					in = inGet(key)
				}
				p := r.Begin(c, in)
				switch rng.Intn(10) {
				case 0: // lost before it reached the store
					p.Unknown()
				case 1: // applied, but the reply was lost
					store.apply(in)
					p.Unknown()
				default:
					p.Done(store.apply(in))
				}
			}
		})
	}
	wg.Wait()
	return r
}

func TestRecorderConcurrentClientsLinearizable(t *testing.T) {
	const seed = 1
	t.Logf("seed %d", seed)
	r := runClients(t, seed, &memStore{data: map[string]string{}}, 8, 200)
	if r.Len() != 8*200 {
		t.Errorf("Len = %d, want %d", r.Len(), 8*200)
	}
	// Unknown (a timeout) is logged and acceptable; only Illegal fails.
	if res := r.CheckLinearizable(t, 30*time.Second); res == porcupine.Illegal {
		t.Errorf("result %v", res)
	}
}

// failureTB captures failures instead of failing the test it wraps.
type failureTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (f *failureTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *failureTB) Helper() {}

func TestRecorderReportsViolation(t *testing.T) {
	r := NewRecorder()
	store := &memStore{data: map[string]string{}, stale: true}
	for _, in := range []KVInput{inPut("x", "1"), inPut("x", "2"), inGet("x")} {
		p := r.Begin(0, in)
		p.Done(store.apply(in))
	}
	ftb := &failureTB{TB: t}
	if res := r.CheckLinearizable(ftb, 10*time.Second); res != porcupine.Illegal {
		t.Fatalf("result %v, want Illegal", res)
	}
	if len(ftb.errors) != 1 {
		t.Fatalf("got %d errors, want 1: %q", len(ftb.errors), ftb.errors)
	}
	msg := ftb.errors[0]
	i := strings.LastIndex(msg, "visualization: ")
	if i < 0 {
		t.Fatalf("no visualization path in %q", msg)
	}
	path := msg[i+len("visualization: "):]
	t.Cleanup(func() { _ = os.Remove(path) })
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read visualization: %v", err)
	}
	if !strings.Contains(string(data), `get(\"x\")`) {
		t.Errorf("visualization %s does not mention the stale read", path)
	}
}
