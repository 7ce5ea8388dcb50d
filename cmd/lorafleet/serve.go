package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lorafleet/lorafleet/pkg/membership"
	"github.com/lorafleet/lorafleet/router"
	"github.com/lorafleet/lorafleet/worker"
)

// runServe runs the whole system in one process: embedded NATS, the router and N workers
// gossiping on loopback. With no flags it serves the demo model and adapters in testdata/.
func runServe(args []string, e env) error {
	fs := newFlags("serve", "[--listen ADDR] [--workers N] [--model DIR] [--adapters DIR]", e)
	listen := fs.String("listen", "127.0.0.1:8080", "the router's HTTP address")
	n := fs.Int("workers", 2, "workers to run")
	modelDir := fs.String("model", "testdata/tiny-llama/model", "Hugging Face model directory")
	adapters := fs.String("adapters", "testdata/tiny-llama/adapters", "directory of PEFT adapters")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *n < 1 {
		return errors.New("--workers must be at least 1")
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	ns, err := startNATS("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	r, err := router.New(router.Config{BaseModel: "model"})
	if err != nil {
		return err
	}
	self, err := membership.Start(membership.Config{Name: "router", BindAddr: "127.0.0.1",
		Meta: membership.Meta{Role: membership.RoleRouter}, Events: r.Apply})
	if err != nil {
		return err
	}
	defer self.Shutdown()
	closeReports, err := followReports(ctx, r, ns.ClientURL(), "serve")
	if err != nil {
		return err
	}
	defer closeReports()

	errs := make(chan error, *n+1)
	for i := range *n {
		cfg := worker.Config{
			ModelDir: *modelDir, AdaptersDir: *adapters, ModelName: "model", Listen: "127.0.0.1:0",
			Gossip: worker.Gossip{Name: fmt.Sprintf("worker-%d", i), Bind: "127.0.0.1:0", Seeds: []string{self.LocalAddr()}},
			NATS:   worker.NATS{URL: ns.ClientURL(), Cluster: "serve"},
		}
		w, err := worker.New(cfg, log.With("worker", i))
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return err
		}
		go func() { errs <- w.Serve(ctx, ln) }()
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	go func() { errs <- r.Serve(ctx, ln) }()
	waitForWorkers(r, *n, 10*time.Second)
	log.Info("router listening", "addr", ln.Addr().String(), "workers", *n, "base_model", "model")
	var first error
	for range *n + 1 {
		if err := <-errs; err != nil && first == nil {
			first = err
			stop() // one part failed: stop the rest
		}
	}
	return first
}

// waitForWorkers waits until gossip has brought n workers into the router (or the timeout).
func waitForWorkers(r *router.Router, n int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for r.Workers() < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}
