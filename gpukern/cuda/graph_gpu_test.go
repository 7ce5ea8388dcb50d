//go:build cuda

package cuda_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/lorafleet/lorafleet/internal/golden"
	"github.com/lorafleet/lorafleet/worker/engine"
)

// tolGraph bounds a replayed graph against the same kernels launched one by one: the same
// arithmetic, so only a different cuBLAS algorithm could make them differ at all.
const tolGraph = 1e-6

// A decode step replayed as a CUDA graph, with each step's new tokens, positions, KV slots
// and adapter tables, gives what eager launches give, step by step.
func TestGraphReplayMatchesEager(t *testing.T) {
	for _, set := range golden.Sets {
		t.Run(set, func(t *testing.T) {
			f := loadGPUFixture(t, set)
			batch := func() []*engine.Sequence {
				var seqs []*engine.Sequence
				for _, c := range f.g.Cases {
					seqs = append(seqs, f.seq(c, true))
				}
				return seqs
			}
			gpu.SetGraphs(false)
			eager := batch()
			f.run(t, eager...)
			gpu.SetGraphs(true)
			before := gpu.GraphStats()
			graphed := batch()
			f.run(t, graphed...)
			after := gpu.GraphStats()
			if after.Failed > before.Failed {
				t.Fatalf("graph capture failed: %v", after.FirstFailure)
			}
			if after.Replayed == before.Replayed {
				t.Fatalf("no step was replayed as a graph (stats before %+v, after %+v)", before, after)
			}
			for i, c := range f.g.Cases {
				if !slices.Equal(graphed[i].Output, eager[i].Output) {
					t.Errorf("%s: graphs %v, eager %v", caseName(c), graphed[i].Output, eager[i].Output)
				}
				for step := range min(len(graphed[i].Logits), len(eager[i].Logits)) {
					record(t, set+" graph vs eager", fmt.Sprintf("%s step %d", caseName(c), step), graphed[i].Logits[step], eager[i].Logits[step], tolGraph)
				}
			}
			t.Logf("graphs: %+v", after)
		})
	}
}
