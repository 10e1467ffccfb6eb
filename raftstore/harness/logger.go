package harness

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
)

// testLogHandler writes log records through t.Log, so they appear only for
// failing tests (or with -v). Records that arrive after the test finished
// are dropped: background goroutines may still log during cleanup, and
// t.Log then would panic.
type testLogHandler struct {
	t     testing.TB
	level slog.Level
	state *logState
	attrs []slog.Attr
	group string
}

type logState struct {
	mu     sync.Mutex
	closed bool
}

// newTestLogger returns a logger that writes through t.Log at the level set
// by REGIONKV_LOG (debug, info, warn, error; default info).
func newTestLogger(t testing.TB) *slog.Logger {
	level := slog.LevelInfo
	if v := os.Getenv("REGIONKV_LOG"); v != "" {
		_ = level.UnmarshalText([]byte(strings.ToUpper(v)))
	}
	h := &testLogHandler{t: t, level: level, state: &logState{}}
	// Registered first, so it runs after every other cleanup.
	t.Cleanup(func() {
		h.state.mu.Lock()
		h.state.closed = true
		h.state.mu.Unlock()
	})
	return slog.New(h)
}

func (h *testLogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *testLogHandler) Handle(_ context.Context, r slog.Record) error {
	var buf bytes.Buffer
	th := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: h.level})
	var handler slog.Handler = th.WithAttrs(h.attrs)
	if h.group != "" {
		handler = handler.WithGroup(h.group)
	}
	if err := handler.Handle(context.Background(), r); err != nil {
		return err
	}
	h.state.mu.Lock()
	defer h.state.mu.Unlock()
	if !h.state.closed {
		h.t.Log(strings.TrimSuffix(buf.String(), "\n"))
	}
	return nil
}

func (h *testLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &c
}

func (h *testLogHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.group = name
	return &c
}
