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
	weights [][NumProj]loraWeight // per layer; A == nil where the adapter leaves a module alone
	tensors []gpukern.Tensor      // every A and B, as the backend's adapter memory holds them
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
	a := &Adapter{ID: id, weights: make([][NumProj]loraWeight, m.Config.Layers)}
	names := map[string]Proj{}
	for p := range NumProj {
		names[p.Name()] = p
	}
	var data [][]float32
	var mods []*loraWeight // the module of data[2i] (A) and data[2i+1] (B)
	for t, l := range pa.Weights {
		p, ok := names[t.Module]
		if !ok || t.Layer < 0 || t.Layer >= m.Config.Layers {
			return nil, fmt.Errorf("model: adapter %s: module %s of layer %d is not in the model", id, t.Module, t.Layer)
		}
		in, out := m.Config.Shape(p)
		if l.In != in || l.Out != out || len(l.A) != l.Rank*in || len(l.B) != out*l.Rank {
			return nil, fmt.Errorf("model: adapter %s: %s of layer %d does not fit the model", id, t.Module, t.Layer)
		}
		w := &a.weights[t.Layer][p]
		w.Rank, w.Scale = l.Rank, l.Scale
		mods = append(mods, w)
		data = append(data, l.A, l.B)
		a.rank = max(a.rank, l.Rank)
		a.bytes += int64(len(l.A)+len(l.B)) * 4
	}
	ts, err := m.be.AdapterWeights(data)
	if err != nil {
		return nil, fmt.Errorf("model: adapter %s: %w", id, err)
	}
	for i, w := range mods {
		w.A, w.B = ts[2*i], ts[2*i+1]
	}
	a.tensors = ts
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
	if a.tensors != nil {
		m.be.FreeAdapterWeights(a.tensors)
	}
	a.weights, a.tensors = nil, nil
}

// loraSegments returns, for every projection of layer li, the LoRA segments of the adapter
// runs, or nil for a projection that no run's adapter touches.
func loraSegments(runs []AdapterRun, li int) [NumProj][]gpukern.LoRASegment {
	var segs [NumProj][]gpukern.LoRASegment
	for p := range NumProj {
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
