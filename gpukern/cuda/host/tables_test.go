package host

import (
	"slices"
	"testing"

	"github.com/lorafleet/lorafleet/gpukern"
)

// A mixed batch: a prefill of 20 rows (two tiles of 16 and 4) and two decode rows. Block
// tables are padded to the next power of two of the longest (3 blocks → 4).
func TestPlanAttention(t *testing.T) {
	seqs := []gpukern.AttnSeq{
		{QStart: 0, QLen: 1, CtxLen: 40, Blocks: []int32{7, 8, 9}},
		{QStart: 1, QLen: 20, CtxLen: 20, Blocks: []int32{3, 4}},
		{QStart: 21, QLen: 1, CtxLen: 5, Blocks: []int32{5}},
	}
	var p Attn
	p.Plan(seqs, 16)
	if p.Width != 4 || !slices.Equal(p.Blocks, []int32{7, 8, 9, 0, 3, 4, 0, 0, 5, 0, 0, 0}) {
		t.Errorf("blocks %v (width %d)", p.Blocks, p.Width)
	}
	if !slices.Equal(p.TileRow0, []int32{1, 17}) || !slices.Equal(p.TileRows, []int32{16, 4}) {
		t.Errorf("tiles %v %v", p.TileRow0, p.TileRows)
	}
	if !slices.Equal(p.DecRows, []int32{0, 21}) || p.MaxDecode != 40 {
		t.Errorf("decode rows %v, longest %d", p.DecRows, p.MaxDecode)
	}
	if p.RowLen[0] != 40 || p.RowLen[1] != 1 || p.RowLen[20] != 20 || p.RowLen[21] != 5 || len(p.RowLen) != 22 {
		t.Errorf("row lengths %v", p.RowLen)
	}
	if p.RowTable[0] != 0 || p.RowTable[5] != 4 || p.RowTable[21] != 8 {
		t.Errorf("row tables %v", p.RowTable)
	}
	// The layout does not change while the contexts grow within the width.
	seqs[0].Blocks = append(seqs[0].Blocks, 10)
	var q Attn
	if q.Plan(seqs, 16); len(q.Blocks) != len(p.Blocks) {
		t.Errorf("one more block changed the table size %d → %d", len(p.Blocks), len(q.Blocks))
	}
	// Planned again in the same Attn, a smaller decode-only batch leaves nothing of the first.
	p.Plan(seqs[2:], 16)
	if p.Width != 1 || !slices.Equal(p.Blocks, []int32{5}) || len(p.TileRow0) != 0 || !slices.Equal(p.DecRows, []int32{21}) ||
		p.MaxDecode != 5 || len(p.RowLen) != 22 || p.RowLen[0] != 0 || p.RowLen[21] != 5 || p.RowTable[5] != 0 {
		t.Errorf("replanned: %+v", p)
	}
}

type tensor int

func (tensor) Len() int { return 1 }

// Tables have an entry per (row, part), whatever the number of adapters: a fused q/k/v
// projection, an adapter without k, one with all three parts, rows of the base model.
func TestLoRATables(t *testing.T) {
	addr := func(x gpukern.Tensor) uint64 { return uint64(x.(tensor)) }
	onlyQV := []gpukern.LoRAPart{{A: tensor(10), B: tensor(11), Rank: 8, Scale: 2}, {}, {A: tensor(14), B: tensor(15), Rank: 8, Scale: 2}}
	all := []gpukern.LoRAPart{{A: tensor(20), B: tensor(21), Rank: 16, Scale: 1}, {A: tensor(22), B: tensor(23), Rank: 4, Scale: 1}, {A: tensor(24), B: tensor(25), Rank: 16, Scale: 1}}
	segs := []gpukern.LoRASegment{{Start: 0, End: 2, Parts: onlyQV}, {Start: 2, End: 3}, {Start: 3, End: 4, Parts: all}}
	var tb LoRA
	tb.Build(segs, 0, addr)
	if tb.Rows != 4 || tb.Parts != 3 || tb.MaxRank != 16 || len(tb.A) != 12 {
		t.Fatalf("tables %+v", tb)
	}
	wantA := []uint64{10, 0, 14, 10, 0, 14, 0, 0, 0, 20, 22, 24}
	wantRanks := []int32{8, 0, 8, 8, 0, 8, 0, 0, 0, 16, 4, 16}
	if !slices.Equal(tb.A, wantA) || !slices.Equal(tb.Ranks, wantRanks) || tb.B[11] != 25 || tb.Scales[0] != 2 || tb.Scales[9] != 1 {
		t.Errorf("A %v ranks %v B %v scales %v", tb.A, tb.Ranks, tb.B, tb.Scales)
	}
	// Groups: rows 0-1 (one adapter), 2 (the base model), 3.
	if want := []int32{0, 2, 2, 1, 3, 1, 0, 0}; !slices.Equal(tb.Groups, want) || tb.NGroups != 3 {
		t.Errorf("groups %v, want %v", tb.Groups, want)
	}
	if tb.GridGroups() != 4 || tb.Direct() {
		t.Errorf("3 groups of 4 rows: grid for %d groups, direct %v; want 4, false", tb.GridGroups(), tb.Direct())
	}
	// Two adapters in place of three, over the same rows: the same sizes.
	segs[2].Parts = onlyQV
	var tb2 LoRA
	if tb2.Build(segs, 0, addr); len(tb2.A) != len(tb.A) || len(tb2.Ranks) != len(tb.Ranks) || len(tb2.Groups) != len(tb.Groups) {
		t.Errorf("table sizes changed with the adapter mix")
	}
	// No adapter at all, built again in the first tables: the expand still gets a zero entry
	// per (row, part), to write zeros, and nothing of the adapters before is left.
	none := []gpukern.LoRASegment{{Start: 0, End: 4}}
	if tb.Build(none, 3, addr); tb.Parts != 3 || len(tb.Ranks) != 12 || tb.MaxRank != 0 || slices.Max(tb.Ranks) != 0 ||
		slices.Max(tb.A) != 0 || slices.Max(tb.B) != 0 || slices.Max(tb.Scales) != 0 {
		t.Errorf("tables without adapters %+v", tb)
	}
	if want := []int32{0, 4, 0, 0, 0, 0, 0, 0}; !slices.Equal(tb.Groups, want) || tb.NGroups != 1 {
		t.Errorf("groups without adapters %v, want %v", tb.Groups, want)
	}
	if tb.GridGroups() != 1 || tb.Direct() {
		t.Errorf("one group of 4 rows: grid for %d groups, direct %v; want 1, false", tb.GridGroups(), tb.Direct())
	}
	// A segment longer than a group is cut into groups of LoRAGroup rows, the last one shorter.
	long := []gpukern.LoRASegment{{Start: 0, End: 1, Parts: all}, {Start: 1, End: 1 + 2*LoRAGroup + 3, Parts: onlyQV}}
	tb.Build(long, 0, addr)
	want := []int32{0, 1, 1, LoRAGroup, 1 + LoRAGroup, LoRAGroup, 1 + 2*LoRAGroup, 3}
	if got := tb.Groups[:len(want)]; !slices.Equal(got, want) || len(tb.Groups) != 2*tb.Rows || slices.Max(tb.Groups[len(want):]) != 0 {
		t.Errorf("groups of a long segment %v, want %v then zeros", tb.Groups, want)
	}
	if tb.GridGroups() != 4 {
		t.Errorf("4 groups of %d rows: grid for %d groups, want 4", tb.Rows, tb.GridGroups())
	}
	// A row in no segment, between two, is a group of its own; 5 groups of 6 rows need a grid
	// of 6 (8, rounded up, is more than the rows); a group a row is direct.
	gap := []gpukern.LoRASegment{{Start: 0, End: 2, Parts: all}, {Start: 3, End: 4, Parts: onlyQV}, {Start: 4, End: 6, Parts: all}}
	tb.Build(gap, 0, addr)
	if want := []int32{0, 2, 2, 1, 3, 1, 4, 2}; !slices.Equal(tb.Groups[:8], want) || tb.GridGroups() != 4 {
		t.Errorf("groups with a gap %v (grid %d), want %v (4)", tb.Groups, tb.GridGroups(), want)
	}
	gap[2].End = 5
	gap = append(gap, gpukern.LoRASegment{Start: 5, End: 6, Parts: onlyQV})
	tb.Build(gap, 0, addr)
	if tb.NGroups != 5 || tb.GridGroups() != 6 || tb.Direct() {
		t.Errorf("5 groups of 6 rows %v: grid for %d, direct %v; want 6, false", tb.Groups, tb.GridGroups(), tb.Direct())
	}
	single := []gpukern.LoRASegment{{Start: 0, End: 1, Parts: all}, {Start: 1, End: 2}, {Start: 2, End: 3, Parts: onlyQV}}
	if tb.Build(single, 0, addr); !tb.Direct() || tb.GridGroups() != 3 {
		t.Errorf("a group a row %v: direct %v, grid for %d; want true, 3", tb.Groups, tb.Direct(), tb.GridGroups())
	}
	if tb.Build(nil, 3, addr); tb.Rows != 0 || tb.Parts != 0 || len(tb.A) != 0 || tb.GridGroups() != 0 || tb.Direct() {
		t.Errorf("tables of no segments %+v", tb)
	}
}

// Decode splits long contexts into parts of at most MaxSplitLen, and small batches further,
// into a power of two of parts no shorter than MinSplitLen, as many as fit one wave.
func TestDecodeSplits(t *testing.T) {
	const slots = 132 * 8 // an H100's SMs, 8 decode blocks each
	for _, c := range []struct{ rows, heads, ctx, want int }{
		{32, 32, 128, 1},    // 1,024 blocks: one wave already
		{128, 32, 513, 2},   // many blocks; long enough for two parts of at most 512
		{128, 32, 5000, 10}, // ceil(5000/512)
		{8, 32, 128, 2},     // 256 blocks: 4 parts would fill the slots, 128 positions make 2 of 64
		{8, 32, 4096, 8},    // 8 parts of 512, more than the 4 that fill the slots
		{1, 32, 127, 1},     // shorter than two parts of MinSplitLen
		{1, 32, 2048, 32},   // 33 would fill the slots; 32 parts of 64
		{1, 32, 40000, 79},  // ceil(40000/512) beats the 32 that fill the slots
		{1, 8, 1000, 8},     // 132 would fill the slots; 15 parts of 64 fit, rounded down to 8
		{0, 32, 100, 1},     // no rows
	} {
		if got := DecodeSplits(c.rows, c.heads, c.ctx, slots); got != c.want {
			t.Errorf("DecodeSplits(%d rows, %d heads, context %d) = %d, want %d", c.rows, c.heads, c.ctx, got, c.want)
		}
	}
}
