// Package proc holds what starting lorafleet processes on loopback needs, for the routing
// experiments and the process tests: finding where a process listens from its log, and a free
// port to give it.
package proc

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"time"
)

// ListenAddr reads a process's log until it says "<what> listening" addr=..., returns that
// address, and keeps draining the log so that the process never blocks on a full pipe.
func ListenAddr(what string, stderr io.Reader, timeout time.Duration) (string, error) {
	line := regexp.MustCompile(regexp.QuoteMeta(what) + ` listening" addr=(\S+)`)
	found := make(chan string, 1)
	var last string
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := line.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
			last = sc.Text()
		}
		close(found)
	}()
	select {
	case addr, ok := <-found:
		if !ok {
			return "", fmt.Errorf("%s exited before listening: %s", what, last)
		}
		return addr, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("%s not listening after %v", what, timeout)
	}
}

// FreeAddr is a loopback address whose port was free a moment ago for both TCP and UDP, as
// gossip needs (for a seed, whose address others must know before it starts; a process
// that is no seed should bind port 0 instead).
func FreeAddr() (string, error) {
	var err error
	for range 20 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			continue
		}
		addr := ln.Addr().String()
		var pc net.PacketConn
		pc, err = net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr, nil
		}
	}
	return "", fmt.Errorf("no loopback port free for TCP and UDP: %w", err)
}
