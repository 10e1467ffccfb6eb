package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

func TestEscapeRoundTrip(t *testing.T) {
	for _, b := range [][]byte{
		nil, []byte("plain"), []byte("a\x00b"), []byte("tab\there\nnl\r"), []byte(`back\slash`),
		[]byte("héllo ✓"), {0xff, 0xfe, 'x'}, {0x7f, 0x80, 0x9f}, []byte(`"quoted"`),
	} {
		e := escape(b)
		got, err := unescape(e)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("unescape(escape(%q)) = unescape(%q) = %q, %v", b, e, got, err)
		}
	}
	for in, want := range map[string]string{`a\x00b`: "a\x00b", `\n\t\r\0`: "\n\t\r\x00", `\"\\`: `"\`, `\x41\x42`: "AB"} {
		if got, err := unescape(in); err != nil || string(got) != want {
			t.Errorf("unescape(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`a\`, `\x4`, `\xzz`, `\q`} {
		if _, err := unescape(bad); err == nil {
			t.Errorf("unescape(%q) succeeded", bad)
		}
	}
}

func TestEncodings(t *testing.T) {
	for _, c := range []struct {
		enc  keyEncoding
		in   []byte
		want string
	}{
		{encText, []byte("hello"), "hello"},
		{encText, []byte("a\x00b"), `a\x00b`}, // not printable: escaped
		{encText, []byte(`a\b`), `a\\b`},      // a backslash would look like an escape
		{encHex, []byte("hi"), "6869"},
		{encEscaped, []byte("é\t"), `é\t`},
	} {
		if got := c.enc.encode(c.in); got != c.want {
			t.Errorf("encode(%d, %q) = %q, want %q", c.enc, c.in, got, c.want)
		}
		back, err := c.enc.decode("key", c.want)
		if c.enc != encText && (err != nil || !bytes.Equal(back, c.in)) {
			t.Errorf("decode(%d, %q) = %q, %v", c.enc, c.want, back, err)
		}
	}
}

// TestBadUsage: what fails before any cluster is reached, and an
// unreachable scheduler.
func TestBadUsage(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	for _, c := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--help"}, 0, ""},
		{[]string{"--version"}, 0, ""},
		{[]string{}, 2, "needs a command"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"region"}, 2, `"regionkv-ctl region" needs a command: key, list, show`},
		{[]string{"operator", "add", "teleport", "1", "2"}, 2, `unknown command "teleport"`},
		{[]string{"get"}, 2, "wrong number of arguments"},
		{[]string{"get", "a", "b"}, 2, "wrong number of arguments"},
		{[]string{"--hex", "get", "xyz"}, 2, "not valid hex"},
		{[]string{"--escaped", "get", `a\q`}, 2, "unknown escape"},
		{[]string{"--hex", "--escaped", "get", "a"}, 2, "hex escaped"},
		{[]string{"-w", "yaml", "get", "a"}, 2, "want table or json"},
		{[]string{"--nope"}, 2, "unknown flag"},
		{[]string{"scan", "--limit", "0"}, 2, "--limit must be positive"},
		{[]string{"store", "show", "x"}, 2, "not a positive integer"},
		{[]string{"config", "set", "colour", "blue"}, 2, "unknown config key"},
		{[]string{"--scheduler", dead, "--timeout", "300ms", "put", "a", "b"}, 1, "cannot reach the scheduler at " + dead},
		{[]string{"--scheduler", dead, "--timeout", "300ms", "member", "list"}, 1, "cannot reach the scheduler at " + dead},
	} {
		var stdout, stderr bytes.Buffer
		code := run(c.args, &stdout, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.stderr) {
			t.Errorf("regionkv-ctl %q: exit code %d, stderr %q; want %d and %q", c.args, code, stderr.String(), c.code, c.stderr)
		}
		if c.code == 2 && strings.Contains(stdout.String(), "Usage:") {
			t.Errorf("regionkv-ctl %q printed the usage on stdout", c.args)
		}
	}
}
