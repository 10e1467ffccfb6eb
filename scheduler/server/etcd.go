package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// startEtcd starts the embedded etcd member in DataDir/etcd and waits until
// it is ready to serve (with several members: until a quorum is up), for at
// most cfg.StartTimeout.
func startEtcd(ctx context.Context, cfg *Config, logger *slog.Logger) (*embed.Etcd, error) {
	clientURL, err := url.Parse(cfg.EtcdClientURL)
	if err != nil {
		return nil, err
	}
	peerURL, err := url.Parse(cfg.EtcdPeerURL)
	if err != nil {
		return nil, err
	}
	level, err := zapcore.ParseLevel(cfg.EtcdLogLevel)
	if err != nil {
		return nil, err
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = filepath.Join(cfg.DataDir, "etcd")
	ec.ListenClientUrls = []url.URL{*clientURL}
	ec.AdvertiseClientUrls = []url.URL{*clientURL}
	ec.ListenPeerUrls = []url.URL{*peerURL}
	ec.AdvertisePeerUrls = []url.URL{*peerURL}
	ec.InitialCluster = cfg.InitialCluster
	ec.InitialClusterToken = "regionkv-scheduler"
	ec.ClusterState = embed.ClusterStateFlagNew
	ec.EnableGRPCGateway = false
	// Regions are rewritten on every split and conf change: keep an hour
	// of history, no more.
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = "1h"
	ec.UnsafeNoFsync = cfg.EtcdUnsafeNoFsync
	ec.Logger = "zap"
	ec.LogLevel = cfg.EtcdLogLevel
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(newSlogCore(logger.Handler(), level)).Named("etcd"))

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", ec.Dir, err)
	}
	timer := time.NewTimer(cfg.StartTimeout.Duration)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("embedded etcd not ready after %v (are a quorum of --initial-cluster members up?)", cfg.StartTimeout.Duration)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
}

// isShutdownNoise recognizes what the embedded etcd logs as warnings and
// errors when its listeners close on a normal shutdown.
func isShutdownNoise(msg string, errField any) bool {
	if msg == "setting up serving from embedded etcd failed." {
		return true
	}
	e, _ := errField.(string)
	return strings.Contains(e, "use of closed network connection") || strings.Contains(e, "server closed")
}

// slogCore is a zapcore.Core writing to a slog.Handler, so the embedded
// etcd logs through the process's structured logger.
type slogCore struct {
	h      slog.Handler
	level  zapcore.Level
	fields []zapcore.Field
}

func newSlogCore(h slog.Handler, level zapcore.Level) zapcore.Core {
	return &slogCore{h: h, level: level}
}

func (c *slogCore) Enabled(l zapcore.Level) bool { return l >= c.level }

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	cp := *c
	cp.fields = append(append([]zapcore.Field(nil), c.fields...), fields...)
	return &cp
}

func (c *slogCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *slogCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	var level slog.Level
	switch {
	case ent.Level <= zapcore.DebugLevel:
		level = slog.LevelDebug
	case ent.Level == zapcore.InfoLevel:
		level = slog.LevelInfo
	case ent.Level == zapcore.WarnLevel:
		level = slog.LevelWarn
	default:
		level = slog.LevelError
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	if isShutdownNoise(ent.Message, enc.Fields["error"]) {
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if !c.h.Enabled(ctx, level) {
		return nil
	}
	rec := slog.NewRecord(ent.Time, level, ent.Message, 0)
	rec.AddAttrs(slog.String("component", ent.LoggerName))
	for k, v := range enc.Fields {
		rec.AddAttrs(slog.Any(k, v))
	}
	return c.h.Handle(ctx, rec)
}

func (c *slogCore) Sync() error { return nil }
