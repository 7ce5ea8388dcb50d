package engine

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/internal/golden"
	"github.com/lorafleet/lorafleet/internal/testutil"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/model"
	"github.com/lorafleet/lorafleet/worker/sample"
)

// dirSource loads adapters from the golden set's directory with the real PEFT loader.
type dirSource struct {
	g     *golden.File
	base  peft.Base
	mu    sync.Mutex
	calls map[string]int
	delay time.Duration
}

func (d *dirSource) Get(ctx context.Context, id string) (*peft.Adapter, error) {
	d.mu.Lock()
	if d.calls == nil {
		d.calls = map[string]int{}
	}
	d.calls[id]++
	d.mu.Unlock()
	select {
	case <-time.After(d.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return peft.Load(d.g.AdapterDir(id), d.base, peft.Options{})
}

func startLoop(t *testing.T, f *fixture, cfg Config) (*Loop, *dirSource) {
	t.Helper()
	src := &dirSource{g: f.g, base: f.model.Config.PEFTBase()}
	ctx, cancel := context.WithCancel(context.Background())
	l := f.engine(t, cfg).Start(ctx, src)
	t.Cleanup(func() { cancel(); <-l.Done() })
	return l, src
}

func collect(t *testing.T, st *Stream) ([]int, FinishReason, error) {
	t.Helper()
	var out []int
	var buf []sample.Result
	for {
		toks, fin, err := st.Recv(context.Background(), buf[:0])
		for _, r := range toks {
			out = append(out, r.Token)
		}
		if err != nil || fin != "" {
			return out, fin, err
		}
	}
}

// Every golden case submitted at once, with too few KV blocks and adapter slots for all of
// them, still produces the reference greedy tokens: preemption by recompute, adapter
// eviction and reloading change nothing.
func TestLoopMatchesGoldenUnderPressure(t *testing.T) {
	for _, set := range golden.Sets {
		t.Run(set, func(t *testing.T) {
			f := loadFixture(t, set)
			// Room for the longest case and a little more: the cases together need far more.
			longest := 0
			for _, c := range f.g.Cases {
				longest = max(longest, len(c.PromptIDs)+len(c.Greedy))
			}
			l, _ := startLoop(t, f, Config{NumBlocks: longest/4 + 3, BlockSize: 4, Slots: 1, MaxBatchTokens: 32})
			var wg sync.WaitGroup
			for i, c := range f.g.Cases {
				wg.Go(func() {
					st, err := l.Submit(context.Background(), Request{Prompt: c.PromptIDs, Adapter: c.Adapter, Sampler: greedy(), MaxTokens: len(c.Greedy)})
					if err != nil {
						t.Errorf("case %d: %v", i, err)
						return
					}
					got, fin, err := collect(t, st)
					if err != nil || fin != FinishLength || !slices.Equal(got, c.Greedy) {
						t.Errorf("case %d (%q): got %v (%s, %v), want %v", i, c.Adapter, got, fin, err, c.Greedy)
					}
				})
			}
			wg.Wait()
			s := l.Stats()
			if s.Preemptions == 0 || s.Evictions == 0 {
				t.Errorf("the test did not exercise preemption and eviction: %+v", s)
			}
			testutil.Eventually(t, time.Second, "an idle loop", func() bool {
				s := l.Stats()
				return s.Running == 0 && s.Waiting == 0 && s.KVUsage == 0
			})
		})
	}
}

func TestLoopCancelFreesSequence(t *testing.T) {
	f := loadFixture(t, "tiny-llama")
	l, _ := startLoop(t, f, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	st, err := l.Submit(ctx, Request{Prompt: f.g.Cases[0].PromptIDs, Sampler: greedy(), MaxTokens: 400})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Recv(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	testutil.Eventually(t, time.Second, "the cancelled sequence to be freed", func() bool {
		s := l.Stats()
		return s.Running == 0 && s.KVUsage == 0
	})
	if _, _, err := collect(t, st); !errors.Is(err, context.Canceled) {
		t.Errorf("stream of a cancelled request ended with %v", err)
	}
}

func TestLoopOneLoadForConcurrentColdRequests(t *testing.T) {
	f := loadFixture(t, "tiny-llama")
	l, _ := startLoop(t, f, Config{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			st, err := l.Submit(context.Background(), Request{Prompt: f.g.Cases[0].PromptIDs, Adapter: "sql", Sampler: greedy(), MaxTokens: 4})
			if err != nil {
				t.Error(err)
				return
			}
			if _, _, err := collect(t, st); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if s := l.Stats(); s.Loads != 1 {
		t.Errorf("8 requests for one adapter uploaded it %d times", s.Loads)
	}
}

func TestLoopAdmissionBounds(t *testing.T) {
	f := loadFixture(t, "tiny-llama")
	l, _ := startLoop(t, f, Config{MaxWaiting: 2, MaxRunning: 1})
	p := f.g.Cases[0].PromptIDs
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 3 { // one runs, two wait
		if _, err := l.Submit(ctx, Request{Prompt: p, Sampler: greedy(), MaxTokens: 400}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			testutil.Eventually(t, time.Second, "one running", func() bool { return l.Stats().Running == 1 })
		}
	}
	if _, err := l.Submit(ctx, Request{Prompt: p, Sampler: greedy(), MaxTokens: 4}); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("fourth request: %v, want ErrOverloaded", err)
	}
	long := make([]int, f.model.Config.MaxPositions)
	if _, err := l.Submit(ctx, Request{Prompt: long, Sampler: greedy(), MaxTokens: 10000}); !errors.Is(err, ErrTooLong) {
		t.Fatalf("too long: %v", err)
	}
	l.Drain()
	if _, err := l.Submit(ctx, Request{Prompt: p, Sampler: greedy(), MaxTokens: 4}); !errors.Is(err, ErrDraining) {
		t.Fatalf("draining: %v", err)
	}
}

// heldUploads is the real model whose adapter uploads stay in flight until land is closed,
// as on a GPU whose copy is still running: the seam the CUDA backend's AdapterReady fills.
type heldUploads struct {
	*model.Model
	land  chan struct{}
	asked atomic.Int32 // AdapterReady answers "not yet"
}

func (h *heldUploads) AdapterReady(a *model.Adapter) bool {
	select {
	case <-h.land:
		return h.Model.AdapterReady(a)
	default:
		h.asked.Add(1)
		return false
	}
}

// While a request's adapter uploads, the loop keeps stepping everyone else; the request
// waits in the queue, then runs and produces the reference tokens once the upload lands.
func TestLoopRunsOthersWhileAnAdapterUploads(t *testing.T) {
	f := loadFixture(t, "tiny-llama")
	base := f.g.Cases[slices.IndexFunc(f.g.Cases, func(c golden.Case) bool { return c.Adapter == "" })]
	tuned := f.g.Cases[slices.IndexFunc(f.g.Cases, func(c golden.Case) bool { return c.Adapter != "" })]
	h := &heldUploads{Model: f.model, land: make(chan struct{})}
	e, err := NewWith(&f.model.Config, h, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	src := &dirSource{g: f.g, base: f.model.Config.PEFTBase()}
	l := e.Start(ctx, src)
	t.Cleanup(func() { cancel(); <-l.Done() })

	long, err := l.Submit(ctx, Request{Prompt: base.PromptIDs, Sampler: greedy(), MaxTokens: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := long.Recv(ctx, nil); err != nil {
		t.Fatal(err)
	}
	st, err := l.Submit(ctx, Request{Prompt: tuned.PromptIDs, Adapter: tuned.Adapter, Sampler: greedy(), MaxTokens: len(tuned.Greedy)})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the adapter to be uploading", func() bool { return l.Stats().Loads == 1 })
	before := l.Stats().Generated
	testutil.Eventually(t, 5*time.Second, "the other sequence to go on decoding", func() bool { return l.Stats().Generated >= before+20 })
	if s := l.Stats(); s.Running != 1 || s.Waiting != 1 || s.Uploading != 1 || h.asked.Load() == 0 {
		t.Fatalf("while the upload is in flight: %d running, %d waiting, %d uploading, %d readiness checks; want 1, 1, 1, some",
			s.Running, s.Waiting, s.Uploading, h.asked.Load())
	}
	early, cancelEarly := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelEarly()
	if toks, fin, err := st.Recv(early, nil); len(toks) > 0 || fin != "" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the request waiting for its upload produced %v (%q, %v)", toks, fin, err)
	}
	close(h.land)
	got, fin, err := collect(t, st)
	if err != nil || fin != FinishLength || !slices.Equal(got, tuned.Greedy) {
		t.Fatalf("after the upload landed: %v (%s, %v), want %v", got, fin, err, tuned.Greedy)
	}
	testutil.Eventually(t, time.Second, "no upload in flight", func() bool { return l.Stats().Uploading == 0 })
}
