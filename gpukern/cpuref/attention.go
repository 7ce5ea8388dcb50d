package cpuref

import (
	"math"

	"github.com/lorafleet/lorafleet/gpukern"
)

// attnTask is one (query row, head) pair.
type attnTask struct {
	seq      *gpukern.AttnSeq
	row, ctx int // batch row; number of context positions it sees
}

// Attention implements gpukern.Backend. Each (row, head) is computed by one goroutine:
// scores in context order, a max-subtracted softmax, and the weighted sum of V in the same
// order, so a row's output does not depend on the rest of the batch.
func (b *Backend) Attention(out, q gpukern.Tensor, cache *gpukern.KVCache, layer int, seqs []gpukern.AttnSeq, p gpukern.AttnParams) {
	var tasks []attnTask
	maxCtx := 0
	for i := range seqs {
		s := &seqs[i]
		for r := range s.QLen {
			ctx := s.CtxLen - s.QLen + r + 1
			tasks = append(tasks, attnTask{seq: s, row: s.QStart + r, ctx: ctx})
			maxCtx = max(maxCtx, ctx)
		}
	}
	o, qs := data(out), data(q)
	kc, vc := data(cache.K[layer]), data(cache.V[layer])
	group := p.Heads / p.KVHeads
	width := p.KVHeads * p.HeadDim
	n := len(tasks) * p.Heads
	b.parallel(n, max(1, 65536/max(1, maxCtx*p.HeadDim)), func(lo, hi int) {
		scores := make([]float32, maxCtx)
		for t := lo; t < hi; t++ {
			task, h := tasks[t/p.Heads], t%p.Heads
			off := (task.row*p.Heads + h) * p.HeadDim
			headQ, headOut := qs[off:off+p.HeadDim], o[off:off+p.HeadDim]
			kvOff := (h / group) * p.HeadDim
			slot := func(pos int) int {
				bs := cache.BlockSize
				return (int(task.seq.Blocks[pos/bs])*bs+pos%bs)*width + kvOff
			}
			sc := scores[:task.ctx]
			mx := float32(math.Inf(-1))
			for pos := range sc {
				s := dot(headQ, kc[slot(pos):slot(pos)+p.HeadDim]) * p.Scale
				sc[pos] = s
				mx = max(mx, s)
			}
			var sum float32
			for pos, s := range sc {
				e := float32(math.Exp(float64(s - mx)))
				sc[pos] = e
				sum += e
			}
			clear(headOut)
			for pos, e := range sc {
				wgt := e / sum
				vrow := vc[slot(pos) : slot(pos)+p.HeadDim]
				for d := range headOut {
					headOut[d] += wgt * vrow[d]
				}
			}
		}
	})
}
