package proc

import (
	"net"
	"testing"
)

// A free address takes both a TCP listener and a UDP socket, as memberlist binds both.
func TestFreeAddrIsFreeForTCPAndUDP(t *testing.T) {
	for range 5 {
		addr, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("TCP on %s: %v", addr, err)
		}
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err != nil {
			t.Fatalf("UDP on %s: %v", addr, err)
		}
		pc.Close()
	}
}
