package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/lorafleet/lorafleet/pkg/loadreport"
	"github.com/lorafleet/lorafleet/pkg/membership"
	"github.com/lorafleet/lorafleet/router"
)

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	return host, port, err
}

func runRouter(args []string, e env) error {
	fs := newFlags("router", "(--join GOSSIP-ADDR | --worker ID=HOST:PORT) ... [--listen ADDR] [--tenants FILE] [flags]", e)
	var c router.Config
	var listen, tenants, name, gossip, natsURL, clusterName string
	var workers, seeds []string
	fs.StringVar(&name, "node-name", "router", "cluster node name")
	fs.StringVar(&gossip, "gossip", "0.0.0.0:7946", "gossip listen address (with --join)")
	fs.StringVar(&natsURL, "nats", "", "NATS server to follow the workers' load reports on")
	fs.StringVar(&clusterName, "cluster", "lorafleet", "cluster name shared with the workers (NATS subjects)")
	fs.Func("join", "gossip address of a cluster member to join (repeatable): workers are found by gossip", func(s string) error {
		seeds = append(seeds, s)
		return nil
	})
	fs.StringVar(&listen, "listen", "127.0.0.1:8080", "HTTP listen address")
	fs.StringVar(&c.BaseModel, "base-model", "", "model name that selects no adapter (the workers' --model-name)")
	fs.Float64Var(&c.BalanceFactor, "balance-factor", 1.25, "no worker takes more than this times its share of the load")
	fs.StringVar(&tenants, "tenants", "", "tenants file (JSON); without it every request is served")
	fs.Func("policy", "placement of adapter requests: bounded (default), consistent, least-loaded, round-robin, random (for comparisons)", func(s string) error {
		p, err := router.ParsePolicy(s)
		c.Policy = p
		return err
	})
	fs.Func("worker", "a worker, as ID=HOST:PORT (repeatable)", func(s string) error {
		id, addr, ok := strings.Cut(s, "=")
		if !ok || id == "" {
			return fmt.Errorf("want ID=HOST:PORT, got %q", s)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return err
		}
		workers = append(workers, s)
		return nil
	})
	if err := parse(fs, args); err != nil {
		return err
	}
	if len(workers) == 0 && len(seeds) == 0 {
		fmt.Fprintln(fs.Output(), "give --join (gossip) or at least one --worker")
		fs.Usage()
		return errUsage
	}
	if tenants != "" {
		t, err := router.LoadTenants(tenants)
		if err != nil {
			return err
		}
		c.Tenants = t
	}
	c.AdminToken = os.Getenv("LORAFLEET_ADMIN_TOKEN") // the workers' token too
	r, err := router.New(c)
	if err != nil {
		return err
	}
	for _, w := range workers {
		id, addr, _ := strings.Cut(w, "=")
		r.SetWorker(id, addr, 1)
	}
	if len(seeds) > 0 {
		host, port, err := splitHostPort(gossip)
		if err != nil {
			return err
		}
		key, err := gossipKey()
		if err != nil {
			return err
		}
		m, err := membership.Start(membership.Config{Name: name, BindAddr: host, BindPort: port, Seeds: seeds, SecretKey: key,
			Meta: membership.Meta{Role: membership.RoleRouter}, Events: r.Apply})
		if err != nil {
			return err
		}
		defer m.Shutdown()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if natsURL != "" {
		closeReports, err := followReports(ctx, r, natsURL, clusterName)
		if err != nil {
			return err
		}
		defer closeReports()
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	slog.New(slog.NewTextHandler(e.stderr, nil)).Info("router listening", "addr", ln.Addr().String(), "workers", len(workers))
	return r.Serve(ctx, ln)
}

// followReports subscribes to the workers' load reports and applies them to r until ctx ends.
func followReports(ctx context.Context, r *router.Router, url, cluster string) (func(), error) {
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	t, err := loadreport.Subscribe(nc, loadreport.TableConfig{Cluster: cluster})
	if err != nil {
		nc.Close()
		return nil, err
	}
	go r.FollowReports(ctx, t, 100*time.Millisecond)
	return func() { t.Close(); nc.Close() }, nil
}
