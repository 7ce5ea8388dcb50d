package host

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

// Uploads runs adapter uploads one at a time, in the order they were started, on a
// goroutine of its own: putting tens of millions of values in bf16 into a staging buffer
// (copying them, or converting float32) takes milliseconds of host time, which must not
// hold up the steps of the goroutine that starts them. Uploads alternate between the
// staging buffers, so that one is filled while the previous one's transfer runs. Start,
// Last, Latest and Close belong to one goroutine.
type Uploads struct {
	buffers int
	jobs    chan *Upload
	done    chan struct{}
	last    map[int]*Upload // by slot: the latest upload started into it
	latest  *Upload
	started int
}

// Upload is one adapter's way into its slot.
type Upload struct {
	Slot   int
	Buffer int // the staging buffer it goes through
	// Prepare is the host time the run function spent before its transfer (set by it).
	Prepare time.Duration
	run     func(*Upload) error
	issued  chan struct{} // closed when run has returned
	err     error
}

// NewUploads starts the goroutine. It calls init once before the first upload (to bind the
// thread to a device context, say); if init fails, every upload fails with its error.
// queue is how many uploads may wait before Start blocks.
func NewUploads(buffers, queue int, init func() error) *Uploads {
	q := &Uploads{buffers: max(buffers, 1), jobs: make(chan *Upload, max(queue, 1)), done: make(chan struct{}), last: map[int]*Upload{}}
	go q.loop(init)
	return q
}

func (q *Uploads) loop(init func() error) {
	defer close(q.done)
	err := init()
	for u := range q.jobs {
		if u.err = err; err == nil {
			u.err = u.run(u)
		}
		close(u.issued)
	}
}

// Start queues an upload into slot; run does it on the uploads' goroutine and may set
// u.Prepare.
func (q *Uploads) Start(slot int, run func(u *Upload) error) *Upload {
	u := &Upload{Slot: slot, Buffer: q.started % q.buffers, run: run, issued: make(chan struct{})}
	q.started++
	q.last[slot], q.latest = u, u
	q.jobs <- u
	return u
}

// Last is the latest upload started into slot, or nil.
func (q *Uploads) Last(slot int) *Upload { return q.last[slot] }

// Latest is the latest upload started, or nil.
func (q *Uploads) Latest() *Upload { return q.latest }

// Close runs the uploads still queued and stops the goroutine.
func (q *Uploads) Close() {
	close(q.jobs)
	<-q.done
}

// Done reports whether the upload's run function has returned.
func (u *Upload) Done() bool {
	select {
	case <-u.issued:
		return true
	default:
		return false
	}
}

// Wait waits for the run function to return and returns its error.
func (u *Upload) Wait() error {
	<-u.issued
	return u.err
}

// ToBF16 puts each data[i] in bf16 into dst at element offset offs[i] (converting float32,
// copying bf16), on workers goroutines that take the tensors in turn: a full-size adapter
// has hundreds, tens of millions of values together.
func ToBF16(dst []uint16, data []gpukern.HostTensor, offs []int, workers int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(data); i = int(next.Add(1) - 1) {
				d := data[i]
				out := dst[offs[i] : offs[i]+d.Len()]
				if d.BF16 != nil {
					copy(out, d.BF16)
					continue
				}
				for j, x := range d.F32 {
					out[j] = safetensors.Float32ToBF16(x)
				}
			}
		})
	}
	wg.Wait()
}
