package engine

import (
	"bytes"
	"math"
	"slices"
	"testing"
)

// cat concatenates byte slices; it keeps the hand-written expected keys below
// readable as "prefix, id, suffix, index".
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func kb(bs ...byte) []byte { return bs }

// Big-endian u64s written out by hand, so the layout tests do not reuse the
// encoder under test.
var (
	be0      = kb(0, 0, 0, 0, 0, 0, 0, 0)
	be1      = kb(0, 0, 0, 0, 0, 0, 0, 1)
	be5      = kb(0, 0, 0, 0, 0, 0, 0, 5)
	be255    = kb(0, 0, 0, 0, 0, 0, 0, 0xff)
	be256    = kb(0, 0, 0, 0, 0, 0, 1, 0)
	be2p32   = kb(0, 0, 0, 1, 0, 0, 0, 0)
	beMixed  = kb(0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef)
	beMaxU64 = kb(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
)

func TestKeyLayout(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"store ident", StoreIdentKey, kb(0x01, 0x01)},
		{"raft log 1/5", RaftLogKey(1, 5), cat(kb(0x01, 0x02), be1, kb(0x01), be5)},
		{"raft log 0/0", RaftLogKey(0, 0), cat(kb(0x01, 0x02), be0, kb(0x01), be0)},
		{"raft log mixed/max", RaftLogKey(0x0123456789abcdef, math.MaxUint64), cat(kb(0x01, 0x02), beMixed, kb(0x01), beMaxU64)},
		{"raft log 256/2^32", RaftLogKey(256, 1<<32), cat(kb(0x01, 0x02), be256, kb(0x01), be2p32)},
		{"raft log prefix", RaftLogPrefix(255), cat(kb(0x01, 0x02), be255, kb(0x01))},
		{"raft state", RaftStateKey(1), cat(kb(0x01, 0x02), be1, kb(0x02))},
		{"raft state max", RaftStateKey(math.MaxUint64), cat(kb(0x01, 0x02), beMaxU64, kb(0x02))},
		{"apply state", ApplyStateKey(5), cat(kb(0x01, 0x02), be5, kb(0x03))},
		{"region state", RegionStateKey(0x0123456789abcdef), cat(kb(0x01, 0x03), beMixed, kb(0x01))},
		{"region state prefix", RegionStatePrefix(), kb(0x01, 0x03)},
		{"data default", DataKey('d', []byte("k1")), kb('z', 'd', 'k', '1')},
		{"data lock", DataKey('l', []byte{0x00, 0xff}), kb('z', 'l', 0x00, 0xff)},
		{"data write empty", DataKey('w', nil), kb('z', 'w')},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Equal(tc.got, tc.want) {
				t.Fatalf("got  %x\nwant %x", tc.got, tc.want)
			}
		})
	}
}

func TestKeyConstructorsReturnFreshSlices(t *testing.T) {
	// Appending to one key must never scribble over another or over the
	// package-level StoreIdentKey.
	p := RaftLogPrefix(7)
	k1 := append(p, 1)
	k2 := append(RaftLogPrefix(7), 2)
	if k1[len(k1)-1] != 1 || k2[len(k2)-1] != 2 {
		t.Fatalf("prefix slices alias each other: %x %x", k1, k2)
	}
	user := []byte("abc")
	dk := DataKey('d', user)
	user[0] = 'X'
	if !bytes.Equal(dk, []byte("zdabc")) {
		t.Fatalf("DataKey aliases its input: %q", dk)
	}
}

func TestCFByte(t *testing.T) {
	tests := []struct {
		cf      string
		want    byte
		wantErr bool
	}{
		{"", 'd', false},
		{"default", 'd', false},
		{"lock", 'l', false},
		{"write", 'w', false},
		{"Default", 0, true},
		{"raft", 0, true},
		{"lock ", 0, true},
		{"d", 0, true},
	}
	for _, tc := range tests {
		t.Run("cf="+tc.cf, func(t *testing.T) {
			got, err := CFByte(tc.cf)
			if (err != nil) != tc.wantErr {
				t.Fatalf("CFByte(%q) err = %v, wantErr %v", tc.cf, err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("CFByte(%q) = %q, want %q", tc.cf, got, tc.want)
			}
		})
	}
}

func TestCFsInKeyOrder(t *testing.T) {
	if !slices.Equal(CFs, []string{CFDefault, CFLock, CFWrite}) {
		t.Fatalf("CFs = %v", CFs)
	}
	var prev byte
	for i, cf := range CFs {
		c, err := CFByte(cf)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && c <= prev {
			t.Fatalf("CFs not in key order: %q (%q) after %q", cf, c, prev)
		}
		prev = c
	}
}

func TestRaftLogIndexRoundTrip(t *testing.T) {
	for _, region := range []uint64{0, 1, 255, 256, 1 << 32, math.MaxUint64} {
		for _, idx := range []uint64{0, 1, 5, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1 << 63, math.MaxUint64} {
			k := RaftLogKey(region, idx)
			got, err := RaftLogIndex(k)
			if err != nil || got != idx {
				t.Fatalf("RaftLogIndex(RaftLogKey(%d, %d)) = %d, %v", region, idx, got, err)
			}
			if !bytes.HasPrefix(k, RaftLogPrefix(region)) {
				t.Fatalf("RaftLogKey(%d, %d) = %x lacks prefix %x", region, idx, k, RaftLogPrefix(region))
			}
		}
	}
}

func TestRaftLogIndexRejects(t *testing.T) {
	good := RaftLogKey(3, 9)
	mut := func(i int, v byte) []byte { k := bytes.Clone(good); k[i] = v; return k }
	tests := []struct {
		name string
		key  []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"prefix only", RaftLogPrefix(3)},
		{"short", good[:18]},
		{"long", append(bytes.Clone(good), 0)},
		{"bad local prefix", mut(0, 0x02)},
		{"region meta prefix", mut(1, regionMetaPrefix)},
		{"raft state suffix", mut(10, raftStateSuffix)},
		{"apply state suffix", mut(10, applyStateSuffix)},
		{"raft state key", RaftStateKey(3)},
		{"apply state key", ApplyStateKey(3)},
		{"region state key", RegionStateKey(3)},
		{"store ident", StoreIdentKey},
		{"data key of 19 bytes", DataKey('d', make([]byte, 17))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if idx, err := RaftLogIndex(tc.key); err == nil {
				t.Fatalf("RaftLogIndex(%x) = %d, want error", tc.key, idx)
			}
		})
	}
}

func TestRegionIDFromStateKeyRoundTrip(t *testing.T) {
	for _, id := range []uint64{0, 1, 255, 256, 1 << 32, 0x0123456789abcdef, math.MaxUint64} {
		k := RegionStateKey(id)
		got, err := RegionIDFromStateKey(k)
		if err != nil || got != id {
			t.Fatalf("RegionIDFromStateKey(RegionStateKey(%d)) = %d, %v", id, got, err)
		}
		if !bytes.HasPrefix(k, RegionStatePrefix()) {
			t.Fatalf("RegionStateKey(%d) = %x lacks prefix %x", id, k, RegionStatePrefix())
		}
	}
}

func TestRegionIDFromStateKeyRejects(t *testing.T) {
	good := RegionStateKey(42)
	mut := func(i int, v byte) []byte { k := bytes.Clone(good); k[i] = v; return k }
	tests := []struct {
		name string
		key  []byte
	}{
		{"nil", nil},
		{"prefix only", RegionStatePrefix()},
		{"short", good[:10]},
		{"long", append(bytes.Clone(good), 0)},
		{"bad local prefix", mut(0, 0x00)},
		{"bad suffix", mut(10, 0x02)},
		{"raft state key (same length)", RaftStateKey(42)},
		{"apply state key (same length)", ApplyStateKey(42)},
		{"raft log key", RaftLogKey(42, 1)},
		{"store ident", StoreIdentKey},
		{"data key of 11 bytes", DataKey('d', make([]byte, 9))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if id, err := RegionIDFromStateKey(tc.key); err == nil {
				t.Fatalf("RegionIDFromStateKey(%x) = %d, want error", tc.key, id)
			}
		})
	}
}

func TestUserKeyRoundTrip(t *testing.T) {
	users := [][]byte{nil, {}, {0x00}, []byte("a"), []byte("hello"), {0xff, 0xff}, bytes.Repeat([]byte{0xff}, 300), {'z', 'd'}}
	for _, cf := range []byte{'d', 'l', 'w'} {
		for _, u := range users {
			got := UserKey(DataKey(cf, u))
			if got == nil || !bytes.Equal(got, u) {
				t.Fatalf("UserKey(DataKey(%q, %x)) = %x (nil=%v)", cf, u, got, got == nil)
			}
		}
	}
}

func TestUserKeyRejects(t *testing.T) {
	tests := []struct {
		name string
		key  []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"prefix only", []byte{'z'}},
		{"store ident", StoreIdentKey},
		{"raft log key", RaftLogKey(1, 1)},
		{"region state key", RegionStateKey(1)},
		{"wrong prefix", []byte("ydkey")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A malformed key yields nil; a data key with an empty user key
			// yields an empty, non-nil slice (see TestUserKeyRoundTrip).
			if got := UserKey(tc.key); got != nil {
				t.Fatalf("UserKey(%x) = %x, want nil", tc.key, got)
			}
		})
	}
}

// assertStrictlyAscending fails unless keys sort strictly ascending.
func assertStrictlyAscending(t *testing.T, keys [][]byte) {
	t.Helper()
	for i := 1; i < len(keys); i++ {
		if bytes.Compare(keys[i-1], keys[i]) >= 0 {
			t.Fatalf("key %d %x does not sort below key %d %x", i-1, keys[i-1], i, keys[i])
		}
	}
}

var orderIndexes = []uint64{0, 1, 2, 5, 254, 255, 256, 257, 511, 512, 65535, 65536, 1<<24 - 1, 1 << 24,
	1<<32 - 1, 1 << 32, 1<<32 + 1, 1<<40 + 255, 1<<40 + 256, 1 << 56, 1<<63 - 1, 1 << 63, math.MaxUint64 - 1, math.MaxUint64}

func TestKeyOrder(t *testing.T) {
	t.Run("raft log keys sort by index", func(t *testing.T) {
		for _, region := range []uint64{1, 256, math.MaxUint64} {
			var keys [][]byte
			for _, idx := range orderIndexes {
				keys = append(keys, RaftLogKey(region, idx))
			}
			assertStrictlyAscending(t, keys)
		}
	})

	t.Run("region keys: log < raft state < apply state < next region", func(t *testing.T) {
		for _, region := range []uint64{0, 1, 255, 1<<32 - 1} {
			keys := [][]byte{RaftLogPrefix(region)}
			for _, idx := range orderIndexes {
				keys = append(keys, RaftLogKey(region, idx))
			}
			keys = append(keys,
				RaftStateKey(region),
				ApplyStateKey(region),
				RaftLogPrefix(region+1),
				RaftLogKey(region+1, 0),
				RaftStateKey(region+1),
			)
			assertStrictlyAscending(t, keys)
			if bytes.HasPrefix(RaftStateKey(region), RaftLogPrefix(region)) {
				t.Fatal("raft state key falls under the raft log prefix")
			}
		}
	})

	t.Run("local keys sort below data keys", func(t *testing.T) {
		local := [][]byte{
			StoreIdentKey,
			RaftLogKey(0, 0), RaftLogKey(math.MaxUint64, math.MaxUint64),
			RaftStateKey(math.MaxUint64), ApplyStateKey(math.MaxUint64),
			RegionStateKey(0), RegionStateKey(math.MaxUint64),
			RegionStatePrefix(),
		}
		var data [][]byte
		for _, cf := range []byte{'d', 'l', 'w'} {
			data = append(data, DataKey(cf, nil), DataKey(cf, []byte{0}), DataKey(cf, bytes.Repeat([]byte{0xff}, 64)))
		}
		maxLocal := slices.MaxFunc(local, bytes.Compare)
		minData := slices.MinFunc(data, bytes.Compare)
		if bytes.Compare(maxLocal, minData) >= 0 {
			t.Fatalf("local key %x does not sort below data key %x", maxLocal, minData)
		}
		// The local key families themselves are grouped:
		// store ident < region raft keys < region meta keys.
		assertStrictlyAscending(t, [][]byte{
			StoreIdentKey,
			RaftLogKey(0, 0), ApplyStateKey(math.MaxUint64),
			RegionStatePrefix(), RegionStateKey(0), RegionStateKey(math.MaxUint64),
		})
	})

	users := [][]byte{{}, {0x00}, {0x00, 0x00}, {0x01}, []byte("a"), []byte("a\x00"), []byte("ab"), []byte("b"),
		{0xfe, 0xff}, {0xff}, {0xff, 0x00}, {0xff, 0xff}, bytes.Repeat([]byte{0xff}, 100)}

	t.Run("data keys of one cf sort by user key", func(t *testing.T) {
		for _, cf := range []byte{'d', 'l', 'w'} {
			var keys [][]byte
			for _, u := range users {
				keys = append(keys, DataKey(cf, u))
			}
			assertStrictlyAscending(t, keys)
		}
	})

	t.Run("column families do not interleave", func(t *testing.T) {
		var keys [][]byte
		for _, name := range CFs {
			cf, _ := CFByte(name)
			for _, u := range users {
				keys = append(keys, DataKey(cf, u))
			}
		}
		assertStrictlyAscending(t, keys)
	})
}

func TestDataRange(t *testing.T) {
	cfBytes := []byte{'d', 'l', 'w'}
	// One user key of many 0xff bytes: larger than any plausible user key.
	ffff := bytes.Repeat([]byte{0xff}, 4096)
	users := [][]byte{{}, {0x00}, []byte("a"), []byte("m"), {0xff}, ffff}
	in := func(k, lo, hi []byte) bool {
		return bytes.Compare(k, lo) >= 0 && (len(hi) == 0 || bytes.Compare(k, hi) < 0)
	}

	for _, cf := range cfBytes {
		t.Run("whole cf "+string(cf), func(t *testing.T) {
			lo, hi := DataRange(cf, nil, nil)
			if !bytes.Equal(lo, []byte{'z', cf}) || !bytes.Equal(hi, []byte{'z', cf + 1}) {
				t.Fatalf("DataRange(%q, nil, nil) = [%x, %x)", cf, lo, hi)
			}
			for _, other := range cfBytes {
				for _, u := range users {
					k := DataKey(other, u)
					if got, want := in(k, lo, hi), other == cf; got != want {
						t.Errorf("DataKey(%q, %.8x) in DataRange(%q, nil, nil) = %v, want %v", other, u, cf, got, want)
					}
				}
			}
			// Local keys are never in a data range.
			for _, k := range [][]byte{StoreIdentKey, RaftStateKey(math.MaxUint64), RegionStateKey(math.MaxUint64)} {
				if in(k, lo, hi) {
					t.Errorf("local key %x in DataRange(%q)", k, cf)
				}
			}
		})
	}

	t.Run("open end excludes the next cf", func(t *testing.T) {
		for i := 0; i+1 < len(CFs); i++ {
			cf, _ := CFByte(CFs[i])
			next, _ := CFByte(CFs[i+1])
			lo, hi := DataRange(cf, []byte("m"), nil)
			if in(DataKey(next, nil), lo, hi) {
				t.Fatalf("first key of cf %q is inside DataRange(%q, m, \"\") = [%x, %x)", next, cf, lo, hi)
			}
			if !in(DataKey(cf, ffff), lo, hi) {
				t.Fatalf("DataKey(%q, 0xff...) is outside DataRange(%q, m, \"\")", cf, cf)
			}
		}
	})

	t.Run("bounded", func(t *testing.T) {
		tests := []struct {
			start, end string
			user       string
			want       bool
		}{
			{"b", "d", "a", false},
			{"b", "d", "b", true}, // start inclusive
			{"b", "d", "c\xff\xff", true},
			{"b", "d", "d", false}, // end exclusive
			{"b", "d", "d\x00", false},
			{"b", "", "b", true},
			{"b", "", "a\xff", false},
			{"b", "", string(ffff), true},
			{"", "b", "", true},
			{"", "b", "a\xff\xff", true},
			{"", "b", "b", false},
		}
		for _, tc := range tests {
			for _, cf := range cfBytes {
				lo, hi := DataRange(cf, []byte(tc.start), []byte(tc.end))
				if got := in(DataKey(cf, []byte(tc.user)), lo, hi); got != tc.want {
					t.Errorf("cf %q: %.10q in [%q, %q) = %v, want %v", cf, tc.user, tc.start, tc.end, got, tc.want)
				}
			}
		}
	})

	t.Run("bounds are the data keys of start and end", func(t *testing.T) {
		lo, hi := DataRange('l', []byte("s"), []byte("t"))
		if !bytes.Equal(lo, []byte("zls")) || !bytes.Equal(hi, []byte("zlt")) {
			t.Fatalf("DataRange('l', s, t) = [%q, %q)", lo, hi)
		}
	})
}
