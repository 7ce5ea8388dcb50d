// Package worker is one GPU node of the fleet: an HTTP server (OpenAI- and LoRAX-compatible)
// in front of the continuous-batching engine, with the adapter store behind it.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lorafleet/lorafleet/pkg/membership"
	"github.com/lorafleet/lorafleet/pkg/tokenizer"
	"github.com/lorafleet/lorafleet/worker/adapterstore"
	"github.com/lorafleet/lorafleet/worker/engine"
	"github.com/lorafleet/lorafleet/worker/model"
)

// Worker serves one base model and its adapters.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	mc      *model.Config
	tok     *tokenizer.Tokenizer
	eos     []int
	store   *adapterstore.Store
	eng     *engine.Engine
	loop    *engine.Loop
	metrics *metrics
	created int64
	gen     model.GenerationConfig

	stopLoop context.CancelFunc
	router   map[string]route

	draining atomic.Bool
	inflight atomic.Int64 // generation requests being answered
}

// New loads the model and tokenizer, prepares the adapter store and starts the engine; Serve
// stops it. log may be nil.
func New(cfg Config, log *slog.Logger) (*Worker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	be, err := newBackend(&cfg)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.Load(cfg.ModelDir)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	gen, err := model.LoadGenerationConfig(cfg.ModelDir)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	eng, err := engine.NewWith(be.mc, be.fwd, cfg.Engine)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	w := &Worker{cfg: cfg, log: log, mc: be.mc, tok: tok, eos: be.mc.EOSTokenIDs, eng: eng, gen: gen, created: time.Now().Unix()}
	if gen.EOSTokenIDs != nil {
		w.eos = gen.EOSTokenIDs
	}
	w.metrics = newMetrics(w.loopStats, w.storeStats, cfg.AdapterLabels)
	w.store, err = adapterstore.New(adapterstore.Config{
		Root: cfg.AdaptersDir, CacheDir: cfg.HubCacheDir, Endpoint: cfg.HubEndpoint, Token: cfg.HubToken, RedirectHosts: cfg.HubRedirectHosts,
		IdleTimeout: cfg.HubIdleTimeout, HostCacheBytes: cfg.HostCacheBytes, DiskCacheBytes: cfg.DiskCacheBytes,
		Base: be.mc.PEFTBase(), MaxRank: cfg.MaxLoRARank, BF16: be.bf16Adapters, Observe: w.metrics.observeLoad, Delay: be.storeDelay,
	})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	var loopCtx context.Context
	loopCtx, w.stopLoop = context.WithCancel(context.Background())
	w.loop = eng.Start(loopCtx, w.store)
	w.router = w.routes()
	return w, nil
}

func (w *Worker) loopStats() engine.Stats { return w.loop.Stats() }

func (w *Worker) storeStats() (host, disk int64) {
	s := w.store.Stats()
	return s.HostBytes, s.DiskBytes
}

// Serve answers requests on ln until ctx ends, then drains: /readyz turns 503, new requests
// are refused, in-flight ones get DrainTimeout to finish and the rest end with an explicit
// error. It returns nil after a clean drain.
func (w *Worker) Serve(ctx context.Context, ln net.Listener) error {
	defer w.stopLoop()
	srv := &fasthttp.Server{
		Handler:            w.handle,
		Name:               "lorafleet",
		MaxRequestBodySize: 16 << 20,
		ReadTimeout:        5 * time.Minute,
		IdleTimeout:        2 * time.Minute,
		CloseOnShutdown:    true,
		Logger:             fasthttpLogger{w.log},
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	member, err := w.join(ln)
	var stopReports func()
	if err == nil {
		stopReports, err = w.publishLoad(context.Background())
	}
	if err != nil {
		if member != nil {
			member.Shutdown()
		}
		srv.Shutdown()
		w.stopLoop()
		<-w.loop.Done()
		return err
	}
	defer stopReports() // after the drain: routers see the draining flag meanwhile
	select {
	case err := <-served:
		w.stopLoop()
		<-w.loop.Done()
		return fmt.Errorf("worker: serving: %w", err)
	case <-ctx.Done():
	}
	if member != nil {
		// Leave first: routers stop sending new requests while in-flight ones finish.
		if err := member.Leave(2 * time.Second); err != nil {
			w.log.Warn("leaving the cluster", "err", err)
		}
		defer member.Shutdown()
	}
	w.drain()
	w.stopLoop() // whatever is left ends with engine.ErrAborted
	<-w.loop.Done()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.ShutdownWithContext(shutCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("worker: shutdown: %w", err)
	}
	return nil
}

// drain stops admission and waits up to DrainTimeout for in-flight requests.
func (w *Worker) drain() {
	w.draining.Store(true)
	w.loop.Drain()
	deadline := time.Now().Add(w.cfg.DrainTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for w.inflight.Load() > 0 && time.Now().Before(deadline) {
		<-tick.C
	}
	if n := w.inflight.Load(); n > 0 {
		w.log.Warn("drain timeout: aborting requests", "in_flight", n)
	}
}

// join starts cluster membership when configured.
func (w *Worker) join(ln net.Listener) (*membership.Member, error) {
	g := w.cfg.Gossip
	if g.Name == "" {
		return nil, nil
	}
	host, port := "0.0.0.0", 7946
	if g.Bind != "" {
		h, p, err := net.SplitHostPort(g.Bind)
		if err != nil {
			return nil, fmt.Errorf("worker: gossip address: %w", err)
		}
		host = h
		if port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("worker: gossip port: %w", err)
		}
	}
	addr := g.Advertise
	if addr == "" {
		addr = ln.Addr().String()
	}
	m, err := membership.Start(membership.Config{
		Name: g.Name, BindAddr: host, BindPort: port, Seeds: g.Seeds, Fast: g.Fast, SecretKey: g.Key,
		Meta: membership.Meta{Role: membership.RoleWorker, HTTPAddr: addr, Model: w.cfg.ModelName, Capacity: 1},
	})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	w.log.Info("joined the cluster", "node", g.Name, "gossip", m.LocalAddr())
	return m, nil
}

// Run listens on cfg.Listen and serves until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	w, err := New(cfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", w.cfg.Listen)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	w.log.Info("worker listening", "addr", ln.Addr().String(), "model", cfg.ModelName)
	return w.Serve(ctx, ln)
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) { f.l.Debug(fmt.Sprintf(format, args...)) }
