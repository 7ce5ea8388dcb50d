package host

import (
	"bytes"
	"testing"
)

func TestArenaLaysOutAlignedAndShared(t *testing.T) {
	a := Arena{Buf: make([]byte, 64), Base: 0x1000}
	p1, ok1 := a.Put([]byte{1, 2, 3})
	p2, ok2 := a.Put([]byte{4, 5})
	p3, ok3 := a.Put([]byte{1, 2, 3}) // the same value again: shared
	if !ok1 || !ok2 || !ok3 || p1 != 0x1000 || p2 != 0x1010 || p3 != p1 {
		t.Fatalf("addresses %#x %#x %#x (%v %v %v), want 0x1000 0x1010 0x1000", p1, p2, p3, ok1, ok2, ok3)
	}
	if off, n := a.Pending(); off != 0 || n != 18 {
		t.Fatalf("pending [%d, +%d), want [0, +18)", off, n)
	}
	if !bytes.Equal(a.Buf[16:18], []byte{4, 5}) {
		t.Errorf("buffer %v", a.Buf[:18])
	}
	p4, _ := a.Put([]byte{9})
	if off, n := a.Pending(); p4 != 0x1020 || off != 18 || n != 15 {
		t.Errorf("second flush: put at %#x, pending [%d, +%d); want 0x1020, [18, +15)", p4, off, n)
	}
	if _, ok := a.Put(make([]byte, 32)); ok {
		t.Error("a value past the end fits")
	}
	a.Reset()
	if p, ok := a.Put([]byte{4, 5}); !ok || p != 0x1000 {
		t.Errorf("after Reset: %#x %v, want 0x1000", p, ok)
	}
	if off, n := a.Pending(); off != 0 || n != 2 {
		t.Errorf("after Reset: pending [%d, +%d)", off, n)
	}
}
