package adapterstore

import (
	"container/list"

	"github.com/lorafleet/lorafleet/pkg/peft"
)

// lru is the host tier: parsed adapters bounded in bytes, least recently used out first.
// The Store's mutex guards it.
type lru struct {
	max, bytes int64
	order      *list.List // front = most recent; values are *entry
	byID       map[string]*list.Element
}

type entry struct {
	id    string
	a     *peft.Adapter
	bytes int64
}

func newLRU(max int64) *lru {
	return &lru{max: max, order: list.New(), byID: map[string]*list.Element{}}
}

func (c *lru) len() int { return len(c.byID) }

func (c *lru) get(id string) (*peft.Adapter, bool) {
	el, ok := c.byID[id]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*entry).a, true
}

// put adds an adapter, evicting the least recently used ones beyond the byte bound. An
// adapter larger than the whole bound is not kept.
func (c *lru) put(id string, a *peft.Adapter, bytes int64) {
	c.remove(id)
	if bytes > c.max {
		return
	}
	c.byID[id] = c.order.PushFront(&entry{id: id, a: a, bytes: bytes})
	c.bytes += bytes
	for c.bytes > c.max {
		c.remove(c.order.Back().Value.(*entry).id)
	}
}

func (c *lru) remove(id string) {
	el, ok := c.byID[id]
	if !ok {
		return
	}
	c.order.Remove(el)
	delete(c.byID, id)
	c.bytes -= el.Value.(*entry).bytes
}
