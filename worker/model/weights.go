package model

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

// ErrWeights is wrapped by every problem with the checkpoint's tensors.
var ErrWeights = errors.New("model: bad weights")

// Proj names one of a decoder layer's seven linear projections.
type Proj int

// The projections, in the order PEFT and the forward pass know them.
const (
	ProjQ Proj = iota
	ProjK
	ProjV
	ProjO
	ProjGate
	ProjUp
	ProjDown
	NumProj // the number of projections
)

// projPaths are the module paths inside a decoder layer.
var projPaths = [NumProj]string{
	"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
	"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
}

// Name is the module's short name, e.g. "q_proj".
func (p Proj) Name() string {
	return projPaths[p][strings.LastIndexByte(projPaths[p], '.')+1:]
}

// Shape returns the projection's input and output sizes.
func (c *Config) Shape(p Proj) (in, out int) {
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	switch p {
	case ProjQ:
		return c.Hidden, q
	case ProjK, ProjV:
		return c.Hidden, kv
	case ProjO:
		return q, c.Hidden
	case ProjGate, ProjUp:
		return c.Hidden, c.Intermediate
	default:
		return c.Intermediate, c.Hidden
	}
}

// linear is one GEMM of a decoder layer: a projection, or projections of the same input fused
// into one by stacking their weights' rows (q, k and v; gate and up), so that a step launches
// fewer and larger kernels.
type linear int

const (
	linQKV linear = iota
	linO
	linGateUp
	linDown
	numLinear
)

// linearParts are each linear's projections, in the order of its output columns.
var linearParts = [numLinear][]Proj{{ProjQ, ProjK, ProjV}, {ProjO}, {ProjGate, ProjUp}, {ProjDown}}

// maxParts is the most projections a linear fuses (q, k and v).
const maxParts = 3

// linearShape is a linear's input size and the output sizes of its parts.
type linearShape struct {
	in, out int   // out is the sum of outs
	outs    []int // per part
}

func (c *Config) linearShape(l linear) linearShape {
	var s linearShape
	for _, p := range linearParts[l] {
		in, out := c.Shape(p)
		s.in, s.out, s.outs = in, s.out+out, append(s.outs, out)
	}
	return s
}

// PEFTBase describes the model's LoRA-targetable modules for pkg/peft.
func (c *Config) PEFTBase() peft.Base {
	b := peft.Base{NumLayers: c.Layers}
	for p := range NumProj {
		in, out := c.Shape(p)
		b.Modules = append(b.Modules, peft.Module{Name: p.Name(), Path: projPaths[p], In: in, Out: out})
	}
	return b
}

// hasBias reports whether projection p carries a bias vector.
func (c *Config) hasBias(p Proj) bool {
	switch p {
	case ProjQ, ProjK, ProjV:
		return c.AttentionBias
	case ProjO:
		return c.OProjBias
	default:
		return c.MLPBias
	}
}

// tensorSource is what the loader needs from a checkpoint.
type tensorSource interface {
	Info(name string) (safetensors.TensorInfo, bool)
	Float32(name string) ([]float32, error)
}

// WeightPart is a tensor of a checkpoint, by its Hugging Face name (such as
// "model.layers.0.self_attn.q_proj.weight"), and the shape config.json implies for it.
type WeightPart struct {
	Name  string
	Shape []int
}

// WeightFunc makes on a backend one tensor holding the elements of parts one after another:
// the weight of a fused linear stacks its projections' weights (which share their input size)
// by rows, and its bias concatenates theirs.
type WeightFunc func(parts ...WeightPart) (gpukern.Tensor, error)

// checkpointWeights reads tensors from src, checking their shapes, onto be.
func checkpointWeights(src tensorSource, be gpukern.Backend) WeightFunc {
	return func(parts ...WeightPart) (gpukern.Tensor, error) {
		data := make([][]float32, len(parts))
		for i, p := range parts {
			info, ok := src.Info(p.Name)
			if !ok {
				return nil, fmt.Errorf("%w: missing tensor %s", ErrWeights, p.Name)
			}
			if !slices.Equal(info.Shape, p.Shape) {
				return nil, fmt.Errorf("%w: tensor %s has shape %v, config.json implies %v", ErrWeights, p.Name, info.Shape, p.Shape)
			}
			var err error
			if data[i], err = src.Float32(p.Name); err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrWeights, p.Name, err)
			}
		}
		if len(data) == 1 {
			return be.Weight(data[0]), nil // no copy of the largest tensors (the embedding)
		}
		return be.Weight(slices.Concat(data...)), nil
	}
}

// loader makes tensors with a WeightFunc, remembering the first error.
type loader struct {
	weight WeightFunc
	err    error
}

func (l *loader) load(parts ...WeightPart) gpukern.Tensor {
	if l.err != nil {
		return nil
	}
	t, err := l.weight(parts...)
	l.err = err
	return t
}

func part(name string, shape ...int) WeightPart { return WeightPart{Name: name, Shape: shape} }

// loadWeights makes every tensor of the model; lmHead says whether the checkpoint has its own
// lm_head.weight.
func (m *Model) loadWeights(weight WeightFunc, lmHead bool) error {
	c := &m.Config
	l := &loader{weight: weight}
	m.embed = l.load(part("model.embed_tokens.weight", c.VocabSize, c.Hidden))
	m.norm = l.load(part("model.norm.weight", c.Hidden))
	m.lmHead = m.embed
	if lmHead && !c.TieEmbeddings {
		m.lmHead = l.load(part("lm_head.weight", c.VocabSize, c.Hidden))
	} else if !lmHead && !c.TieEmbeddings {
		return fmt.Errorf("%w: missing tensor lm_head.weight and tie_word_embeddings is false", ErrWeights)
	}
	m.layers = make([]layer, c.Layers)
	for i := range m.layers {
		ly := &m.layers[i]
		prefix := fmt.Sprintf("model.layers.%d.", i)
		ly.inNorm = l.load(part(prefix+"input_layernorm.weight", c.Hidden))
		ly.postNorm = l.load(part(prefix+"post_attention_layernorm.weight", c.Hidden))
		for lin, projs := range linearParts {
			var weights, biases []WeightPart
			for _, p := range projs {
				in, out := c.Shape(p)
				weights = append(weights, part(prefix+projPaths[p]+".weight", out, in))
				biases = append(biases, part(prefix+projPaths[p]+".bias", out))
			}
			ly.w[lin] = l.load(weights...)
			if c.hasBias(projs[0]) { // the same for every part
				ly.bias[lin] = l.load(biases...)
			}
		}
	}
	return l.err
}

// AdapterLens are the element counts of the A and B matrices of an adapter of rank r on every
// projection of every layer: what a device's adapter slot must hold.
func (c *Config) AdapterLens(r int) []int {
	var lens []int
	for range c.Layers {
		for p := range NumProj {
			in, out := c.Shape(p)
			lens = append(lens, r*in, out*r)
		}
	}
	return lens
}
