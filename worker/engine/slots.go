package engine

import (
	"fmt"
	"slices"

	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/model"
)

// slots is the device tier of the adapter cache: the adapters uploaded to the backend, in
// least-recently-used order. The scheduler decides what to load and evict; slots does it.
//
// An adapter ID can be unloaded and loaded again with different weights while sequences of
// the old version still run, so the scheduler sees keys ("id#generation") rather than IDs; a
// new generation starts after each unload.
type slots struct {
	fwd  Forwarder
	lru  []string                  // resident keys, least recently used first
	dev  map[string]*model.Adapter // resident key → device copy
	host map[string]*peft.Adapter  // key → host copy, while referenced or resident
	cur  map[string]string         // adapter ID → its current key
	refs map[string]int            // live sequences per key
	ids  map[string]string         // key → adapter ID
	gone map[string]struct{}       // keys whose ID was unloaded: evict once unreferenced
	gen  uint64
	// uploading holds the resident keys whose upload has not finished: nothing runs with
	// them until it has, so that the steps of everyone else do not wait for it.
	uploading map[string]bool

	loads, evictions uint64 // counters for Stats
	deviceBytes      int64
	residents        []string // adapter IDs on the device, rebuilt on load and evict for Stats
}

func newSlots(f Forwarder) *slots {
	return &slots{
		fwd: f, dev: map[string]*model.Adapter{}, host: map[string]*peft.Adapter{},
		cur: map[string]string{}, refs: map[string]int{}, ids: map[string]string{},
		gone: map[string]struct{}{}, uploading: map[string]bool{},
	}
}

// ref returns the current key of an adapter and counts one more sequence using it; pa is
// its host copy, uploaded when the key is first loaded.
func (s *slots) ref(id string, pa *peft.Adapter) string {
	key, ok := s.cur[id]
	if !ok {
		s.gen++
		key = fmt.Sprintf("%s#%d", id, s.gen)
		s.cur[id], s.host[key], s.ids[key] = key, pa, id
	}
	s.refs[key]++
	return key
}

// unref counts one sequence less; an unreferenced key that is not resident is forgotten, and
// one whose ID was unloaded is evicted.
func (s *slots) unref(key string) {
	if key == "" {
		return
	}
	if s.refs[key]--; s.refs[key] > 0 {
		return
	}
	delete(s.refs, key)
	if _, gone := s.gone[key]; gone {
		s.evict(key)
	}
	if _, resident := s.dev[key]; !resident {
		s.forget(key)
	}
}

func (s *slots) forget(key string) {
	if s.cur[s.ids[key]] == key {
		delete(s.cur, s.ids[key])
	}
	delete(s.host, key)
	delete(s.ids, key)
	delete(s.gone, key)
}

// unload drops every version of id from the device as soon as no sequence uses it; later
// requests for id get a fresh key.
func (s *slots) unload(id string) {
	for key, kid := range s.ids {
		if kid != id {
			continue
		}
		delete(s.cur, id)
		if s.refs[key] == 0 {
			s.evict(key)
			s.forget(key)
			continue
		}
		s.gone[key] = struct{}{}
	}
}

func (s *slots) load(key string) error {
	if _, ok := s.dev[key]; ok {
		return nil
	}
	pa, ok := s.host[key]
	if !ok {
		return fmt.Errorf("engine: adapter %s has no host copy", key)
	}
	a, err := s.fwd.LoadAdapter(key, pa)
	if err != nil {
		return err
	}
	s.dev[key] = a
	if !s.fwd.AdapterReady(a) {
		s.uploading[key] = true
	}
	s.lru = append(s.lru, key)
	s.residents = s.residentIDs()
	s.loads++
	s.deviceBytes += a.Bytes()
	return nil
}

func (s *slots) evict(key string) {
	a, ok := s.dev[key]
	if !ok {
		return
	}
	s.deviceBytes -= a.Bytes()
	s.fwd.FreeAdapter(a)
	delete(s.dev, key)
	delete(s.uploading, key)
	s.lru = slices.DeleteFunc(s.lru, func(k string) bool { return k == key })
	s.residents = s.residentIDs()
	s.evictions++
	if s.refs[key] == 0 {
		s.forget(key)
	}
}

// residentIDs lists the adapter IDs on the device. It makes a new slice each time: Stats
// snapshots share it with other goroutines.
func (s *slots) residentIDs() []string {
	ids := make([]string, 0, len(s.lru))
	for _, key := range s.lru {
		if id := s.ids[key]; !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// landed forgets the uploads that have finished and appends the keys still uploading to
// dst.
func (s *slots) landed(dst []string) []string {
	for key := range s.uploading {
		if s.fwd.AdapterReady(s.dev[key]) {
			delete(s.uploading, key)
			continue
		}
		dst = append(dst, key)
	}
	return dst
}

// ready reports whether a step can use key's device copy without waiting for its upload;
// "" (the base model) always.
func (s *slots) ready(key string) bool { return !s.uploading[key] }

// touch marks key as used by the current step.
func (s *slots) touch(key string) {
	i := slices.Index(s.lru, key)
	if i < 0 || i == len(s.lru)-1 {
		return
	}
	copy(s.lru[i:], s.lru[i+1:])
	s.lru[len(s.lru)-1] = key
}
