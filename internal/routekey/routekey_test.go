package routekey

import (
	"bytes"
	"testing"
)

func TestBefore(t *testing.T) {
	if k := Before(nil); len(k) != MaxKeySize+1 {
		t.Fatalf("Before(nil) has %d bytes", len(k))
	}
	for _, upper := range []string{"b", "b\x00", "ab", "\x01"} {
		if kb := Before([]byte(upper)); string(kb) >= upper {
			t.Errorf("Before(%q) = %q, not below", upper, kb)
		}
	}
	// Every key of up to 3 bytes over a small alphabet: Before(u) is below
	// u and at or above every such key below u.
	alphabet := []byte{0x00, 0x01, 'a', 0xff}
	keys := [][]byte{nil}
	for i := 0; i < len(keys); i++ {
		if len(keys[i]) == 3 {
			continue
		}
		for _, c := range alphabet {
			keys = append(keys, append(bytes.Clone(keys[i]), c))
		}
	}
	for _, u := range keys {
		k := Before(u)
		if len(u) > 0 && bytes.Compare(k, u) >= 0 {
			t.Fatalf("Before(%x) = %x is not below it", u, k)
		}
		for _, s := range keys {
			if (len(u) == 0 || bytes.Compare(s, u) < 0) && bytes.Compare(s, k) > 0 {
				t.Fatalf("key %x < %x is above Before = %x", s, u, k)
			}
		}
	}
}
