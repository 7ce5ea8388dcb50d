package kvcache

import (
	"errors"
	"testing"
)

func TestGrowReleaseSlots(t *testing.T) {
	p, err := NewPool(4, 16)
	if err != nil {
		t.Fatal(err)
	}
	var a, b Table
	if err := p.Grow(&a, 17); err != nil { // two blocks
		t.Fatal(err)
	}
	if len(a.Blocks) != 2 || p.FreeBlocks() != 2 {
		t.Fatalf("blocks %v, free %d; want 2 blocks, 2 free", a.Blocks, p.FreeBlocks())
	}
	if got, want := p.Slot(&a, 17), a.Blocks[1]*16+1; got != want {
		t.Fatalf("slot of position 17 = %d, want %d", got, want)
	}
	if err := p.Grow(&b, 48); !errors.Is(err, ErrNoBlocks) {
		t.Fatalf("growing past the pool: err = %v, want ErrNoBlocks", err)
	}
	if len(b.Blocks) != 0 || p.FreeBlocks() != 2 {
		t.Fatalf("a failed Grow took blocks: table %v, free %d", b.Blocks, p.FreeBlocks())
	}
	if err := p.Grow(&b, 32); err != nil {
		t.Fatal(err)
	}
	seen := map[int32]bool{}
	for _, blk := range append(append([]int32{}, a.Blocks...), b.Blocks...) {
		if seen[blk] || blk < 0 || blk >= 4 {
			t.Fatalf("block %d handed out twice or out of range", blk)
		}
		seen[blk] = true
	}
	if p.Usage() != 1 {
		t.Fatalf("usage %v, want 1", p.Usage())
	}
	p.Release(&a)
	p.Release(&a)
	if p.FreeBlocks() != 2 || len(a.Blocks) != 0 {
		t.Fatalf("after release: free %d, table %v", p.FreeBlocks(), a.Blocks)
	}
}

func TestNewPoolRejectsBadSizes(t *testing.T) {
	for _, c := range [][2]int{{0, 16}, {4, 0}, {-1, 1}} {
		if _, err := NewPool(c[0], c[1]); err == nil {
			t.Errorf("NewPool(%d, %d) accepted", c[0], c[1])
		}
	}
}
