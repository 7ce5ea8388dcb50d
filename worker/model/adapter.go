package model

import (
	"fmt"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/pkg/peft"
)

// Adapter is a LoRA adapter resident on the model's backend.
type Adapter struct {
	ID      string
	rank    int                   // the largest rank of any module
	weights [][numProj]loraWeight // per layer; A == nil where the adapter leaves a module alone
	bytes   int64
}

type loraWeight struct {
	A, B  gpukern.Tensor
	Rank  int
	Scale float32
}

// Rank is the adapter's largest rank.
func (a *Adapter) Rank() int { return a.rank }

// Bytes is the adapter's float32 size.
func (a *Adapter) Bytes() int64 { return a.bytes }

// LoadAdapter uploads a PEFT adapter that peft.Load checked against m.Config.PEFTBase().
func (m *Model) LoadAdapter(id string, pa *peft.Adapter) (*Adapter, error) {
	a := &Adapter{ID: id, weights: make([][numProj]loraWeight, m.Config.Layers)}
	names := map[string]Proj{}
	for p := range numProj {
		names[p.Name()] = p
	}
	for t, l := range pa.Weights {
		p, ok := names[t.Module]
		if !ok || t.Layer < 0 || t.Layer >= m.Config.Layers {
			m.FreeAdapter(a)
			return nil, fmt.Errorf("model: adapter %s: module %s of layer %d is not in the model", id, t.Module, t.Layer)
		}
		in, out := m.Config.Shape(p)
		if l.In != in || l.Out != out || len(l.A) != l.Rank*in || len(l.B) != out*l.Rank {
			m.FreeAdapter(a)
			return nil, fmt.Errorf("model: adapter %s: %s of layer %d does not fit the model", id, t.Module, t.Layer)
		}
		a.weights[t.Layer][p] = loraWeight{A: m.be.Weight(l.A), B: m.be.Weight(l.B), Rank: l.Rank, Scale: l.Scale}
		a.rank = max(a.rank, l.Rank)
		a.bytes += int64(len(l.A)+len(l.B)) * 4
	}
	return a, nil
}

// ShapeOnly returns an adapter known by its shape alone, holding no weights: the device copy
// of a backend that models the cost of LoRA instead of computing it (worker/sim). Forward
// refuses it.
func ShapeOnly(id string, rank int, bytes int64) *Adapter {
	return &Adapter{ID: id, rank: rank, bytes: bytes}
}

// FreeAdapter releases the adapter's backend memory; it must not be used afterwards.
func (m *Model) FreeAdapter(a *Adapter) {
	for li := range a.weights {
		for p := range a.weights[li] {
			if w := a.weights[li][p]; w.A != nil {
				m.be.Free(w.A)
				m.be.Free(w.B)
			}
		}
	}
	a.weights = nil
}

// loraSegments returns, for every projection of layer li, the LoRA segments of the adapter
// runs, or nil for a projection that no run's adapter touches.
func loraSegments(runs []AdapterRun, li int) [numProj][]gpukern.LoRASegment {
	var segs [numProj][]gpukern.LoRASegment
	for p := range numProj {
		for _, r := range runs {
			if r.Adapter != nil && r.Adapter.weights[li][p].A != nil {
				segs[p] = make([]gpukern.LoRASegment, 0, len(runs))
				break
			}
		}
		if segs[p] == nil {
			continue
		}
		for _, r := range runs {
			s := gpukern.LoRASegment{Start: r.Start, End: r.End}
			if r.Adapter != nil {
				w := r.Adapter.weights[li][p]
				s.A, s.B, s.Rank, s.Scale = w.A, w.B, w.Rank, w.Scale
			}
			segs[p] = append(segs[p], s)
		}
	}
	return segs
}

func maxRank(runs []AdapterRun) int {
	r := 0
	for _, run := range runs {
		if run.Adapter != nil {
			r = max(r, run.Adapter.rank)
		}
	}
	return r
}
