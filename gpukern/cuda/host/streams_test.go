package host

import (
	"slices"
	"testing"
)

func TestScheduleForksAndJoins(t *testing.T) {
	// A projection: shrink and expand (side, one fork), to_bf16 and GEMM (main, beside them),
	// then the consumer of the delta (joins); a main kernel; a consumer with nothing to join;
	// a side kernel left unjoined at the end.
	ops := []Op{{Name: "shrink", Side: true}, {Name: "expand", Side: true}, {Name: "to_bf16"}, {Name: "gemm"},
		{Name: "rope", Join: true}, {Name: "attention"}, {Name: "rmsnorm", Join: true}, {Name: "shrink", Side: true}}
	want := []Step{{Fork: true}, {Op: 0}, {Op: 1}, {Op: 2}, {Op: 3}, {Join: true}, {Op: 4}, {Op: 5}, {Op: 6},
		{Fork: true}, {Op: 7}, {Join: true}}
	if got := Schedule(ops); !slices.Equal(got, want) {
		t.Errorf("schedule\n%v\nwant\n%v", got, want)
	}
	// A side launch after main ones forks again, to see them.
	ops = []Op{{Name: "shrink", Side: true}, {Name: "gemm"}, {Name: "shrink", Side: true}, {Name: "add", Join: true}}
	want = []Step{{Fork: true}, {Op: 0}, {Op: 1}, {Fork: true}, {Op: 2}, {Join: true}, {Op: 3}}
	if got := Schedule(ops); !slices.Equal(got, want) {
		t.Errorf("schedule\n%v\nwant\n%v", got, want)
	}
	// Nothing on the side stream: launches only.
	if got := Schedule(ops[1:2]); !slices.Equal(got, []Step{{Op: 0}}) {
		t.Errorf("main only: %v", got)
	}
}

func TestScheduleEarly(t *testing.T) {
	// Kernels of ours (Fn set) and cuBLAS (none): a launch is early right after a kernel of
	// ours on the main stream, not first in the flush, not after cuBLAS or a join; side
	// launches never are, nor do they stop the main stream's next one being early.
	ops := []Op{{Name: "rmsnorm", Fn: 1}, {Name: "gemm_small", Fn: 2}, {Name: "shrink", Fn: 3, Side: true},
		{Name: "gemm", Fn: 0}, {Name: "rope", Fn: 4, Join: true}, {Name: "attention", Fn: 5}, {Name: "gemm", Fn: 0},
		{Name: "add", Fn: 6}, {Name: "shrink", Fn: 3, Side: true}, {Name: "to_bf16", Fn: 7}, {Name: "gemm_small", Fn: 2}}
	want := []Step{{Op: 0}, {Op: 1, Early: true}, {Fork: true}, {Op: 2}, {Op: 3}, {Join: true}, {Op: 4}, {Op: 5, Early: true},
		{Op: 6}, {Op: 7}, {Fork: true}, {Op: 8}, {Op: 9, Early: true}, {Op: 10, Early: true}, {Join: true}}
	if got := Schedule(ops); !slices.Equal(got, want) {
		t.Errorf("schedule\n%v\nwant\n%v", got, want)
	}
}

func TestFlushPoint(t *testing.T) {
	// Layers as the model records them: the norm (joins the last delta), a projection's
	// shrink and expand on the side beside its GEMM, the kernel that adds the delta (joins).
	var ops []Op
	layer := []Op{{Name: "rmsnorm", Join: true}, {Name: "shrink", Side: true}, {Name: "expand", Side: true},
		{Name: "gemm"}, {Name: "rope", Join: true}, {Name: "attention"}}
	var points []int
	for range 3 * FlushOps / len(layer) {
		for _, o := range layer {
			ops = append(ops, o)
			if FlushPoint(ops, FlushOps) {
				points = append(points, len(ops))
				if o.Side || (o.Name == "gemm") {
					t.Fatalf("flush after %s (op %d): a delta is still on the side stream", o.Name, len(ops))
				}
				ops = ops[:0]
			}
		}
	}
	if len(points) < 2 {
		t.Fatalf("flush points %v: want one every ~%d launches", points, FlushOps)
	}
	for _, n := range points {
		if n < FlushOps || n > FlushOps+len(layer) {
			t.Errorf("flushed after %d launches: want the first safe point at or after %d", n, FlushOps)
		}
	}
	// Main launches only: a flush at FlushOps exactly.
	if main := make([]Op, FlushOps); !FlushPoint(main, FlushOps) || FlushPoint(main[:FlushOps-1], FlushOps) {
		t.Error("main-only launches: want a flush at FlushOps and not before")
	}
}
