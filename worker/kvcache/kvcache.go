// Package kvcache keeps the bookkeeping of a paged KV cache: a pool of fixed-size blocks
// and, per sequence, the table of blocks that holds its tokens. The memory itself belongs to
// the backend (gpukern.KVCache); this package only hands out block numbers.
package kvcache

import (
	"errors"
	"fmt"
)

// ErrNoBlocks is returned when the pool cannot cover a request; the caller may preempt.
var ErrNoBlocks = errors.New("kvcache: out of blocks")

// Pool hands out blocks of BlockSize token slots. It is not safe for concurrent use: the
// engine's step loop owns it.
type Pool struct {
	blockSize int
	total     int
	free      []int32 // a stack: recently freed blocks are reused first
}

// NewPool returns a pool of numBlocks blocks of blockSize tokens.
func NewPool(numBlocks, blockSize int) (*Pool, error) {
	if numBlocks <= 0 || blockSize <= 0 {
		return nil, fmt.Errorf("kvcache: need positive block count and size, got %d and %d", numBlocks, blockSize)
	}
	p := &Pool{blockSize: blockSize, total: numBlocks, free: make([]int32, numBlocks)}
	for i := range p.free {
		p.free[i] = int32(numBlocks - 1 - i) // block 0 is handed out first
	}
	return p, nil
}

// Table is one sequence's blocks. The zero value is an empty table.
type Table struct {
	Blocks []int32
}

// BlockSize is the number of tokens per block.
func (p *Pool) BlockSize() int { return p.blockSize }

// FreeBlocks is the number of blocks not held by any table.
func (p *Pool) FreeBlocks() int { return len(p.free) }

// TotalBlocks is the pool's size.
func (p *Pool) TotalBlocks() int { return p.total }

// Usage is the fraction of blocks in use, in [0, 1].
func (p *Pool) Usage() float64 { return float64(p.total-len(p.free)) / float64(p.total) }

// BlocksFor is the number of blocks that hold tokens tokens.
func (p *Pool) BlocksFor(tokens int) int { return (tokens + p.blockSize - 1) / p.blockSize }

// Grow makes t hold at least tokens tokens. It takes all the blocks it needs or none.
func (p *Pool) Grow(t *Table, tokens int) error {
	need := p.BlocksFor(tokens) - len(t.Blocks)
	if need <= 0 {
		return nil
	}
	if need > len(p.free) {
		return fmt.Errorf("%w: need %d more, %d free", ErrNoBlocks, need, len(p.free))
	}
	n := len(p.free) - need
	for i := len(p.free) - 1; i >= n; i-- {
		t.Blocks = append(t.Blocks, p.free[i])
	}
	p.free = p.free[:n]
	return nil
}

// Release returns t's blocks to the pool and empties t; releasing an empty table is a no-op.
func (p *Pool) Release(t *Table) {
	for i := len(t.Blocks) - 1; i >= 0; i-- {
		p.free = append(p.free, t.Blocks[i])
	}
	t.Blocks = t.Blocks[:0]
}

// Slot is the cache slot of token position pos of t, which must be covered by its blocks.
func (p *Pool) Slot(t *Table, pos int) int32 {
	return t.Blocks[pos/p.blockSize]*int32(p.blockSize) + int32(pos%p.blockSize)
}
