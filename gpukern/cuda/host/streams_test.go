package host

import (
	"slices"
	"testing"
)

func TestScheduleForksAndJoins(t *testing.T) {
	// A projection: shrink (side), to_bf16 and GEMM (main, beside it), expand (joins); then a
	// main kernel; then a side kernel left unjoined at the end.
	ops := []Op{{Name: "shrink", Side: true}, {Name: "to_bf16"}, {Name: "gemm"}, {Name: "expand", Join: true},
		{Name: "rope"}, {Name: "expand", Join: true}, {Name: "shrink", Side: true}}
	want := []Step{{Fork: true}, {Op: 0}, {Op: 1}, {Op: 2}, {Join: true}, {Op: 3}, {Op: 4}, {Op: 5}, {Fork: true}, {Op: 6}, {Join: true}}
	if got := Schedule(ops); !slices.Equal(got, want) {
		t.Errorf("schedule\n%v\nwant\n%v", got, want)
	}
	// Nothing on the side stream: launches only.
	if got := Schedule(ops[1:5]); !slices.Equal(got, []Step{{Op: 0}, {Op: 1}, {Op: 2}, {Op: 3}}) {
		t.Errorf("main only: %v", got)
	}
}
