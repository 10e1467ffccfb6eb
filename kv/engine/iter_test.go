package engine

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// kvPair is one key and value as a RangeIter returned them.
type kvPair struct{ key, val string }

// scan collects [lo, hi) from db with a RangeIter, checking along the way
// that Key, Item().Key() and Value agree.
func scan(tb testing.TB, db *badger.DB, lo, hi []byte, reverse, keyOnly bool) []kvPair {
	tb.Helper()
	var got []kvPair
	err := db.View(func(txn *badger.Txn) error {
		it := NewRangeIter(txn, lo, hi, reverse, keyOnly)
		defer it.Close()
		for ; it.Valid(); it.Next() {
			if !bytes.Equal(it.Key(), it.Item().Key()) {
				return fmt.Errorf("Key %x != Item().Key() %x", it.Key(), it.Item().Key())
			}
			v, err := it.Value()
			if err != nil {
				return err
			}
			got = append(got, kvPair{string(it.Key()), string(v)})
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

func keysOf(ps []kvPair) []string {
	ks := make([]string, len(ps))
	for i, p := range ps {
		ks[i] = p.key
	}
	return ks
}

func TestRangeIter(t *testing.T) {
	e := newEngines(t)
	var wb WriteBatch
	for _, k := range []string{"a", "b", "c", "d", "e", "gone"} {
		wb.Set([]byte(k), []byte("v"+k))
	}
	mustCommit(t, e.KV, &wb)
	wb.Delete([]byte("gone"))
	mustCommit(t, e.KV, &wb)

	tests := []struct {
		name    string
		lo, hi  string
		reverse bool
		want    []string
	}{
		{"all", "", "", false, []string{"a", "b", "c", "d", "e"}},
		{"bounded", "b", "d", false, []string{"b", "c"}},
		{"lo inclusive hi exclusive between keys", "bb", "cc", false, []string{"c"}},
		{"open hi", "c", "", false, []string{"c", "d", "e"}},
		{"open lo", "", "c", false, []string{"a", "b"}},
		{"single key", "a", "a\x00", false, []string{"a"}},
		{"lo == hi", "b", "b", false, nil},
		{"lo > hi", "d", "b", false, nil},
		{"above all keys", "x", "", false, nil},
		{"below all keys", "", "a", false, nil},
		{"between keys", "b\x00", "b\xff", false, nil},

		{"rev all", "", "", true, []string{"e", "d", "c", "b", "a"}},
		{"rev bounded, key equal to hi skipped", "b", "d", true, []string{"c", "b"}},
		{"rev hi between keys", "", "cc", true, []string{"c", "b", "a"}},
		{"rev hi just above a key", "", "c\x00", true, []string{"c", "b", "a"}},
		{"rev lo inclusive", "c", "", true, []string{"e", "d", "c"}},
		{"rev lo between keys", "bb", "", true, []string{"e", "d", "c"}},
		{"rev single key", "a", "a\x00", true, []string{"a"}},
		{"rev hi is first key", "", "a", true, nil},
		{"rev lo == hi", "c", "c", true, nil},
		{"rev lo > hi", "d", "b", true, nil},
		{"rev above all keys", "x", "", true, nil},
		{"rev hi above all keys", "", "zzz", true, []string{"e", "d", "c", "b", "a"}},
		{"rev between keys", "b\x00", "b\xff", true, nil},
	}
	for _, tc := range tests {
		for _, keyOnly := range []bool{false, true} {
			t.Run(tc.name+"/keyOnly="+strconv.FormatBool(keyOnly), func(t *testing.T) {
				var lo, hi []byte
				if tc.lo != "" {
					lo = []byte(tc.lo)
				}
				if tc.hi != "" {
					hi = []byte(tc.hi)
				}
				got := scan(t, e.KV, lo, hi, tc.reverse, keyOnly)
				if !slices.Equal(keysOf(got), tc.want) {
					t.Fatalf("keys = %q, want %q", keysOf(got), tc.want)
				}
				for _, p := range got {
					if p.val != "v"+p.key {
						t.Fatalf("value of %q = %q", p.key, p.val)
					}
				}
			})
		}
	}
}

func TestRangeIterEmptyDB(t *testing.T) {
	e := newEngines(t)
	for _, reverse := range []bool{false, true} {
		if got := scan(t, e.KV, nil, nil, reverse, false); len(got) != 0 {
			t.Fatalf("reverse=%v: %q", reverse, got)
		}
		if got := scan(t, e.KV, []byte("a"), []byte("b"), reverse, true); len(got) != 0 {
			t.Fatalf("reverse=%v: %q", reverse, got)
		}
	}
}

// TestRangeIterExtremeKeys: an unbounded reverse scan starts at the very
// largest key, however long its run of 0xff bytes.
func TestRangeIterExtremeKeys(t *testing.T) {
	e := newEngines(t)
	keys := []string{
		"\x00",
		"\x01",
		"\xff",
		string(bytes.Repeat([]byte{0xff}, 63)),
		string(bytes.Repeat([]byte{0xff}, 64)),
		string(bytes.Repeat([]byte{0xff}, 65)),
		string(bytes.Repeat([]byte{0xff}, 200)),
	}
	var wb WriteBatch
	for _, k := range keys {
		wb.Set([]byte(k), []byte("v"+k))
	}
	mustCommit(t, e.KV, &wb)

	rev := slices.Clone(keys)
	slices.Reverse(rev)
	if got := keysOf(scan(t, e.KV, nil, nil, false, false)); !slices.Equal(got, keys) {
		t.Fatalf("forward = %x, want %x", got, keys)
	}
	if got := keysOf(scan(t, e.KV, nil, nil, true, false)); !slices.Equal(got, rev) {
		t.Fatalf("reverse = %x, want %x", got, rev)
	}
	if got := keysOf(scan(t, e.KV, []byte{0xff}, nil, true, true)); !slices.Equal(got, rev[:5]) {
		t.Fatalf("reverse from 0xff = %x, want %x", got, rev[:5])
	}
	hi := bytes.Repeat([]byte{0xff}, 65)
	if got := keysOf(scan(t, e.KV, nil, hi, true, true)); !slices.Equal(got, rev[2:]) {
		t.Fatalf("reverse below 65×0xff = %x, want %x", got, rev[2:])
	}
}

// TestRangeIterDataRange: a RangeIter over DataRange sees one column family's
// user data and nothing else.
func TestRangeIterDataRange(t *testing.T) {
	e := newEngines(t)
	var wb WriteBatch
	wb.Set(StoreIdentKey, []byte("ident"))
	wb.Set(RegionStateKey(1), []byte("region"))
	wb.Set(ApplyStateKey(1), []byte("apply"))
	users := []string{"", "a", "m", "\xff\xff\xff"}
	for _, cf := range []byte{'d', 'l', 'w'} {
		for _, u := range users {
			wb.Set(DataKey(cf, []byte(u)), []byte{cf})
		}
	}
	mustCommit(t, e.KV, &wb)

	for _, name := range CFs {
		cf, _ := CFByte(name)
		for _, reverse := range []bool{false, true} {
			lo, hi := DataRange(cf, nil, nil)
			got := scan(t, e.KV, lo, hi, reverse, false)
			var want []string
			for _, u := range users {
				want = append(want, string(DataKey(cf, []byte(u))))
			}
			if reverse {
				slices.Reverse(want)
			}
			if !slices.Equal(keysOf(got), want) {
				t.Fatalf("cf %s reverse=%v: %q, want %q", name, reverse, keysOf(got), want)
			}
			for _, p := range got {
				if p.val != string(cf) || UserKey([]byte(p.key)) == nil {
					t.Fatalf("cf %s: stray key %q=%q", name, p.key, p.val)
				}
			}
		}
	}
}

// TestRangeIterSeesOwnWrites: in a read-write transaction the iterator merges
// the transaction's pending writes.
func TestRangeIterSeesOwnWrites(t *testing.T) {
	e := newEngines(t)
	var wb WriteBatch
	for _, k := range []string{"a", "c", "e"} {
		wb.Set([]byte(k), []byte("v"+k))
	}
	mustCommit(t, e.KV, &wb)

	txn := e.KV.NewTransaction(true)
	defer txn.Discard()
	if err := txn.Set([]byte("b"), []byte("vb")); err != nil {
		t.Fatal(err)
	}
	if err := txn.Delete([]byte("c")); err != nil {
		t.Fatal(err)
	}
	for _, reverse := range []bool{false, true} {
		var got []string
		it := NewRangeIter(txn, []byte("a"), []byte("e"), reverse, false)
		for ; it.Valid(); it.Next() {
			got = append(got, string(it.Key()))
		}
		it.Close()
		want := []string{"a", "b"}
		if reverse {
			want = []string{"b", "a"}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("reverse=%v: %q, want %q", reverse, got, want)
		}
	}
}

// testSeed is the property test's seed: $ENGINE_TEST_SEED if set, else the
// clock. It is logged so that a failure can be replayed.
func testSeed(t *testing.T) uint64 {
	if s := os.Getenv("ENGINE_TEST_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("ENGINE_TEST_SEED: %v", err)
		}
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// randKey draws keys from a tiny alphabet around the byte boundaries, so that
// random ranges often hit, straddle and share prefixes with stored keys; now
// and then it draws a long run of 0xff bytes.
func randKey(r *rand.Rand) []byte {
	if r.IntN(40) == 0 {
		return bytes.Repeat([]byte{0xff}, 60+r.IntN(10))
	}
	alphabet := []byte{0x00, 0x01, 'a', 'z', 0xfe, 0xff}
	k := make([]byte, 1+r.IntN(3))
	for i := range k {
		k[i] = alphabet[r.IntN(len(alphabet))]
	}
	return k
}

// TestRangeIterModel compares RangeIter against a sorted in-memory model
// under random writes, deletes and range queries.
func TestRangeIterModel(t *testing.T) {
	seed := testSeed(t)
	t.Logf("seed %d (rerun with ENGINE_TEST_SEED=%d)", seed, seed)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	e := newEngines(t)
	model := map[string]string{}

	rounds, queries := 30, 40
	if testing.Short() {
		rounds = 5
	}
	var wb WriteBatch
	for round := range rounds {
		for range 1 + r.IntN(30) {
			k := randKey(r)
			if r.IntN(4) == 0 {
				wb.Delete(k)
				delete(model, string(k))
			} else {
				v := fmt.Sprintf("r%d-%d", round, r.IntN(1000))
				wb.Set(k, []byte(v))
				model[string(k)] = v
			}
		}
		mustCommit(t, e.KV, &wb)

		sorted := make([]string, 0, len(model))
		for k := range model {
			sorted = append(sorted, k)
		}
		slices.Sort(sorted)

		for q := range queries {
			var lo, hi []byte
			if r.IntN(4) != 0 {
				lo = randKey(r)
			}
			if r.IntN(4) != 0 {
				hi = randKey(r)
			}
			reverse, keyOnly := r.IntN(2) == 0, r.IntN(2) == 0

			var want []kvPair
			for _, k := range sorted {
				if k >= string(lo) && (len(hi) == 0 || k < string(hi)) {
					want = append(want, kvPair{k, model[k]})
				}
			}
			if reverse {
				slices.Reverse(want)
			}
			got := scan(t, e.KV, lo, hi, reverse, keyOnly)
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d round %d query %d: [%x, %x) reverse=%v keyOnly=%v\n got  %x\n want %x",
					seed, round, q, lo, hi, reverse, keyOnly, keysOf(got), keysOf(want))
			}
		}
	}
}
