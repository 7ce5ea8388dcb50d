package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// runNATS runs the embedded NATS server as its own process, for clusters without a NATS
// deployment.
func runNATS(args []string, e env) error {
	fs := newFlags("nats", "[--listen HOST:PORT]", e)
	listen := fs.String("listen", "127.0.0.1:4222", "client listen address")
	if err := parse(fs, args); err != nil {
		return err
	}
	s, err := startNATS(*listen)
	if err != nil {
		return err
	}
	slog.New(slog.NewTextHandler(e.stderr, nil)).Info("nats listening", "addr", s.Addr().String())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

// startNATS starts an embedded NATS server on addr (port 0: any free port).
func startNATS(addr string) (*natsserver.Server, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return nil, err
	}
	if port == 0 {
		port = natsserver.RANDOM_PORT
	}
	s, err := natsserver.NewServer(&natsserver.Options{Host: host, Port: port, NoSigs: true, MaxPayload: 1 << 20})
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats: not ready on %s", addr)
	}
	return s, nil
}
