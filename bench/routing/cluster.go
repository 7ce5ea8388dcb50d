package routing

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/lorafleet/lorafleet/internal/proc"
)

// cluster is one experiment's processes: a NATS server, a router and the simulated workers,
// all the lorafleet binary, on loopback.
type cluster struct {
	procs  []*exec.Cmd
	router string // base URL
}

// startCluster starts the processes for policy p and waits until the router sees every
// worker. On error, whatever started is stopped.
func startCluster(ctx context.Context, c *Config, dir string, p Policy) (cl *cluster, err error) {
	cl = &cluster{}
	defer func() {
		if err != nil {
			cl.stop()
		}
	}()
	natsAddr, err := cl.start(ctx, c, "nats", "nats", "--listen", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	seed, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	natsURL := "nats://" + natsAddr
	routerArgs := []string{"router", "--listen", "127.0.0.1:0", "--gossip", seed, "--join", seed,
		"--nats", natsURL, "--base-model", "model", "--policy", p.Name}
	if p.Balance > 0 {
		routerArgs = append(routerArgs, "--balance-factor", strconv.FormatFloat(p.Balance, 'f', -1, 64))
	}
	routerAddr, err := cl.start(ctx, c, "router", routerArgs...)
	if err != nil {
		return nil, err
	}
	cl.router = "http://" + routerAddr
	for i := range c.Workers {
		gossip := "127.0.0.1:0" // no one needs a worker's gossip port before it joins
		args := []string{"worker", "--backend", "sim", "--sim-time-scale", strconv.FormatFloat(c.TimeScale, 'f', -1, 64),
			"--model", c.ModelDir, "--model-name", "model", "--adapters", filepath.Join(dir, "adapters"), "--hf-cache", filepath.Join(dir, fmt.Sprintf("hf-%02d", i)),
			"--listen", "127.0.0.1:0", "--node-name", fmt.Sprintf("w%02d", i), "--gossip", gossip, "--join", seed,
			"--nats", natsURL, "--max-adapters", strconv.Itoa(c.Slots), "--max-running", strconv.Itoa(c.MaxRunning)}
		if c.Profile != "" {
			args = append(args, "--sim-profile", c.Profile)
		}
		if _, err := cl.start(ctx, c, "worker", args...); err != nil {
			return nil, err
		}
	}
	return cl, cl.waitForWorkers(ctx, c.Workers, 60*time.Second)
}

// start runs one process and returns the address it logs that it listens on.
func (cl *cluster) start(ctx context.Context, c *Config, what string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.Binary, args...)
	cmd.Env = append(os.Environ(), "LORAFLEET_GOSSIP_KEY=") // the experiment's own cluster
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("routing: starting %s: %w", what, err)
	}
	cl.procs = append(cl.procs, cmd)
	addr, err := proc.ListenAddr(what, stderr, 30*time.Second)
	if err != nil {
		return "", fmt.Errorf("routing: %v: %w", args, err)
	}
	return addr, nil
}

// stop kills every process: the measurements are taken, nothing needs draining.
func (cl *cluster) stop() {
	for _, p := range cl.procs {
		p.Process.Kill()
	}
	for _, p := range cl.procs {
		p.Wait()
	}
	cl.procs = nil
}

// clusterView is the part of the router's GET /cluster the experiments read.
type clusterView struct {
	Workers []struct {
		ID       string `json:"id"`
		Addr     string `json:"addr"`
		InFlight int64  `json:"in_flight"`
		Reported int64  `json:"reported_in_flight"`
	} `json:"workers"`
}

func (cl *cluster) view(ctx context.Context) (clusterView, error) {
	var v clusterView
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cl.router+"/cluster", nil)
	if err != nil {
		return v, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

func (cl *cluster) waitForWorkers(ctx context.Context, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		v, err := cl.view(ctx)
		if err == nil && len(v.Workers) == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("routing: the router sees %d of %d workers after %v (last error: %v)", len(v.Workers), n, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
