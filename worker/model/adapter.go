package model

import (
	"fmt"
	"slices"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/pkg/peft"
)

// Adapter is a LoRA adapter resident on the model's backend.
type Adapter struct {
	ID   string
	rank int // the largest rank of any module
	// layers holds, per layer and linear, the adapter's matrices for each projection of the
	// linear (A == nil where it leaves one alone), or nil where it leaves them all alone.
	layers  [][numLinear][]gpukern.LoRAPart
	tensors []gpukern.Tensor // every A and B, as the backend's adapter memory holds them
	bytes   int64
}

// Rank is the adapter's largest rank.
func (a *Adapter) Rank() int { return a.rank }

// Bytes is the adapter's float32 size.
func (a *Adapter) Bytes() int64 { return a.bytes }

// LoadAdapter uploads a PEFT adapter that peft.Load checked against m.Config.PEFTBase().
func (m *Model) LoadAdapter(id string, pa *peft.Adapter) (*Adapter, error) {
	a := &Adapter{ID: id, layers: make([][numLinear][]gpukern.LoRAPart, m.Config.Layers)}
	type place struct {
		l    linear
		part int
	}
	places := map[string]place{}
	for l, projs := range linearParts {
		for i, p := range projs {
			places[p.Name()] = place{linear(l), i}
		}
	}
	var data []gpukern.HostTensor
	var mods []*gpukern.LoRAPart // the module of data[2i] (A) and data[2i+1] (B)
	for t, lora := range pa.Weights {
		pl, ok := places[t.Module]
		if !ok || t.Layer < 0 || t.Layer >= m.Config.Layers {
			return nil, fmt.Errorf("model: adapter %s: module %s of layer %d is not in the model", id, t.Module, t.Layer)
		}
		in, out := m.Config.Shape(linearParts[pl.l][pl.part])
		ha, hb := gpukern.HostTensor{F32: lora.A, BF16: lora.A16}, gpukern.HostTensor{F32: lora.B, BF16: lora.B16}
		if lora.In != in || lora.Out != out || ha.Len() != lora.Rank*in || hb.Len() != out*lora.Rank {
			return nil, fmt.Errorf("model: adapter %s: %s of layer %d does not fit the model", id, t.Module, t.Layer)
		}
		parts := &a.layers[t.Layer][pl.l]
		if *parts == nil {
			*parts = make([]gpukern.LoRAPart, len(linearParts[pl.l]))
		}
		w := &(*parts)[pl.part]
		w.Rank, w.Scale = lora.Rank, lora.Scale
		mods = append(mods, w)
		data = append(data, ha, hb)
		a.rank = max(a.rank, lora.Rank)
		a.bytes += int64(ha.Len()+hb.Len()) * 4
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

// asyncUploader is a backend whose AdapterWeights may return before the copy has landed.
type asyncUploader interface {
	AdapterReady(ts []gpukern.Tensor) bool
}

// AdapterReady reports whether a's upload has finished, so that a forward pass using it
// will not wait for it. On a backend that uploads synchronously it always has.
func (m *Model) AdapterReady(a *Adapter) bool {
	u, ok := m.be.(asyncUploader)
	return !ok || len(a.tensors) == 0 || u.AdapterReady(a.tensors)
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
	a.layers, a.tensors = nil, nil
}

// loraSegments returns, for every linear of layer li, the LoRA segments of the adapter
// runs, or nil for a linear that no run's adapter touches. The segments live in buf, reused
// from layer to layer and step to step: a backend reads them only during the call they are
// passed to.
func loraSegments(buf *[numLinear][]gpukern.LoRASegment, runs []AdapterRun, li int) [numLinear][]gpukern.LoRASegment {
	for l := range numLinear {
		buf[l] = slices.Grow(buf[l][:0], len(runs))[:len(runs)]
	}
	var touched [numLinear]bool
	for i, r := range runs {
		var parts *[numLinear][]gpukern.LoRAPart
		if r.Adapter != nil {
			parts = &r.Adapter.layers[li]
		}
		for l := range numLinear {
			seg := gpukern.LoRASegment{Start: r.Start, End: r.End}
			if parts != nil && parts[l] != nil {
				seg.Parts, touched[l] = parts[l], true
			}
			buf[l][i] = seg
		}
	}
	var segs [numLinear][]gpukern.LoRASegment
	for l := range numLinear {
		if touched[l] {
			segs[l] = buf[l]
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
