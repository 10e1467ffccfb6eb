// Package server is the regionkv-scheduler member: an embedded etcd holding
// the metadata, a leader election among the members, the Scheduler gRPC
// service (plus gRPC health and reflection) and the status HTTP server.
//
// Only the leader serves the Scheduler service (GetMembers excepted). A
// member that wins the election loads the cluster state from etcd into a
// fresh cluster.Cluster whose writes are guarded by its leadership, serves
// until its lease is lost, then drops that state. Other members answer
// NOT_LEADER naming the leader, and redirect status API calls to it.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	_ "github.com/regionkv/regionkv/internal/grpccodec" // the gogo-aware "proto" codec
	"github.com/regionkv/regionkv/internal/grpcreflection"
	"github.com/regionkv/regionkv/proto/schedulerpb"
	"github.com/regionkv/regionkv/scheduler/schedulers"
	"github.com/regionkv/regionkv/scheduler/storage"
)

// Version is the scheduler's version, reported by /status and --version.
var Version = "0.1.0-dev"

// ServiceName is the full gRPC name of the Scheduler service, as used by
// health checks.
const ServiceName = "regionkv.schedulerpb.Scheduler"

// Keepalive settings: clients may ping every 5 s (DESIGN §4).
const (
	keepaliveMinPingInterval = 5 * time.Second
	keepaliveTime            = 10 * time.Second
	keepaliveTimeout         = 3 * time.Second
	// gracefulStopTimeout bounds GracefulStop before Stop cuts connections.
	gracefulStopTimeout = 5 * time.Second
)

// Server is one scheduler member.
type Server struct {
	cfg    Config
	logger *slog.Logger

	etcd      *embed.Etcd
	client    *clientv3.Client
	clusterID uint64
	// self describes this member; set in Start before anything is served.
	self *schedulerpb.Member

	// term is the current leadership term, nil when not leading.
	term atomic.Pointer[leaderTerm]
	// schedulers are the balance schedulers a leader runs; they outlive
	// leadership terms.
	schedulers *schedulers.Registry

	grpcServer *grpc.Server
	grpcLis    net.Listener
	health     *health.Server
	httpServer *http.Server
	httpLis    net.Listener

	// stop ends the election loop and the heartbeat streams; wg tracks
	// every goroutine Start starts.
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
	closing atomic.Bool
	closed  sync.Once
}

// New returns a member for cfg; Start starts it. logger defaults to
// slog.Default().
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	names, _ := cfg.schedulerNames() // checked by Validate
	reg, err := schedulers.NewRegistry(schedulers.Config{}, names...)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, logger: logger.With("member", cfg.Name), health: health.NewServer(), schedulers: reg}
	s.ctx, s.stop = context.WithCancel(context.Background())
	return s, nil
}

// Start starts the embedded etcd, waits for it to be ready, then serves gRPC
// and status HTTP and campaigns for leadership. It returns once serving; the
// member may not lead yet (see WaitLeader).
func (s *Server) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)

	start := time.Now()
	if s.etcd, err = startEtcd(ctx, &s.cfg, s.logger); err != nil {
		return err
	}
	s.client = v3client.New(s.etcd.Server)
	cctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout.Duration)
	s.clusterID, err = storage.InitClusterID(cctx, s.client)
	cancel()
	if err != nil {
		return err
	}

	if s.grpcLis, err = net.Listen("tcp", s.cfg.Addr); err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	advertise := s.cfg.AdvertiseAddr
	if advertise == "" {
		advertise = s.grpcLis.Addr().String()
	}
	statusAddr := ""
	if s.cfg.StatusAddr != "" {
		if s.httpLis, err = net.Listen("tcp", s.cfg.StatusAddr); err != nil {
			return fmt.Errorf("listen on %s: %w", s.cfg.StatusAddr, err)
		}
		statusAddr = s.httpLis.Addr().String()
	}
	s.self = &schedulerpb.Member{
		Name:           s.cfg.Name,
		MemberId:       uint64(s.etcd.Server.MemberID()),
		Address:        advertise,
		StatusAddress:  statusAddr,
		PeerUrls:       []string{s.cfg.EtcdPeerURL},
		EtcdClientUrls: []string{s.cfg.EtcdClientURL},
	}

	s.grpcServer = grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinPingInterval, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.ChainUnaryInterceptor(unaryMetricsInterceptor),
		grpc.ChainStreamInterceptor(streamMetricsInterceptor),
	)
	schedulerpb.RegisterSchedulerServer(s.grpcServer, &service{s: s})
	healthpb.RegisterHealthServer(s.grpcServer, s.health)
	if err := grpcreflection.Register(s.grpcServer); err != nil {
		s.logger.Warn("gRPC reflection cannot describe every service", "err", err)
	}
	s.goFunc(func() {
		if err := s.grpcServer.Serve(s.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.logger.Error("gRPC server failed", "err", err)
		}
	})
	if s.httpLis != nil {
		s.httpServer = &http.Server{Handler: s.statusHandler(), ReadHeaderTimeout: 10 * time.Second}
		s.goFunc(func() {
			if err := s.httpServer.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.logger.Error("status server failed", "err", err)
			}
		})
	}
	registerMetrics(s)
	s.goFunc(s.campaignLoop)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_SERVING)
	s.logger.Info("scheduler member started", "cluster_id", s.clusterID, "member_id", s.self.MemberId,
		"addr", advertise, "status_addr", statusAddr, "etcd_client_url", s.cfg.EtcdClientURL,
		"etcd_peer_url", s.cfg.EtcdPeerURL, "data_dir", s.cfg.DataDir, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// goFunc runs f in a goroutine that Close waits for.
func (s *Server) goFunc(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Close shuts the member down: health NOT_SERVING, resign leadership,
// stop gRPC (gracefully, for a bounded time) and HTTP, close etcd. It is
// safe to call more than once.
func (s *Server) Close() {
	s.closed.Do(func() {
		s.closing.Store(true)
		s.health.Shutdown() // every service NOT_SERVING
		s.stop()            // ends the campaign loop (resigning) and the heartbeat streams
		if s.grpcServer != nil {
			done := make(chan struct{})
			go func() { s.grpcServer.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(gracefulStopTimeout):
				s.grpcServer.Stop()
			}
		} else if s.grpcLis != nil {
			s.grpcLis.Close()
		}
		if s.httpServer != nil {
			ctx, cancel := context.WithTimeout(context.Background(), gracefulStopTimeout)
			_ = s.httpServer.Shutdown(ctx)
			cancel()
		} else if s.httpLis != nil {
			s.httpLis.Close()
		}
		s.wg.Wait()
		unregisterMetrics(s)
		if s.client != nil {
			s.client.Close()
		}
		if s.etcd != nil {
			s.etcd.Close()
		}
		s.logger.Info("scheduler member stopped")
	})
}

// ClusterID returns the cluster id (0 before Start).
func (s *Server) ClusterID() uint64 { return s.clusterID }

// Member returns this member's description (nil before Start).
func (s *Server) Member() *schedulerpb.Member { return s.self }

// Addr returns the gRPC address clients should dial.
func (s *Server) Addr() string { return s.self.GetAddress() }

// StatusAddr returns the status HTTP address ("" if disabled).
func (s *Server) StatusAddr() string { return s.self.GetStatusAddress() }

// IsLeader reports whether this member currently leads.
func (s *Server) IsLeader() bool { return s.term.Load() != nil }

// WaitLeader waits until some member leads and returns it.
func (s *Server) WaitLeader(ctx context.Context) (*schedulerpb.Member, error) {
	for {
		if m, err := s.leader(ctx); err == nil && m != nil {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
