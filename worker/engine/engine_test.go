package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/lorafleet/lorafleet/worker/kvcache"
	"github.com/lorafleet/lorafleet/worker/model"
	"github.com/lorafleet/lorafleet/worker/sample"
)

func TestCheckRefusesBadSequences(t *testing.T) {
	f := loadFixture(t, "tiny-llama")
	e := f.engine(t, Config{})
	long := make([]int, f.model.Config.MaxPositions+1)
	for name, c := range map[string]struct {
		s   *Sequence
		msg string
	}{
		"empty":      {&Sequence{}, "empty prompt"},
		"too long":   {&Sequence{Prompt: long}, "exceeds the model's context"},
		"bad token":  {&Sequence{Prompt: []int{0, 512}}, "outside the vocabulary"},
		"neg token":  {&Sequence{Prompt: []int{-1}}, "outside the vocabulary"},
		"max tokens": {&Sequence{Prompt: []int{0}, Sampler: greedy()}, "max tokens"},
	} {
		if err := e.Run(context.Background(), []*Sequence{c.s}); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: err = %v, want %q", name, err, c.msg)
		}
	}
}

func TestOutOfBlocksIsAnError(t *testing.T) {
	f := loadFixture(t, "tiny-llama")
	e := f.engine(t, Config{NumBlocks: 2, BlockSize: 4})
	s := &Sequence{Prompt: f.g.Cases[len(f.g.Cases)-1].PromptIDs, Sampler: greedy(), MaxTokens: 4}
	if err := e.Run(context.Background(), []*Sequence{s}); !errors.Is(err, kvcache.ErrNoBlocks) {
		t.Fatalf("err = %v, want ErrNoBlocks", err)
	}
}

func TestCancelReleasesBlocks(t *testing.T) {
	f := loadFixture(t, "tiny-llama")
	e := f.engine(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	seen := 0
	s := f.greedySeq(f.g.Cases[0])
	s.MaxTokens = 100
	s.OnToken = func(int) bool {
		if seen++; seen == 3 {
			cancel()
		}
		return true
	}
	if err := e.Run(ctx, []*Sequence{s}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if len(s.Output) != 3 || e.KVUsage() != 0 {
		t.Fatalf("after cancel: %d tokens, KV usage %v; want 3 and 0", len(s.Output), e.KVUsage())
	}
}

func TestOnTokenStopsSequence(t *testing.T) {
	f := loadFixture(t, "tiny-qwen2")
	c := f.g.Cases[0]
	s := f.greedySeq(c)
	s.OnToken = func(tok int) bool { return tok != c.Greedy[4] }
	run(t, f.engine(t, Config{}), s)
	if want := c.Greedy[:slices.Index(c.Greedy, c.Greedy[4])+1]; !slices.Equal(s.Output, want) || s.Finish != FinishStop {
		t.Fatalf("output %v finish %q, want %v stop", s.Output, s.Finish, want)
	}
}

func TestFinishReasons(t *testing.T) {
	f := loadFixture(t, "tiny-llama")
	eos := f.model.Config.EOSTokenIDs
	for _, c := range f.g.Cases {
		i := slices.IndexFunc(c.Greedy, func(tok int) bool { return slices.Contains(eos, tok) })
		p := sample.DefaultParams()
		p.Temperature = 0
		s := &Sequence{Prompt: c.PromptIDs, Adapter: f.adapters[c.Adapter], Sampler: sample.New(p, eos), MaxTokens: len(c.Greedy)}
		run(t, f.engine(t, Config{}), s)
		want, reason := c.Greedy, FinishLength
		if i >= 0 {
			want, reason = c.Greedy[:i+1], FinishStop
		}
		if !slices.Equal(s.Output, want) || s.Finish != reason {
			t.Errorf("%s: output %v finish %q, want %v %q", caseName(c), s.Output, s.Finish, want, reason)
		}
	}
}

// A step's work is ordered by adapter, sequences without one first, keeping their order
// otherwise, so that each adapter's rows form one LoRA segment.
func TestByAdapter(t *testing.T) {
	a, b := model.ShapeOnly("a", 8, 0), model.ShapeOnly("b", 8, 0)
	seqs := []*Sequence{{Adapter: b}, {Adapter: a, MaxTokens: 1}, {}, {Adapter: a, MaxTokens: 2}, {MaxTokens: 3}}
	slices.SortStableFunc(seqs, byAdapter)
	var got []string
	for _, s := range seqs {
		id := "-"
		if s.Adapter != nil {
			id = s.Adapter.ID
		}
		got = append(got, fmt.Sprintf("%s%d", id, s.MaxTokens))
	}
	if want := []string{"-0", "-3", "a1", "a2", "b0"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}
