package engine

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/lorafleet/lorafleet/worker/engine/sched"
)

// step runs one scheduled iteration: plan, apply the plan (preempt, evict, load, admit,
// reserve KV blocks), one forward pass, sampling, delivery.
func (l *Loop) step() error {
	l.fillState()
	sched.Schedule(&l.sched, &l.state, &l.plan)
	l.apply(time.Now())
	if len(l.work) == 0 {
		// Nothing runnable: every waiting request's adapter failed to load or is still
		// uploading. Wait for news rather than spin; an upload lands within milliseconds.
		wait := 10 * time.Millisecond
		if len(l.slots.uploading) > 0 {
			wait = 200 * time.Microsecond
		}
		select {
		case <-l.inbox.wake:
			l.inbox.put(nil, "") // leave the wake-up for run's next take
		case <-time.After(wait):
		}
		return nil
	}
	batch := l.e.batch(l.work)
	logits, err := l.e.fwd.Forward(batch, l.e.kv)
	if err != nil {
		return fmt.Errorf("engine: forward pass: %w", err)
	}
	l.e.finishStep(l.work, logits, batch.Sampled)
	l.deliver(time.Now())
	l.steps++
	return nil
}

func (l *Loop) fillState() {
	st := &l.state
	st.Running, st.Waiting = st.Running[:0], st.Waiting[:0]
	for _, s := range l.running {
		st.Running = append(st.Running, schedSeq(s))
	}
	for _, s := range l.waiting {
		st.Waiting = append(st.Waiting, schedSeq(s))
	}
	st.Resident = l.slots.lru
	st.Loading = l.slots.landed(st.Loading[:0])
	st.FreeBlocks = l.e.pool.FreeBlocks()
}

func schedSeq(s *Sequence) sched.Seq {
	return sched.Seq{
		ID: s.id, Adapter: s.adapterKey, Arrival: s.arrival,
		Len: len(s.Prompt) + len(s.Output), Computed: s.computed, Blocks: len(s.kv.Blocks),
	}
}

// apply carries out the plan and fills l.work with the step's chunks.
func (l *Loop) apply(now time.Time) {
	p := &l.plan
	for _, id := range p.Preempt {
		l.preempt(l.byID[id])
	}
	for _, key := range p.Evict {
		l.slots.evict(key)
	}
	for _, key := range p.Load {
		if err := l.slots.load(key); err != nil {
			l.failAdapter(key, fmt.Errorf("engine: loading adapter onto the device: %w", err))
		}
	}
	l.admit(p.Admit, now)
	l.work = l.work[:0]
	for _, c := range p.Chunks {
		s, ok := l.byID[c.ID]
		if !ok || !l.slots.ready(s.adapterKey) {
			continue // failed above, or waiting for its adapter's upload (admit)
		}
		if err := l.e.pool.Grow(&s.kv, s.computed+c.N); err != nil {
			l.endRunning(s, fmt.Errorf("engine: scheduler planned beyond the KV cache: %w", err))
			continue
		}
		s.Adapter = l.slots.dev[s.adapterKey]
		l.slots.touch(s.adapterKey)
		l.work = append(l.work, work{seq: s, start: s.computed, n: c.N})
	}
	// Rows of one adapter next to each other make fewer, longer LoRA segments.
	slices.SortStableFunc(l.work, func(a, b work) int { return cmp.Compare(a.seq.adapterKey, b.seq.adapterKey) })
}

func (l *Loop) preempt(s *Sequence) {
	l.e.pool.Release(&s.kv)
	s.computed = 0
	l.running = slices.DeleteFunc(l.running, func(r *Sequence) bool { return r == s })
	l.enqueue(s)
	l.preemptions++
	s.stream.countPreemption()
}

func (l *Loop) admit(ids []uint64, now time.Time) {
	if len(ids) == 0 {
		return
	}
	for _, id := range ids {
		s, ok := l.byID[id]
		if !ok || !l.slots.ready(s.adapterKey) {
			// Failed, or the plan loaded its adapter this step and the upload is still in
			// flight: it keeps its place in the queue while the others run.
			continue
		}
		s.admitNow = true
		if !s.admitted {
			s.admitted = true
			l.unreserve(len(s.Prompt))
			s.stream.markAdmitted(now)
		}
		l.running = append(l.running, s)
	}
	l.waiting = slices.DeleteFunc(l.waiting, func(s *Sequence) bool {
		was := s.admitNow
		s.admitNow = false
		return was
	})
}

// failAdapter ends the waiting sequences that need an adapter that could not be loaded.
func (l *Loop) failAdapter(key string, err error) {
	l.waiting = slices.DeleteFunc(l.waiting, func(s *Sequence) bool {
		if s.adapterKey != key {
			return false
		}
		l.end(s, "", err)
		return true
	})
}

func (l *Loop) endRunning(s *Sequence, err error) {
	l.running = slices.DeleteFunc(l.running, func(r *Sequence) bool { return r == s })
	l.end(s, "", err)
}

// deliver hands new tokens to the streams and retires finished sequences.
func (l *Loop) deliver(now time.Time) {
	for _, w := range l.work {
		s := w.seq
		s.stream.push(s.Samples[s.delivered:], now)
		l.generated += uint64(len(s.Samples) - s.delivered)
		s.delivered = len(s.Samples)
		if s.Finished {
			l.end(s, s.Finish, nil)
		}
	}
	l.running = slices.DeleteFunc(l.running, func(s *Sequence) bool { return s.Finished })
}
