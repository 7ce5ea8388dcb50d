package host

// Step is one action of a flush on the two streams: record the fork event on the main stream
// and make the side stream wait for it (Fork), record the join event on the side stream and
// make the main stream wait for it (Join), or launch Ops[Op] on the stream its Side names.
// Early marks a kernel of ours on the main stream right after another (no join, cuBLAS call or
// start of the flush between them), which may start before that one ends (programmatic
// dependent launch): it waits for it itself (kernels' pdl_wait), and until then only loads
// its first weights. After anything else a launch waits the usual way.
type Step struct {
	Fork, Join bool
	Op         int
	Early      bool
}

// Schedule orders ops on the main and side streams: a side launch forks from the main stream
// where the main stream has had launches since the last fork (so it sees everything launched
// there before it), and the first main launch marked Join, or the end of the flush, joins the
// side stream back (so that a captured graph ends on the main stream alone). Main launches
// between a fork and its join run concurrently with the side ones.
func Schedule(ops []Op) []Step {
	steps := make([]Step, 0, len(ops)+4)
	unjoined, mainMoved := false, true
	afterKernel := false // the main stream's last step launched a kernel of ours
	for i := range ops {
		switch {
		case ops[i].Side && mainMoved:
			steps = append(steps, Step{Fork: true})
			unjoined, mainMoved = true, false
		case ops[i].Side:
			unjoined = true
		case ops[i].Join && unjoined:
			steps = append(steps, Step{Join: true})
			unjoined, afterKernel = false, false
		}
		main := !ops[i].Side
		steps = append(steps, Step{Op: i, Early: main && ops[i].Fn != 0 && afterKernel})
		if main {
			mainMoved, afterKernel = true, ops[i].Fn != 0
		}
	}
	if unjoined {
		steps = append(steps, Step{Join: true})
	}
	return steps
}

// FlushOps is how many recorded launches make the backend launch them before the step ends,
// at the first point where the side stream has nothing pending (FlushPoint): the GPU then
// runs a step's first layers while the host records the rest, instead of idling until it has
// recorded them all. Each such part of a decode step is a graph of its own.
const FlushOps = 64

// FirstFlushOps is the same for a step's first flush: the GPU, idle until then, gets its
// first launches once the host has recorded about a layer.
const FirstFlushOps = MinGraphOps

// FlushPoint reports whether ops, the launches recorded so far, are to be launched now: at
// least every of them, and no side launch since the last one marked Join, so that the flush
// cuts no LoRA delta off from the kernel that adds it.
func FlushPoint(ops []Op, every int) bool {
	if len(ops) < every {
		return false
	}
	for i := len(ops) - 1; i >= 0; i-- {
		switch {
		case ops[i].Side:
			return false
		case ops[i].Join:
			return true
		}
	}
	return true
}
