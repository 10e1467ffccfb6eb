package harness

import (
	"fmt"
	"hash/maphash"
	"math"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// OpKind is the kind of a client operation in a recorded history.
type OpKind int

// The client operations on a key. Each key is a register in which a missing
// key is distinct from a key holding the empty value.
const (
	// OpPut sets the key to KVInput.Value.
	OpPut OpKind = iota
	// OpGet reads the key; KVOutput.Found says whether it exists.
	OpGet
	// OpDelete removes the key.
	OpDelete
)

// String returns the lower-case name of the operation.
func (k OpKind) String() string {
	switch k {
	case OpPut:
		return "put"
	case OpGet:
		return "get"
	case OpDelete:
		return "delete"
	default:
		return fmt.Sprintf("OpKind(%d)", int(k))
	}
}

// KVInput is the call of a client operation. Value is used by OpPut only.
type KVInput struct {
	Kind  OpKind
	Key   string
	Value string
}

// KVOutput is the result of a client operation. Value and Found are used by
// OpGet only: Found is false for a missing key.
type KVOutput struct {
	Value string
	Found bool
	// Unknown means the outcome is unknown (a timeout or an ambiguous
	// error): the operation may or may not have taken effect.
	Unknown bool
}

// kvState is the state of one key in the model: kvState{} is a missing key.
// It is comparable, so the model can use == for equality.
type kvState struct {
	Value string
	Found bool
}

// kvModel returns the porcupine model of the store: independent registers
// per key, checked one key at a time.
func kvModel() porcupine.Model {
	seed := maphash.MakeSeed()
	return porcupine.Model{
		Partition: partitionByKey,
		Init:      func() any { return kvState{} },
		Step:      stepKV,
		Equal:     func(a, b any) bool { return a == b },
		Hash: func(s any) uint64 {
			st, _ := s.(kvState)
			h := maphash.String(seed, st.Value)
			if st.Found {
				h = ^h
			}
			return h
		},
		DescribeOperation: describeKVOperation,
		DescribeState: func(s any) string {
			st, ok := s.(kvState)
			switch {
			case !ok:
				return fmt.Sprintf("invalid state %v", s)
			case !st.Found:
				return "missing"
			default:
				return fmt.Sprintf("%q", st.Value)
			}
		},
	}
}

// stepKV is the sequential specification of one key. It never mutates its
// arguments.
func stepKV(state, input, output any) (bool, any) {
	st, ok1 := state.(kvState)
	in, ok2 := input.(KVInput)
	out, ok3 := output.(KVOutput)
	if !ok1 || !ok2 || !ok3 {
		return false, state
	}
	switch in.Kind {
	case OpPut:
		return true, kvState{Value: in.Value, Found: true}
	case OpDelete:
		return true, kvState{}
	case OpGet:
		if out.Unknown {
			// A read without a result constrains nothing. The Recorder
			// leaves such reads out, but hand-built histories may not.
			return true, st
		}
		if out.Found != st.Found || (out.Found && out.Value != st.Value) {
			return false, st
		}
		return true, st
	default:
		return false, st
	}
}

// partitionByKey splits a history into one sub-history per key, in key order.
func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := make(map[string][]porcupine.Operation)
	for _, op := range history {
		in, _ := op.Input.(KVInput)
		byKey[in.Key] = append(byKey[in.Key], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, byKey[k])
	}
	return parts
}

// describeKVOperation renders an operation for porcupine's visualization.
func describeKVOperation(input, output any) string {
	in, _ := input.(KVInput)
	out, _ := output.(KVOutput)
	var call string
	switch in.Kind {
	case OpPut:
		call = fmt.Sprintf("put(%q, %q)", in.Key, in.Value)
	default:
		call = fmt.Sprintf("%v(%q)", in.Kind, in.Key)
	}
	switch {
	case out.Unknown:
		return call + " -> unknown"
	case in.Kind != OpGet:
		return call
	case !out.Found:
		return call + " -> missing"
	default:
		return fmt.Sprintf("%s -> %q", call, out.Value)
	}
}

// opStatus is where a PendingOp is in its life.
type opStatus int

const (
	opPending opStatus = iota // begun, not finished
	opDone                    // finished with a known outcome
	opUnknown                 // finished with an unknown outcome
)

// Recorder records a history of client operations for CheckLinearizable. It
// is safe for concurrent use. Timestamps come from the monotonic clock,
// relative to NewRecorder.
type Recorder struct {
	start time.Time

	// mu protects ops and the status, output and return time of every op.
	mu struct {
		sync.Mutex
		ops []*PendingOp
	}
}

// NewRecorder returns an empty Recorder whose clock starts now.
func NewRecorder() *Recorder {
	return &Recorder{start: time.Now()}
}

// now returns nanoseconds since the recorder started.
func (r *Recorder) now() int64 {
	return int64(time.Since(r.start))
}

// PendingOp is an operation begun with Recorder.Begin. Finish it with exactly
// one call to Done or Unknown; later calls are ignored. An op never finished
// when the history is checked counts as Unknown.
type PendingOp struct {
	r        *Recorder
	clientID int
	in       KVInput
	call     int64

	// Protected by r.mu.
	status opStatus
	out    KVOutput
	ret    int64
}

// Begin records the call of in by client clientID and returns the op to
// finish when it returns. Client IDs label rows of the visualization and
// should be small and zero-based.
func (r *Recorder) Begin(clientID int, in KVInput) *PendingOp {
	op := &PendingOp{r: r, clientID: clientID, in: in}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Take the time under the lock so that ops are stored in call order.
	op.call = r.now()
	r.mu.ops = append(r.mu.ops, op)
	return op
}

// Done records that the op returned out. If out.Unknown is set, Done is the
// same as Unknown.
func (p *PendingOp) Done(out KVOutput) {
	ret := p.r.now()
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if p.status != opPending {
		return
	}
	if out.Unknown {
		p.status = opUnknown
		return
	}
	p.status = opDone
	p.out = out
	p.ret = ret
}

// Unknown records that the op may or may not have taken effect. A Put or
// Delete is then checked as if it returned in the far future, so it may take
// effect at any point after its call, or never; a Get is left out of the
// history, as a read with no result constrains nothing. Later calls to Done
// or Unknown are ignored.
func (p *PendingOp) Unknown() {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if p.status == opPending {
		p.status = opUnknown
	}
}

// Len returns the number of operations begun so far.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.mu.ops)
}

// history returns the recorded operations as a porcupine history, treating
// unfinished operations as unknown.
func (r *Recorder) history() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := make([]porcupine.Operation, 0, len(r.mu.ops))
	for _, op := range r.mu.ops {
		if op.status == opDone {
			h = append(h, porcupine.Operation{
				ClientId: op.clientID, Input: op.in, Call: op.call, Output: op.out, Return: op.ret,
			})
			continue
		}
		if op.in.Kind == OpGet {
			continue
		}
		h = append(h, porcupine.Operation{
			ClientId: op.clientID, Input: op.in, Call: op.call,
			Output: KVOutput{Unknown: true}, Return: math.MaxInt64,
		})
	}
	return h
}

// CheckLinearizable checks the recorded history for linearizability, one key
// at a time, giving up after timeout (0 means no limit). A violation fails t
// with t.Errorf and writes porcupine's HTML visualization to a file in
// os.TempDir, whose path is in the message; the file outlives the test. A
// timeout is only logged, as it proves nothing either way. The recorder may
// keep recording while and after it is checked; ops still pending count as
// unknown.
//
// Before checking, unknown writes that no read observed are pruned and
// unknown Puts of values written only once get a bounded return time (see
// patchUnknownWrites); neither changes the verdict. Clients should therefore
// Put unique values, or histories with many timeouts may not check in time.
func (r *Recorder) CheckLinearizable(t testing.TB, timeout time.Duration) porcupine.CheckResult {
	t.Helper()
	recorded := r.history()
	history := patchUnknownWrites(recorded)
	model := kvModel()
	begin := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model, history, timeout)
	took := time.Since(begin)
	summary := fmt.Sprintf("%s after pruning %d unobserved unknown writes", summarize(history), len(recorded)-len(history))

	switch res {
	case porcupine.Ok:
		t.Logf("linearizability: ok: %s, checked in %v", summary, took)
	case porcupine.Unknown:
		t.Logf("linearizability: check timed out after %v (result unknown): %s", took, summary)
	default:
		path, err := writeVisualization(model, info)
		if err != nil {
			t.Errorf("linearizability: history is not linearizable: %s; visualization failed: %v", summary, err)
		} else {
			t.Errorf("linearizability: history is not linearizable: %s; visualization: %s", summary, path)
		}
	}
	return res
}

// patchUnknownWrites returns history without the operations that cannot
// affect its linearizability, and with tighter return times for some unknown
// writes, so that porcupine does not have to try every subset of unknown
// writes at every later point. The result is linearizable if and only if
// history is:
//
//   - A Get with an unknown outcome constrains nothing and is dropped.
//   - An unknown write w (a Put of v, or a Delete) that no Get returning at or
//     after w's call observes (reads v, or reads missing) is dropped. In any
//     linearization the ops between w and the next write are Gets that
//     observe w's result, so there are none, and removing w changes no read;
//     conversely w can always be linearized last.
//   - An unknown Put of a value that no other Put writes to the key must be
//     linearized before every Get that reads the value, so its return time
//     becomes the earliest return of such a Get. Writing unique values
//     therefore makes histories with many timeouts much cheaper to check.
//
// history is not modified.
func patchUnknownWrites(history []porcupine.Operation) []porcupine.Operation {
	type keyValue struct{ key, value string }
	writers := make(map[keyValue]int) // Puts of each value to each key
	reads := make(map[string][]porcupine.Operation)
	for _, op := range history {
		in, _ := op.Input.(KVInput)
		out, _ := op.Output.(KVOutput)
		switch {
		case in.Kind == OpPut:
			writers[keyValue{in.Key, in.Value}]++
		case in.Kind == OpGet && !out.Unknown:
			reads[in.Key] = append(reads[in.Key], op)
		}
	}
	patched := make([]porcupine.Operation, 0, len(history))
	for _, op := range history {
		in, _ := op.Input.(KVInput)
		out, _ := op.Output.(KVOutput)
		if !out.Unknown {
			patched = append(patched, op)
			continue
		}
		if in.Kind != OpPut && in.Kind != OpDelete {
			continue
		}
		observed := false
		firstRead := int64(math.MaxInt64)
		for _, r := range reads[in.Key] {
			if r.Return < op.Call {
				continue // r precedes op in real time
			}
			got, _ := r.Output.(KVOutput)
			if (in.Kind == OpPut && got.Found && got.Value == in.Value) || (in.Kind == OpDelete && !got.Found) {
				observed = true
				firstRead = min(firstRead, r.Return)
			}
		}
		if !observed {
			continue
		}
		if in.Kind == OpPut && writers[keyValue{in.Key, in.Value}] == 1 {
			op.Return = min(op.Return, firstRead)
		}
		patched = append(patched, op)
	}
	return patched
}

// summarize describes the size of a history for log messages.
func summarize(history []porcupine.Operation) string {
	keys := make(map[string]struct{})
	unknown := 0
	for _, op := range history {
		in, _ := op.Input.(KVInput)
		keys[in.Key] = struct{}{}
		if out, _ := op.Output.(KVOutput); out.Unknown {
			unknown++
		}
	}
	return fmt.Sprintf("%d ops (%d unknown) on %d keys", len(history), unknown, len(keys))
}

// writeVisualization writes porcupine's HTML visualization of info to a new
// file in os.TempDir and returns its path.
func writeVisualization(model porcupine.Model, info porcupine.LinearizationInfo) (string, error) {
	f, err := os.CreateTemp("", "regionkv-linearizability-*.html")
	if err != nil {
		return "", err
	}
	path := f.Name()
	if err := porcupine.Visualize(model, info, f); err != nil {
		_ = f.Close()
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("close %s: %w", path, err)
	}
	return path, nil
}
