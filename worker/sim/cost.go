package sim

import (
	"math"
	"slices"
	"time"

	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/model"
)

// StepTime is the modeled time of one forward step over b: the weight GEMMs for its rows,
// attention reading every sequence's context from the KV cache, and reading the weights of
// each distinct adapter once (LoRA kernels are memory-bound at serving ranks).
func (p *Profile) StepTime(b *model.Batch) time.Duration {
	sec := p.gemmMS(len(b.Tokens)) / 1e3
	ctx := 0
	for _, s := range b.Seqs {
		ctx += s.CtxLen
	}
	sec += float64(ctx) * float64(p.KVBytesPerToken()) / p.KVReadRate
	var seen []*model.Adapter // a step has few distinct adapters
	for _, r := range b.Adapters {
		if r.Adapter == nil || slices.Contains(seen, r.Adapter) {
			continue
		}
		seen = append(seen, r.Adapter)
		sec += float64(r.Adapter.Bytes()) / p.LoRAReadRate
	}
	return seconds(sec)
}

// gemmMS interpolates the GEMM points: flat below the first, linear between, the per-row
// slope beyond the last.
func (p *Profile) gemmMS(rows int) float64 {
	pts, r := p.GEMM, float64(rows)
	if r <= pts[0][0] {
		return pts[0][1]
	}
	for i := 1; i < len(pts); i++ {
		if r <= pts[i][0] {
			a, b := pts[i-1], pts[i]
			return a[1] + (r-a[0])*(b[1]-a[1])/(b[0]-a[0])
		}
	}
	last := pts[len(pts)-1]
	return last[1] + (r-last[0])*p.GEMMPerRowBeyond/1e3
}

// KVBytesPerToken is the modeled KV cache footprint of one token across layers.
func (p *Profile) KVBytesPerToken() int64 {
	c := p.config()
	return 2 * int64(c.Layers) * int64(c.KVHeads*c.HeadDim) * int64(p.Model.DTypeBytes)
}

// config is the modeled model's shape as the model package describes one.
func (p *Profile) config() model.Config {
	m := p.Model
	return model.Config{Layers: m.Layers, Hidden: m.Hidden, Intermediate: m.Intermediate, Heads: m.Heads, KVHeads: m.KVHeads, HeadDim: m.Hidden / m.Heads}
}

// AdapterBytes is the size a PEFT adapter would have on the modeled model: for each module
// it adapts, its largest rank times the module's in and out sizes, over every layer. (The
// files it is read from are those of a small test model.)
func (p *Profile) AdapterBytes(pa *peft.Adapter) int64 {
	ranks := map[string]int{}
	for t, l := range pa.Weights {
		ranks[t.Module] = max(ranks[t.Module], l.Rank)
	}
	c := p.config()
	var n int64
	for _, m := range c.PEFTBase().Modules {
		n += int64(ranks[m.Name]) * int64(m.In+m.Out)
	}
	return n * int64(c.Layers) * int64(p.Model.DTypeBytes)
}

// LoadTime is the modeled time to bring an adapter of the given size into a tier: "device"
// (from host memory), "disk" (from local disk into host memory) or "hub" (downloaded).
func (p *Profile) LoadTime(tier string, bytes int64) time.Duration {
	rate := p.HostToDevice
	switch tier {
	case "disk":
		rate = p.DiskRate
	case "hub":
		rate = p.HubRate
	}
	return seconds(float64(bytes) / rate)
}

// seconds converts s to a Duration, saturating where a slow profile's times overflow one
// (about 292 years).
func seconds(s float64) time.Duration {
	if ns := s * float64(time.Second); ns < math.MaxInt64 {
		return time.Duration(ns)
	}
	return math.MaxInt64
}
