package host

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

// Uploads run one at a time in start order, alternate between the staging buffers, and the
// caller sees each one's state without waiting.
func TestUploadsRunInOrderThroughAlternatingBuffers(t *testing.T) {
	var mu sync.Mutex
	var order, buffers []int
	running := 0
	gate := make(chan struct{})
	q := NewUploads(2, 8, func() error { return nil })
	var ups []*Upload
	for slot := range 5 {
		ups = append(ups, q.Start(slot, func(u *Upload) error {
			mu.Lock()
			running++
			if running > 1 {
				t.Error("two uploads ran at once")
			}
			mu.Unlock()
			if u.Slot == 0 {
				<-gate // hold the first: the others must wait behind it
			}
			mu.Lock()
			order, buffers = append(order, u.Slot), append(buffers, u.Buffer)
			running--
			mu.Unlock()
			u.Prepare = time.Duration(u.Slot)
			return nil
		}))
	}
	time.Sleep(10 * time.Millisecond)
	for _, u := range ups {
		if u.Done() {
			t.Fatalf("upload into slot %d is done while the first is held", u.Slot)
		}
	}
	close(gate)
	for _, u := range ups {
		if err := u.Wait(); err != nil || !u.Done() || u.Prepare != time.Duration(u.Slot) {
			t.Fatalf("slot %d: %v, done %v, prepare %v", u.Slot, err, u.Done(), u.Prepare)
		}
	}
	q.Close()
	if !slices.Equal(order, []int{0, 1, 2, 3, 4}) || !slices.Equal(buffers, []int{0, 1, 0, 1, 0}) {
		t.Fatalf("ran slots %v through buffers %v, want 0..4 through 0,1,0,1,0", order, buffers)
	}
}

// A slot reused before its first upload ran is known by its latest upload, whose error is
// its own.
func TestUploadsLastOfASlot(t *testing.T) {
	q := NewUploads(2, 4, func() error { return nil })
	defer q.Close()
	if q.Last(3) != nil || q.Latest() != nil {
		t.Fatal("uploads before any started")
	}
	boom := errors.New("boom")
	first := q.Start(3, func(*Upload) error { return boom })
	second := q.Start(3, func(*Upload) error { return nil })
	other := q.Start(4, func(*Upload) error { return nil })
	if q.Last(3) != second || q.Last(4) != other || q.Latest() != other {
		t.Fatal("Last or Latest is not the upload started last")
	}
	if err := first.Wait(); !errors.Is(err, boom) {
		t.Fatalf("first: %v", err)
	}
	if err := second.Wait(); err != nil {
		t.Fatalf("second: %v", err)
	}
}

// If the goroutine cannot be set up, every upload fails with that error and none runs;
// Close runs what is still queued.
func TestUploadsInitFailureAndClose(t *testing.T) {
	bad := errors.New("no context")
	q := NewUploads(1, 4, func() error { return bad })
	ran := false
	u := q.Start(0, func(*Upload) error { ran = true; return nil })
	q.Close()
	if !u.Done() || !errors.Is(u.Wait(), bad) || ran {
		t.Fatalf("done %v, err %v, ran %v", u.Done(), u.Wait(), ran)
	}
	q = NewUploads(1, 4, func() error { return nil })
	var n int
	for range 3 {
		q.Start(0, func(*Upload) error { time.Sleep(time.Millisecond); n++; return nil })
	}
	q.Close()
	if n != 3 {
		t.Fatalf("Close ran %d of 3 queued uploads", n)
	}
}

// ToBF16 converts every float32 tensor and copies every bf16 one to its offset, whatever
// the number of workers, and touches nothing between the tensors.
func TestToBF16(t *testing.T) {
	f32 := [][]float32{{1, -2.5, 3e-3}, {}, {65504, 1.0 / 3}, {-1e30, 7}}
	data := []gpukern.HostTensor{{F32: f32[0]}, {F32: f32[1]}, {BF16: []uint16{0x3f80, 0xc020}}, {F32: f32[3]}}
	offs := []int{0, 4, 4, 8}
	for _, workers := range []int{0, 1, 3, 16} {
		dst := make([]uint16, 11)
		for i := range dst {
			dst[i] = 0xdead
		}
		ToBF16(dst, data, offs, workers)
		want := make([]uint16, 11)
		for i := range want {
			want[i] = 0xdead
		}
		for i, d := range f32 {
			for j, x := range d {
				want[offs[i]+j] = safetensors.Float32ToBF16(x)
			}
		}
		want[4], want[5] = 0x3f80, 0xc020 // tensor 2, copied as it is
		if !slices.Equal(dst, want) {
			t.Errorf("%d workers: %x, want %x", workers, dst, want)
		}
	}
}
