package host

import (
	"slices"
	"testing"

	"github.com/lorafleet/lorafleet/gpukern"
)

// unit is one shrink unit as ShrinkUnits holds it.
type unit struct {
	a                     uint64
	rows, row0, row1, col int32
}

func unitsOf(s *ShrinkUnits) []unit {
	var us []unit
	for u := range s.A {
		m := s.Meta[4*u:]
		us = append(us, unit{s.A[u], m[0], m[1], m[2], m[3]})
	}
	return us
}

// Units cover each run of rows that share a part's A, 16 rows of A at a time, in pairs
// of the same size; the grid stays that of every row having its own adapter.
func TestShrinkUnits(t *testing.T) {
	const in = 64 // values a row of A: a row is 128 bytes
	addr := func(x gpukern.Tensor) uint64 { return uint64(x.(tensor)) << 20 }
	r16 := []gpukern.LoRAPart{{A: tensor(1), B: tensor(2), Rank: 16}, {A: tensor(3), B: tensor(4), Rank: 16}}
	mixed := []gpukern.LoRAPart{{A: tensor(5), B: tensor(6), Rank: 32}, {A: tensor(7), B: tensor(8), Rank: 8}}
	segs := []gpukern.LoRASegment{{Start: 0, End: 2, Parts: r16}, {Start: 2, End: 3}, {Start: 3, End: 5, Parts: mixed}}
	var tb LoRA
	tb.Build(segs, 2, addr)
	var s ShrinkUnits
	if !s.Build(&tb, in, 32) {
		t.Fatal("Build failed")
	}
	// 5 rows × 2 parts × 2 tiles of 16 (vStride 32) = 20 units: 10 pairs.
	if s.Pairs != 10 || MaxShrinkPairs(5, 2, 32) != 10 || len(s.A) != 20 || len(s.Meta) != 81 {
		t.Fatalf("%d pairs, %d units, %d meta", s.Pairs, len(s.A), len(s.Meta))
	}
	if s.Meta[80] != 3 {
		t.Errorf("%d pairs in use, want the first 3", s.Meta[80])
	}
	want := []unit{
		{1 << 20, 16, 0, 2, 0}, // part 0: rows 0-1's rank 16, with
		{5 << 20, 16, 3, 5, 0}, // rows 3-4's rank 32: its first 16 rows, then the next 16
		{5<<20 + 16*2*in, 16, 3, 5, 16},
		{3 << 20, 16, 0, 2, 32}, // part 1 (v's columns from 32 on)
		{7 << 20, 8, 3, 5, 32},  // rank 8: a unit of 8 rows
	}
	want = append(want, make([]unit, 20-len(want))...)
	if got := unitsOf(&s); !slices.Equal(got, want) {
		t.Errorf("units\n got %v\nwant %v", got, want)
	}

	// Units of different sizes do not pair: the second goes to a pair of its own.
	r8 := []gpukern.LoRAPart{{A: tensor(9), B: tensor(10), Rank: 8}}
	r16 = r16[:1]
	tb.Build([]gpukern.LoRASegment{{Start: 0, End: 1, Parts: r8}, {Start: 1, End: 2, Parts: r16}, {Start: 2, End: 3, Parts: r16}}, 1, addr)
	if !s.Build(&tb, in, 16) {
		t.Fatal("Build failed")
	}
	want = []unit{{9 << 20, 8, 0, 1, 0}, {}, {1 << 20, 16, 1, 3, 0}, {}}
	if got := unitsOf(&s); s.Pairs != 2 || s.Meta[16] != 2 || !slices.Equal(got, want) {
		t.Errorf("%d pairs, %d in use, units\n got %v\nwant %v", s.Pairs, s.Meta[16], got, want)
	}
	// Where they do not fit the grid, or an A is not 16-byte aligned, Build says so.
	tb.Build([]gpukern.LoRASegment{{Start: 0, End: 1, Parts: r8}, {Start: 1, End: 2, Parts: r16}}, 1, addr)
	if s.Build(&tb, in, 16) {
		t.Errorf("units of 8 and 16 rows in one pair: Build = true, units %v", unitsOf(&s))
	}
	odd := []gpukern.LoRAPart{{A: tensor(1), B: tensor(2), Rank: 16}}
	tb.Build([]gpukern.LoRASegment{{Start: 0, End: 1, Parts: odd}}, 1, func(x gpukern.Tensor) uint64 { return addr(x) + 8 })
	if s.Build(&tb, in, 16) {
		t.Error("an A at an address 8 bytes off 16: Build = true")
	}
}

// k is cut into the most chunks, up to 8, that divide its steps.
func TestShrinkSplits(t *testing.T) {
	for steps, want := range map[int]int{128: 8, 344: 8, 4: 4, 6: 2, 2: 2, 3: 1, 1: 1} {
		if got := ShrinkSplits(steps); got != want {
			t.Errorf("ShrinkSplits(%d) = %d, want %d", steps, got, want)
		}
	}
}
