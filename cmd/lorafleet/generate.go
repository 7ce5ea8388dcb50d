package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/lorafleet/lorafleet/pkg/tokenizer"
	"github.com/lorafleet/lorafleet/worker/engine"
	"github.com/lorafleet/lorafleet/worker/model"
	"github.com/lorafleet/lorafleet/worker/sample"
)

type generateFlags struct {
	model, adapter, prompt string
	maxTokens              int
	temperature            float64
	topP                   float64
	topK                   int
	seed                   int64
	stops                  []string
	chat, stats, ignoreEOS bool
}

func runGenerate(args []string, e env) error {
	fs := newFlags("generate", "--model DIR [--adapter DIR] --prompt TEXT [--max-tokens N] [--temperature T] [--seed S]", e)
	var g generateFlags
	fs.StringVar(&g.model, "model", "", "Hugging Face model directory")
	fs.StringVar(&g.adapter, "adapter", "", "PEFT LoRA adapter directory (optional)")
	fs.StringVar(&g.prompt, "prompt", "", "the prompt text")
	fs.IntVar(&g.maxTokens, "max-tokens", 64, "tokens to generate at most")
	fs.Float64Var(&g.temperature, "temperature", -1, "sampling temperature; 0 is greedy (default: generation_config.json, greedy unless do_sample)")
	fs.Float64Var(&g.topP, "top-p", 1, "nucleus sampling mass")
	fs.IntVar(&g.topK, "top-k", 0, "sample among the k most likely tokens (0: all)")
	fs.Int64Var(&g.seed, "seed", -1, "random seed for sampling (-1: random)")
	fs.Func("stop", "stop string (repeatable)", func(s string) error { g.stops = append(g.stops, s); return nil })
	fs.BoolVar(&g.chat, "chat", false, "wrap the prompt in the model's chat template as a user message")
	fs.BoolVar(&g.stats, "stats", false, "print token counts and tokens/s to stderr")
	fs.BoolVar(&g.ignoreEOS, "ignore-eos", false, "keep generating past end-of-sequence tokens (benchmarks)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "model", g.model); err != nil {
		return err
	}
	if err := required(fs, "prompt", g.prompt); err != nil {
		return err
	}
	return generate(g, e)
}

func generate(g generateFlags, e env) error {
	m, a, err := loadModel(g.model, g.adapter)
	if err != nil {
		return err
	}
	tok, err := tokenizer.Load(g.model)
	if err != nil {
		return err
	}
	gen, err := model.LoadGenerationConfig(g.model)
	if err != nil {
		return err
	}
	prompt, err := promptIDs(tok, g)
	if err != nil {
		return err
	}
	params, err := samplingParams(g, gen, m.Config.VocabSize)
	if err != nil {
		return err
	}
	eos := m.Config.EOSTokenIDs
	if gen.EOSTokenIDs != nil {
		eos = gen.EOSTokenIDs
	}
	eng, err := engine.New(m, engine.Config{})
	if err != nil {
		return err
	}
	out := &textSink{w: e.stdout, dec: tok.NewStreamDecoder(true), stop: sample.NewStopMatcher(g.stops)}
	seq := &engine.Sequence{Prompt: prompt, Adapter: a, Sampler: sample.New(params, eos), MaxTokens: g.maxTokens, OnToken: out.token}
	start := time.Now()
	if err := eng.Run(context.Background(), []*engine.Sequence{seq}); err != nil {
		return err
	}
	elapsed := time.Since(start)
	out.finish()
	if out.err != nil {
		return out.err
	}
	if g.stats {
		fmt.Fprintf(e.stderr, "prompt %d tokens, generated %d tokens in %v: %.1f tokens/s (finish: %s)\n",
			len(prompt), len(seq.Output), elapsed.Round(time.Millisecond), float64(len(seq.Output))/elapsed.Seconds(), seq.Finish)
	}
	return nil
}

func promptIDs(tok *tokenizer.Tokenizer, g generateFlags) ([]int, error) {
	if !g.chat {
		return tok.Encode(g.prompt, true), nil
	}
	text, err := tok.ApplyChatTemplate([]tokenizer.Message{{Role: "user", Content: g.prompt}}, true)
	if err != nil {
		return nil, err
	}
	return tok.Encode(text, false), nil // the template writes BOS itself
}

// samplingParams applies the flags over the model's generation defaults.
func samplingParams(g generateFlags, gen model.GenerationConfig, vocab int) (sample.Params, error) {
	p := sample.DefaultParams()
	p.Temperature = 0
	if gen.DoSample {
		p.Temperature = 1
		if gen.Temperature != nil {
			p.Temperature = *gen.Temperature
		}
		if gen.TopP != nil {
			p.TopP = *gen.TopP
		}
		if gen.TopK != nil {
			p.TopK = *gen.TopK
		}
	}
	if g.temperature >= 0 {
		p.Temperature = g.temperature
	}
	if g.topP != 1 {
		p.TopP = g.topP
	}
	if g.topK != 0 {
		p.TopK = g.topK
	}
	if g.seed != -1 {
		p.Seed = &g.seed
	}
	p.IgnoreEOS = g.ignoreEOS
	if err := p.Validate(vocab); err != nil {
		return p, err
	}
	if g.maxTokens <= 0 {
		return p, fmt.Errorf("--max-tokens must be positive, got %d", g.maxTokens)
	}
	return p, nil
}

// textSink detokenizes generated tokens as they come, holds back text that may be the start
// of a stop string, and writes the rest.
type textSink struct {
	w    io.Writer
	dec  *tokenizer.StreamDecoder
	stop *sample.StopMatcher
	done bool // a stop string was seen: nothing more is written
	err  error
}

func (s *textSink) token(id int) bool {
	s.push(s.dec.Add(id))
	return !s.done && s.err == nil
}

func (s *textSink) finish() {
	s.push(s.dec.Flush())
	if !s.done {
		s.write(s.stop.Flush())
	}
	s.write("\n")
}

func (s *textSink) push(text string) {
	if s.done {
		return
	}
	emit, stopped := s.stop.Push(text)
	s.write(emit)
	s.done = stopped
}

func (s *textSink) write(text string) {
	if text != "" && s.err == nil {
		_, s.err = io.WriteString(s.w, text)
	}
}
