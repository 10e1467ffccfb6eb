package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	_ "github.com/regionkv/regionkv/internal/grpccodec" // the gogo-aware "proto" codec
	"github.com/regionkv/regionkv/internal/grpcreflection"
	"github.com/regionkv/regionkv/internal/grpcwindow"
	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/proto/raft_serverpb"
	"github.com/regionkv/regionkv/raftstore"
)

// KvServiceName is the full gRPC name of the Kv service, as used by health
// checks ("grpc.health.v1.Health/Check" with service "regionkv.kvpb.Kv").
const KvServiceName = "regionkv.kvpb.Kv"

// Store is the part of the raftstore the server needs. *raftstore.Store
// implements it; tests use fakes.
type Store interface {
	// StoreID is this store's id.
	StoreID() uint64

	// Execute runs a RaftCmdRequest. Writes go through raft; a request whose
	// only request is Snap returns Result.Snap after a ReadIndex round, and
	// the caller must Close it.
	//
	// Region errors come back in res.Resp.Header.Error. err is only for the
	// cases with no answer: ctx expiry (an error wrapping ctx.Err()), store
	// shutdown (raftstore.ErrStoreStopped), or a proposal whose fate is
	// unknown (raftstore.ErrProposalUnknown).
	Execute(ctx context.Context, req *raft_cmdpb.RaftCmdRequest) (res raftstore.Result, err error)

	// Propose hands a write to its region's peer without waiting: cb gets
	// the Result Execute would have returned (its Err set for the cases
	// with no answer), exactly once, unless Propose returns an error, when
	// nothing was proposed. cb must not block.
	Propose(req *raft_cmdpb.RaftCmdRequest, cb raftstore.Callback) error

	// RegionByKey returns the region on this store that contains key and
	// this store's peer of it, or a *raftstore.RegionNotFoundError.
	RegionByKey(key []byte) (*metapb.Region, *metapb.Peer, error)

	// OnRaftMessage hands a message from another store to the raftstore. The
	// raftstore validates it and drops bad ones itself; the error is for
	// logging only (raftstore.ErrStoreStopped ends the stream).
	OnRaftMessage(msg *raft_serverpb.RaftMessage) error

	// ReceiveSnapshot stores a snapshot whose files are read from data and
	// then hands its MsgSnap to the peer.
	ReceiveSnapshot(msg *raft_serverpb.RaftMessage, data io.Reader) error
}

// Options configures a Server. The zero value is usable.
type Options struct {
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
	// Forwarder, if set, lets the server forward requests without a region
	// context to the store that leads their region (see ForwardedFromMetadata).
	// Without it such requests get NotLeader or RegionNotFound.
	Forwarder Forwarder
	// ObserveBatched, if set, is told of every request served on a
	// BatchCommands stream, under the full name of its unary method, so
	// that metrics see batched and unary calls alike.
	ObserveBatched func(method string, code codes.Code, elapsed time.Duration)
}

// Server implements the Kv gRPC service on top of a Store. It is safe for
// concurrent use: every unary RPC runs on the goroutine gRPC gives it, and a
// BatchCommands stream keeps its own state (batch.go, batch_direct.go).
type Server struct {
	store  Store
	fwd    Forwarder                                                   // nil: no forwarding
	obs    func(method string, code codes.Code, elapsed time.Duration) // nil: none
	log    *slog.Logger
	health *health.Server

	// streamsStopped is closed by StopStreams.
	streamsStopped  chan struct{}
	stopStreamsOnce sync.Once
	// raftMu protects raftConns, the open raft connections (raftconn.go),
	// which StopStreams closes.
	raftMu    sync.Mutex
	raftConns map[net.Conn]struct{}
	// raftReceived counts raft messages handed to the store; raftBad the
	// raft connections refused or ended for a bad hello or frame.
	raftReceived, raftBad atomic.Uint64
	// batchWork hands BatchCommands requests to idle workers (batch.go).
	batchWork chan func()
}

var (
	_ kvpb.KvServer = (*Server)(nil)
	_ Store         = (*raftstore.Store)(nil)
)

// NewServer returns a Server for store. Both the overall health ("") and the
// Kv service report SERVING until SetServing(false).
func NewServer(store Store, opts Options) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{
		store:  store,
		fwd:    opts.Forwarder,
		obs:    opts.ObserveBatched,
		log:    logger.With("component", "kv-server"),
		health: health.NewServer(),

		streamsStopped: make(chan struct{}),
		raftConns:      make(map[net.Conn]struct{}),
		batchWork:      make(chan func()),
	}
	s.SetServing(true)
	return s
}

// Register registers the Kv service, gRPC health (grpc.health.v1) and gRPC
// reflection on g. Call it before g.Serve.
//
// Reflection serves the descriptors of our .proto files and of everything
// they import (etcd's raft.proto and its gogoproto/gogo.proto, see
// internal/grpcreflection), so grpcurl needs no .proto files.
func (s *Server) Register(g *grpc.Server) {
	kvpb.RegisterKvServer(g, s)
	healthpb.RegisterHealthServer(g, s.health)
	if err := grpcreflection.Register(g); err != nil {
		s.log.Warn("gRPC reflection cannot describe every service", "err", err)
	}
}

// SetServing sets the health status of the server ("") and of the Kv
// service. A store that is shutting down reports NOT_SERVING first, so that
// load balancers and clients stop sending before the listener closes.
func (s *Server) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(KvServiceName, st)
}

// Keepalive settings of GRPCServerOptions.
const (
	// KeepaliveMinPingInterval is the shortest interval at which a client may
	// ping; clients ping at most every 5 s, with or without active streams.
	KeepaliveMinPingInterval = 5 * time.Second
	// KeepaliveTime is how long a connection may be idle before the server
	// pings the client, and KeepaliveTimeout how long it waits for the ack
	// before closing the connection.
	KeepaliveTime = 10 * time.Second
	// StreamWorkers is the size of the gRPC server's request goroutine
	// pool (see GRPCServerOptions); enough for the clients of a busy store.
	StreamWorkers    = 256
	KeepaliveTimeout = 3 * time.Second
)

// GRPCServerOptions returns the options a store's grpc.Server should be
// created with: keepalive enforcement that admits client pings every
// KeepaliveMinPingInterval (even without active streams), server-side
// keepalive pings, a receive limit of MaxGRPCMessageSize, which admits the
// largest legal batch, and fixed flow-control windows (grpcwindow). The
// send limit stays at gRPC's default (no practical limit), since scan
// responses are bounded only by their limit.
//
// Requests run on a pool of StreamWorkers long-lived goroutines (gRPC
// falls back to a new goroutine when all are busy): a fresh goroutine per
// request grew its stack on every call, 17% of a leader's CPU under reads.
func GRPCServerOptions() []grpc.ServerOption {
	return append([]grpc.ServerOption{
		grpc.NumStreamWorkers(StreamWorkers),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             KeepaliveMinPingInterval,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    KeepaliveTime,
			Timeout: KeepaliveTimeout,
		}),
		grpc.MaxRecvMsgSize(MaxGRPCMessageSize),
	}, grpcwindow.ServerOptions()...)
}
