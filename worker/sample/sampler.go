// Package sample picks the next token from a sequence's logits with vLLM's (V1 engine)
// semantics, and matches stop strings in the detokenized output.
//
// The order of operations is vLLM's:
//  1. logprobs, when requested, are the log-softmax of the raw logits (vLLM's default
//     logprobs_mode "raw_logprobs"), before anything below;
//  2. min_tokens masks EOS and stop tokens, then logit_bias is added;
//  3. repetition penalty (prompt and output tokens), then frequency and presence penalties
//     (output tokens);
//  4. temperature 0: argmax, ties to the lowest id. Otherwise the logits are divided by the
//     temperature, min-p drops tokens below MinP·p_max, top-k keeps the K highest logits
//     (with ties), top-p keeps the smallest most likely set reaching TopP of the remaining
//     mass, and a token is drawn from the renormalized distribution.
//
// The random stream is our own (PCG from math/rand/v2), so a seed reproduces our output,
// not vLLM's: only the distribution sampled from is the same.
package sample

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/lorafleet/lorafleet/gpukern"
)

// pcgStream is the fixed PCG increment; only the seed varies between requests.
const pcgStream = 0x9e3779b97f4a7c15

// TokenLogprob is one token with its log-probability.
type TokenLogprob struct {
	Token   int
	Logprob float32
}

// Result is one sampled token. Logprob and Top are set only when Params.Logprobs >= 0:
// Logprob is the chosen token's, Top the Params.Logprobs most likely tokens, most likely
// first (ties: lower id first). Both come from the raw logits.
type Result struct {
	Token   int
	Logprob float32
	Top     []TokenLogprob
}

// Sampler samples the tokens of one sequence. It owns the sequence's random stream and is
// not safe for concurrent use.
type Sampler struct {
	p       Params
	temp    float64 // effective temperature; 0 = greedy
	eos     []int   // end generation unless IgnoreEOS
	stopIDs []int   // end generation always (copy of p.StopTokenIDs)
	masked  []int   // EOS and stop tokens, -inf while len(output) < MinTokens
	rng     *rand.Rand
	top     []TokenLogprob // top-N selection buffer, reused across steps
	// LogitBias as parallel slices: a fixed order and no map walk per step.
	biasIDs  []int
	biasVals []float32
}

// New returns a sampler for p, which should have passed Validate: out-of-range values do
// not panic but are treated as "off". eosIDs are the model's end-of-sequence ids
// (generation_config may list several); they and p.StopTokenIDs are masked while fewer
// than p.MinTokens tokens have been generated, even with IgnoreEOS, as vLLM does.
func New(p Params, eosIDs []int) *Sampler {
	s := &Sampler{p: p, temp: effectiveTemperature(p.Temperature), rng: newRand(p.Seed)}
	s.eos = append([]int(nil), eosIDs...)
	s.stopIDs = append([]int(nil), p.StopTokenIDs...)
	s.masked = append(append([]int(nil), eosIDs...), p.StopTokenIDs...)
	for id, b := range p.LogitBias {
		s.biasIDs = append(s.biasIDs, id)
		s.biasVals = append(s.biasVals, float32(b))
	}
	if p.Logprobs > 0 {
		s.top = make([]TokenLogprob, 0, p.Logprobs)
	}
	return s
}

func effectiveTemperature(t float64) float64 {
	if !(t > 0) { // 0, negative or NaN: greedy
		return 0
	}
	return max(t, minTemperature)
}

func newRand(seed *int64) *rand.Rand {
	if seed == nil || *seed == -1 { // vLLM treats seed -1 as "no seed"
		return rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return rand.New(rand.NewPCG(uint64(*seed), pcgStream))
}

// IsStopToken reports whether token ends generation: a stop token, or EOS unless IgnoreEOS.
func (s *Sampler) IsStopToken(token int) bool {
	return slices.Contains(s.stopIDs, token) || (!s.p.IgnoreEOS && slices.Contains(s.eos, token))
}

// Sample picks the next token from logits (one per vocabulary id). prompt and output are
// the sequence's token ids so far; they drive the penalties and min_tokens. logits is not
// modified. Once warm, Sample allocates only Result.Top: vocabulary-sized buffers come from
// a pool, and greedy sampling without penalties, bias or min_tokens uses none. An empty
// logits slice yields Token -1.
func (s *Sampler) Sample(logits []float32, prompt, output []int) Result {
	if len(logits) == 0 {
		return Result{Token: -1}
	}
	edits := s.needsEdits(len(output))
	var sc *scratch
	if edits || s.temp != 0 {
		sc = getScratch()
		defer putScratch(sc)
	}
	values := logits
	if edits {
		values = s.edit(sc, logits, prompt, output)
	}
	var tok int
	if s.temp == 0 {
		tok = argmax(values)
	} else {
		tok = s.sampleRandom(sc, values)
	}
	return s.result(logits, tok)
}

// result attaches the requested raw logprobs to the chosen token.
func (s *Sampler) result(logits []float32, tok int) Result {
	r := Result{Token: tok}
	if s.p.Logprobs < 0 {
		return r
	}
	lse := logSumExp(logits)
	r.Logprob = float32(float64(logits[tok]) - lse)
	if s.p.Logprobs > 0 {
		s.top = topN(s.top[:0], logits, s.p.Logprobs)
		r.Top = make([]TokenLogprob, len(s.top))
		for i, t := range s.top {
			r.Top[i] = TokenLogprob{Token: t.Token, Logprob: float32(float64(t.Logprob) - lse)}
		}
	}
	return r
}

// sampleRandom draws one token from the distribution left by candidates.
func (s *Sampler) sampleRandom(sc *scratch, values []float32) int {
	cands, total, fallback := s.candidates(sc, values)
	if len(cands) == 0 || !(total > 0) {
		return fallback
	}
	return pick(cands, total, s.rng.Float64())
}

// candidates applies temperature, min-p, top-k and top-p (vLLM's order) and returns the
// surviving tokens with their unnormalized probabilities and the sum of those. When no
// distribution is left (every logit -inf, or an infinite one), it returns none and the
// argmax as fallback.
func (s *Sampler) candidates(sc *scratch, values []float32) (c []cand, total float64, fallback int) {
	maxV, best := maxArg(values)
	if math.IsInf(float64(maxV), 0) {
		return nil, 0, best
	}
	thr := float32(math.Inf(-1))
	if s.p.MinP > 0 {
		// p_i >= MinP·p_max  <=>  v_i >= max + T·ln(MinP)
		thr = maxV + float32(s.temp*math.Log(s.p.MinP))
	}
	if k := s.p.TopK; k > 0 && k < len(values) {
		thr = max(thr, sc.kthLargest(values, k))
	}
	c, total = sc.collect(values, thr, maxV, 1/s.temp)
	if p := s.p.TopP; p > 0 && p < 1 && len(c) > 0 {
		c = pruneLight(c, (1-p)*total/float64(len(c)))
		c = c[:keepTopMass(c, p*total)]
		total = weightSum(c)
	}
	return c, total, best
}

// argmax returns the first index of the largest value; NaNs are never chosen.
func argmax(values []float32) int {
	_, i := maxArg(values)
	return i
}

// maxArg returns the largest value and its first index (-inf and 0 when none is above -inf).
func maxArg(values []float32) (float32, int) {
	best, arg := float32(math.Inf(-1)), 0
	for i, v := range values {
		if v > best {
			best, arg = v, i
		}
	}
	return best, arg
}

// DeviceParams returns the settings that sample this step's token on the backend
// (gpukern.Backend.Sample: the same distribution as Sample), drawing its uniform variate
// from the sampler's stream; false when the step needs the logits on the host: logprobs,
// penalties, logit bias or an active min_tokens.
func (s *Sampler) DeviceParams(generated int) (gpukern.SampleParams, bool) {
	if s.p.Logprobs >= 0 || s.needsEdits(generated) {
		return gpukern.SampleParams{}, false
	}
	p := gpukern.SampleParams{Temperature: float32(s.temp), TopP: 1}
	if s.temp == 0 {
		return p, true
	}
	if s.p.TopP > 0 && s.p.TopP < 1 {
		p.TopP = float32(s.p.TopP)
	}
	if s.p.MinP > 0 {
		p.MinP = float32(s.p.MinP)
	}
	if s.p.TopK > 0 {
		p.TopK = int32(s.p.TopK)
	}
	p.U = float32(s.rng.Float64())
	return p, true
}
