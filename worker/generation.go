package worker

import (
	"context"
	"time"

	"github.com/lorafleet/lorafleet/pkg/tokenizer"
	"github.com/lorafleet/lorafleet/worker/engine"
	"github.com/lorafleet/lorafleet/worker/sample"
)

// genSpec is one generation, whichever API asked for it.
type genSpec struct {
	adapter   string // adapter ID; "" for the base model
	prompt    []int
	params    sample.Params
	maxTokens int
	stops     []string
}

// Finish reasons of a generation, with OpenAI's names; LoRAX renames them.
const (
	finishStop   = "stop"   // EOS or a stop token
	finishLength = "length" // max tokens or the context
	finishString = "stop_string"
)

// generation turns an engine stream into text: incremental detokenization, stop strings,
// metrics. It is used by one goroutine.
type generation struct {
	w      *Worker
	spec   *genSpec
	st     *engine.Stream
	cancel context.CancelFunc
	dec    *tokenizer.StreamDecoder
	stop   *sample.StopMatcher

	buf       []sample.Result
	generated int
	finish    string // set once done
	lastTok   time.Time
	closed    bool
}

// start submits the generation to the engine.
func (w *Worker) start(spec *genSpec) (*generation, error) {
	ctx, cancel := context.WithCancel(context.Background())
	st, err := w.loop.Submit(ctx, engine.Request{
		Prompt: spec.prompt, Adapter: spec.adapter, Sampler: sample.New(spec.params, w.eos), MaxTokens: spec.maxTokens,
	})
	if err != nil {
		cancel()
		return nil, err
	}
	return &generation{
		w: w, spec: spec, st: st, cancel: cancel,
		dec: w.tok.NewStreamDecoder(true), stop: sample.NewStopMatcher(spec.stops),
	}, nil
}

// next waits for more tokens (until ctx ends) and returns them with their text. done is set
// when the generation has finished; g.finish says why.
func (g *generation) next(ctx context.Context) (text string, toks []sample.Result, done bool, err error) {
	toks, fin, err := g.st.Recv(ctx, g.buf[:0])
	g.buf = toks
	if err != nil && len(toks) == 0 {
		return "", nil, false, err
	}
	now := time.Now()
	for i, r := range toks {
		g.observeToken(now)
		emit, stopped := g.stop.Push(g.dec.Add(r.Token))
		text += emit
		if stopped {
			g.generated += i + 1
			g.end(finishString)
			return text, toks[:i+1], true, nil
		}
	}
	g.generated += len(toks)
	if err != nil {
		return text, toks, false, err
	}
	if fin != "" {
		text += g.flush()
		g.end(string(fin))
		return text, toks, true, nil
	}
	return text, toks, false, nil
}

func (g *generation) observeToken(now time.Time) {
	if !g.lastTok.IsZero() {
		g.w.metrics.itl.Observe(now.Sub(g.lastTok).Seconds())
	}
	g.lastTok = now
}

// flush returns the text held back by the decoder and the stop matcher.
func (g *generation) flush() string {
	emit, stopped := g.stop.Push(g.dec.Flush())
	if stopped {
		return emit
	}
	return emit + g.stop.Flush()
}

// end records the finished generation once and frees its sequence.
func (g *generation) end(reason string) {
	if g.closed {
		return
	}
	g.closed, g.finish = true, reason
	g.cancel()
	g.w.metrics.finished(g.spec.adapter, len(g.spec.prompt), g.generated, metricReason(reason), g.st.Timing(), time.Now())
}

// abort ends a generation that did not finish (client gone, error): the engine frees it
// within a step.
func (g *generation) abort() { g.end("abort") }

func metricReason(r string) string {
	if r == finishString {
		return finishStop
	}
	return r
}

// openAIReason is the finish_reason OpenAI clients expect.
func openAIReason(r string) string { return metricReason(r) }

// collect runs a generation to its end, for non-streaming responses.
func (g *generation) collect(ctx context.Context) (text string, toks []sample.Result, err error) {
	defer g.abort()
	var all []sample.Result
	for {
		t, rs, done, err := g.next(ctx)
		text += t
		all = append(all, rs...)
		if err != nil {
			return text, all, err
		}
		if done {
			return text, all, nil
		}
	}
}
