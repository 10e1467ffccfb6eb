package main

import (
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"
)

// keyEncoding is how keys and values are written on the command line and
// printed.
type keyEncoding int

const (
	// encText: arguments are taken as is; output is printed as is when it is
	// printable UTF-8, escaped otherwise.
	encText keyEncoding = iota
	// encHex: arguments and output in hex.
	encHex
	// encEscaped: arguments may use \xHH, \n, \r, \t, \0, \\ and \"; output
	// always uses them for anything not printable.
	encEscaped
)

// decode turns a command-line argument into bytes.
func (e keyEncoding) decode(what, s string) ([]byte, error) {
	switch e {
	case encHex:
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, usagef("%s %q is not valid hex: %v", what, s, err)
		}
		return b, nil
	case encEscaped:
		b, err := unescape(s)
		if err != nil {
			return nil, usagef("%s %q: %v", what, s, err)
		}
		return b, nil
	}
	return []byte(s), nil
}

// encode renders bytes for output.
func (e keyEncoding) encode(b []byte) string {
	switch e {
	case encHex:
		return hex.EncodeToString(b)
	case encEscaped:
		return escape(b)
	}
	if printable(b) {
		return string(b)
	}
	return escape(b)
}

// printable reports whether b is valid UTF-8 without control characters or
// backslashes (which would make the text look escaped).
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if r < 0x20 || r == 0x7f || r == '\\' || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// escape writes b with \xHH for bytes that are not printable ASCII (and
// not valid printable UTF-8), and \n, \r, \t, \\ for those.
func escape(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		switch {
		case r == '\\':
			sb.WriteString(`\\`)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r == utf8.RuneError && size == 1, r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
			for _, c := range b[:size] {
				fmt.Fprintf(&sb, `\x%02x`, c)
			}
		default:
			sb.Write(b[:size])
		}
		b = b[size:]
	}
	return sb.String()
}

// unescape is the inverse of escape; it also accepts \0 and \".
func unescape(s string) ([]byte, error) {
	var out []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i == len(s) {
			return nil, fmt.Errorf("ends in a lone backslash")
		}
		switch s[i] {
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case '0':
			out = append(out, 0)
		case '\\', '"', '\'':
			out = append(out, s[i])
		case 'x':
			if i+3 > len(s) {
				return nil, fmt.Errorf(`\x needs two hex digits`)
			}
			b, err := hex.DecodeString(s[i+1 : i+3])
			if err != nil {
				return nil, fmt.Errorf(`\x%s: not two hex digits`, s[i+1:i+3])
			}
			out = append(out, b[0])
			i += 2
		default:
			return nil, fmt.Errorf(`unknown escape \%c (use \xHH, \n, \r, \t, \0, \\ or \")`, s[i])
		}
	}
	return out, nil
}
