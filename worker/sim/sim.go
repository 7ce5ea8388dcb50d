package sim

import (
	"fmt"
	"slices"
	"time"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/model"
)

// Backend stands in for the model in the engine (engine.Forwarder): each call takes the
// profile's modeled time, multiplied by TimeScale, and computes nothing.
type Backend struct {
	prof  *Profile
	mc    *model.Config
	scale float64
	sleep func(time.Duration) // time.Sleep; tests record instead
	now   func() time.Time    // time.Now; tests set the clock
	// landing is when each adapter whose modeled upload is still in flight lands.
	landing map[*model.Adapter]time.Time
}

// New returns a backend for a model of shape mc (the served model's vocabulary, context and
// end-of-sequence tokens) costed by prof. timeScale > 1 slows the modeled GPU down, so
// that many simulated workers fit on one CPU machine; 1 is real time.
func New(prof *Profile, mc *model.Config, timeScale float64) (*Backend, error) {
	if !(timeScale > 0 && timeScale <= 1e6) {
		return nil, fmt.Errorf("sim: time scale must be in (0, 1e6], got %v", timeScale)
	}
	if mc.VocabSize < 2 {
		return nil, fmt.Errorf("sim: a vocabulary of %d tokens is too small", mc.VocabSize)
	}
	return &Backend{prof: prof, mc: mc, scale: timeScale, sleep: time.Sleep, now: time.Now, landing: map[*model.Adapter]time.Time{}}, nil
}

// Forward waits the step's modeled time and returns logits that make every sampler pick
// the token after the row's own (skipping end-of-sequence tokens), so that generation runs
// until its length limit.
func (s *Backend) Forward(b *model.Batch, _ *gpukern.KVCache) ([]float32, error) {
	start := time.Now()
	vocab := s.mc.VocabSize
	logits := make([]float32, len(b.LogitRows)*vocab)
	for i, r := range b.LogitRows {
		if r < 0 || int(r) >= len(b.Tokens) {
			return nil, fmt.Errorf("sim: logit row %d outside the batch", r)
		}
		logits[i*vocab+s.next(int(b.Tokens[r]))] = 30 // e^30 dwarfs the other logits' sum
	}
	b.Sampled = b.Sampled[:0]
	for _, r := range b.SampleRows { // what sampling those logits on the device would give
		if r < 0 || int(r) >= len(b.Tokens) {
			return nil, fmt.Errorf("sim: sample row %d outside the batch", r)
		}
		b.Sampled = append(b.Sampled, int32(s.next(int(b.Tokens[r]))))
	}
	s.wait(s.prof.StepTime(b), start)
	return logits, nil
}

func (s *Backend) next(tok int) int {
	vocab := s.mc.VocabSize
	t := (tok%vocab + vocab + 1) % vocab
	for range vocab {
		if !slices.Contains(s.mc.EOSTokenIDs, t) {
			break
		}
		t = (t + 1) % vocab
	}
	return t
}

// wait sleeps until the scaled modeled time d has passed since start.
func (s *Backend) wait(d time.Duration, start time.Time) {
	if rest := time.Duration(float64(d)*s.scale) - time.Since(start); rest > 0 {
		s.sleep(rest)
	}
}

// NewKVCache returns a cache with the given geometry and no memory: nothing is stored.
func (s *Backend) NewKVCache(numBlocks, blockSize int) *gpukern.KVCache {
	return &gpukern.KVCache{NumBlocks: numBlocks, BlockSize: blockSize}
}

// LoadAdapter starts the modeled upload of the adapter's full-size weights, as the GPU
// backend does, and returns a device copy that records only their rank and size.
// AdapterReady is false until the scaled upload time has passed.
func (s *Backend) LoadAdapter(key string, pa *peft.Adapter) (*model.Adapter, error) {
	n := s.prof.AdapterBytes(pa)
	a := model.ShapeOnly(key, pa.MaxRank(), n)
	s.landing[a] = s.now().Add(time.Duration(float64(s.prof.LoadTime("device", n)) * s.scale))
	return a, nil
}

// AdapterReady reports whether a's modeled upload has landed.
func (s *Backend) AdapterReady(a *model.Adapter) bool {
	t, ok := s.landing[a]
	if ok && !s.now().Before(t) {
		delete(s.landing, a)
		ok = false
	}
	return !ok
}

// FreeAdapter forgets an upload still in flight.
func (s *Backend) FreeAdapter(a *model.Adapter) { delete(s.landing, a) }

// StoreDelay is the adapter store's Delay hook: the modeled, scaled time to load a
// full-size adapter from disk or the hub into host memory.
func (s *Backend) StoreDelay(tier string, pa *peft.Adapter) time.Duration {
	return time.Duration(float64(s.prof.LoadTime(tier, s.prof.AdapterBytes(pa))) * s.scale)
}
