// Package node runs a whole store process (regionkv-server): it locks the
// data dir, opens the engines, joins the cluster through the scheduler
// (getting a store id and, for the first store, bootstrapping the cluster),
// starts the raftstore with its transport, and serves the Kv gRPC service,
// the other stores' raft connections (on the same port, see kv/raftwire)
// and the status HTTP server until Stop.
//
// Start order (each step needs the previous ones):
//
//  1. LOCK the data dir (flock); bind the gRPC and status listeners, so that
//     a busy port fails before anything is written;
//  2. open the engines and read the StoreIdent, if any;
//  3. connect to the scheduler, checking the cluster id the data belongs
//     to (a store of another cluster refuses to start);
//  4. a data dir without a StoreIdent gets a store id (AllocID) and its
//     identity (raftstore.BootstrapStore);
//  5. if the cluster is not bootstrapped, prepare the first region ["", "")
//     with one voter here and ask the scheduler to bootstrap with it; a
//     store that loses that race discards its prepared region;
//  6. PutStore with the advertised address;
//  7. start the raftstore (its regions are reloaded from disk), with the
//     scheduler client as its SchedulerClient and heartbeat responses
//     routed to it; then serve gRPC, raft connections and HTTP.
//
// Stop reverses it: health NOT_SERVING, end the other stores' raft
// connections, stop gRPC gracefully (bounded), close the listener, stop the
// raftstore, close the transport,
// the scheduler client and the engines, and release the LOCK.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/regionkv/regionkv/kv/config"
	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/kv/raftwire"
	"github.com/regionkv/regionkv/kv/server"
	"github.com/regionkv/regionkv/kv/transport"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
	"github.com/regionkv/regionkv/raftstore"
	"github.com/regionkv/regionkv/scheduler/client"
)

// Version is the store's version, reported by /status and --version.
var Version = "0.1.0-dev"

// gracefulStopTimeout bounds the wait for in-flight requests at Stop.
const gracefulStopTimeout = 5 * time.Second

// Node is a running store process. Its methods are safe for concurrent use.
type Node struct {
	cfg config.Config
	// log carries store_id once it is known; baseLog does not (the
	// raftstore adds its own).
	log, baseLog *slog.Logger
	startTime    time.Time

	lock      *dirLock
	grpcLis   net.Listener // the store's port, shared by gRPC and raft connections through mux
	mux       *raftwire.Mux
	httpLis   net.Listener
	advertise string
	engines   *engine.Engines
	sched     *client.Client
	storeID   uint64
	clusterID uint64
	pool      *transport.Pool
	trans     *transport.Transport
	store     *raftstore.Store
	kv        *server.Server
	grpc      *grpc.Server
	http      *http.Server
	metrics   *metrics

	// errc receives the error of a server that stopped serving on its own.
	errc     chan error
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// Start starts a store with cfg. It returns once the store serves; ctx
// bounds the start (in particular the wait for the scheduler), not the
// store's life. logger defaults to slog.Default().
func Start(ctx context.Context, cfg config.Config, logger *slog.Logger) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	n := &Node{cfg: cfg, log: logger, baseLog: logger, startTime: time.Now(), errc: make(chan error, 3)}
	defer func() {
		if err != nil {
			n.release()
		}
	}()
	if err := n.openLocal(); err != nil {
		return nil, err
	}
	if err := n.join(ctx); err != nil {
		return nil, err
	}
	if err := n.startStore(); err != nil {
		return nil, err
	}
	n.serve()
	n.log.Info("store started", "cluster_id", n.clusterID, "addr", n.advertise, "status_addr", n.StatusAddr(),
		"data_dir", cfg.DataDir, "regions", len(n.store.PeerStatuses()), "version", Version,
		"took", time.Since(n.startTime).Round(time.Millisecond))
	return n, nil
}

// openLocal locks the data dir, binds the listeners and opens the engines.
func (n *Node) openLocal() error {
	cfg := &n.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	var err error
	if n.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return err
	}
	if n.grpcLis, err = net.Listen("tcp", cfg.Addr); err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	if n.advertise, err = advertiseAddr(cfg.AdvertiseAddr, n.grpcLis.Addr()); err != nil {
		return err
	}
	if cfg.StatusAddr != "" {
		if n.httpLis, err = net.Listen("tcp", cfg.StatusAddr); err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.StatusAddr, err)
		}
	}
	if n.engines, err = engine.Open(cfg.DataDir, cfg.Engine(n.log)); err != nil {
		return err
	}
	return nil
}

// advertiseAddr is the address to register: the configured one, or the
// listener's, which must then be dialable (not a wildcard address).
func advertiseAddr(configured string, lis net.Addr) (string, error) {
	if configured != "" {
		return configured, nil
	}
	tcp, ok := lis.(*net.TCPAddr)
	if ok && tcp.IP.IsUnspecified() {
		return "", fmt.Errorf("listening on %s: set --advertise-addr to an address other stores can dial", lis)
	}
	return lis.String(), nil
}

// join connects to the scheduler and makes sure this store and the cluster
// are bootstrapped and the scheduler knows the store's address.
func (n *Node) join(ctx context.Context) error {
	ident, err := raftstore.LoadStoreIdent(n.engines)
	if err != nil && !errors.Is(err, raftstore.ErrNotBootstrapped) {
		return err
	}
	addrs := n.cfg.SchedulerAddrs()
	n.sched, err = client.New(ctx, addrs, client.Options{ClusterID: ident.GetClusterId(), Logger: n.log})
	if errors.Is(err, client.ErrClusterIDMismatch) {
		return fmt.Errorf("refusing to start: the data in %s belongs to store %d of cluster %d, but the scheduler at %v serves another cluster (%w); "+
			"point --scheduler at cluster %d's scheduler, or start with an empty --data-dir",
			n.cfg.DataDir, ident.GetStoreId(), ident.GetClusterId(), addrs, err, ident.GetClusterId())
	}
	if err != nil {
		return fmt.Errorf("connect to the scheduler: %w", err)
	}
	n.clusterID = n.sched.ClusterID()
	if ident != nil {
		n.storeID = ident.StoreId
	} else {
		if n.storeID, err = n.sched.AllocID(ctx); err != nil {
			return fmt.Errorf("allocate a store id: %w", err)
		}
		if err := raftstore.BootstrapStore(n.engines, n.clusterID, n.storeID); err != nil {
			return err
		}
		n.log.Info("new store", "store_id", n.storeID, "cluster_id", n.clusterID)
	}
	n.log = n.log.With("store_id", n.storeID)
	if err := n.bootstrapCluster(ctx); err != nil {
		return err
	}
	err = n.sched.PutStore(ctx, &metapb.Store{Id: n.storeID, Address: n.advertise})
	switch {
	case client.IsErrorType(err, schedulerpb.ErrorType_STORE_TOMBSTONE):
		return fmt.Errorf("refusing to start: store %d was removed from cluster %d for good (tombstone); start with an empty --data-dir", n.storeID, n.clusterID)
	case err != nil:
		return fmt.Errorf("register store %d at %s with the scheduler: %w", n.storeID, n.advertise, err)
	}
	return nil
}

// startStore starts the transport and the raftstore.
func (n *Node) startStore() error {
	n.pool = transport.NewPool(n.sched, transport.PoolOptions{Logger: n.log})
	n.trans = transport.New(n.pool, transport.Options{Logger: n.log})
	rc := n.cfg.Raftstore()
	rc.Scheduler = n.sched
	rc.Logger = n.baseLog
	store, err := raftstore.NewStore(rc, n.engines, n.trans)
	if err != nil {
		return err
	}
	if store.StoreID() != n.storeID {
		return fmt.Errorf("the raftstore loaded store %d, expected %d", store.StoreID(), n.storeID)
	}
	n.sched.SetRegionHeartbeatHandler(store.HandleRegionHeartbeatResponse)
	if err := store.Start(); err != nil {
		return err
	}
	n.store = store
	return nil
}

// serve starts the gRPC and status servers.
func (n *Node) serve() {
	n.metrics = newMetrics(n)
	n.kv = server.NewServer(n.store, server.Options{Logger: n.log, Forwarder: forwarder{pool: n.pool, sched: n.sched},
		ObserveBatched: n.metrics.observeBatched})
	n.grpc = grpc.NewServer(append(server.GRPCServerOptions(),
		grpc.ChainUnaryInterceptor(n.metrics.unaryInterceptor),
		grpc.ChainStreamInterceptor(n.metrics.streamInterceptor))...)
	n.kv.Register(n.grpc)
	n.mux = raftwire.NewMux(n.grpcLis, n.kv.ServeRaftConn)
	n.wg.Go(func() {
		if err := n.mux.Serve(); err != nil {
			n.log.Error("listener failed", "err", err)
			n.errc <- fmt.Errorf("listener: %w", err)
		}
	})
	n.wg.Go(func() {
		if err := n.grpc.Serve(n.mux.GRPC()); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Error("gRPC server failed", "err", err)
			n.errc <- fmt.Errorf("gRPC server: %w", err)
		}
	})
	if n.httpLis != nil {
		n.http = &http.Server{Handler: n.statusHandler(), ReadHeaderTimeout: 10 * time.Second}
		n.wg.Go(func() {
			if err := n.http.Serve(n.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("status server failed", "err", err)
				n.errc <- fmt.Errorf("status server: %w", err)
			}
		})
	}
}

// Stop shuts the store down gracefully (see the package doc). It is
// idempotent.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		n.log.Info("store shutting down")
		start := time.Now()
		if n.kv != nil {
			n.kv.SetServing(false)
			n.kv.StopStreams()
		}
		if n.grpc != nil {
			done := make(chan struct{})
			go func() {
				n.grpc.GracefulStop()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(gracefulStopTimeout):
				n.log.Warn("requests still running after the grace period; cutting them off")
				n.grpc.Stop()
				<-done
			}
		}
		if n.mux != nil {
			n.mux.Close()
		}
		if n.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = n.http.Shutdown(ctx)
			cancel()
		}
		n.wg.Wait()
		n.release()
		n.log.Info("store shut down", "took", time.Since(start).Round(time.Millisecond))
	})
}

// release stops and closes whatever has been started or opened, in reverse
// order. Servers must have stopped serving.
func (n *Node) release() {
	if n.store != nil {
		n.store.Stop()
	}
	if n.trans != nil {
		n.trans.Close()
	}
	if n.pool != nil {
		n.pool.Close()
	}
	if n.sched != nil {
		n.sched.Close()
	}
	if n.engines != nil {
		if err := n.engines.Close(); err != nil {
			n.log.Error("close engines", "err", err)
		}
	}
	// A listener never served is closed here; a server closes its own.
	if n.grpcLis != nil && n.mux == nil {
		n.grpcLis.Close()
	}
	if n.httpLis != nil && n.http == nil {
		n.httpLis.Close()
	}
	n.lock.release()
}

// Err returns a channel that receives an error if a server stops serving on
// its own; the process should then Stop and exit.
func (n *Node) Err() <-chan error { return n.errc }

// StoreID returns the store's id.
func (n *Node) StoreID() uint64 { return n.storeID }

// ClusterID returns the id of the cluster the store belongs to.
func (n *Node) ClusterID() uint64 { return n.clusterID }

// Addr returns the store's advertised gRPC address.
func (n *Node) Addr() string { return n.advertise }

// StatusAddr returns the status HTTP address ("" if disabled).
func (n *Node) StatusAddr() string {
	if n.httpLis == nil {
		return ""
	}
	return n.httpLis.Addr().String()
}

// Store returns the raftstore.
func (n *Node) Store() *raftstore.Store { return n.store }
