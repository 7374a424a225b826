package shard

import "fmt"

// Cursor is a position in the stream of training windows: the next window is
// entry Pos of the order of epoch Epoch. The zero Cursor is the start. It
// goes into checkpoints as JSON ({"epoch":E,"pos":P}) and, with the same
// Options, restores the exact stream.
type Cursor struct {
	Epoch uint64 `json:"epoch"`
	Pos   uint64 `json:"pos"`
}

// CheckCursor reports a cursor that cannot come from this dataset (Pos past
// the end of an epoch), e.g. one read from a checkpoint of another corpus.
func (d *Dataset) CheckCursor(c Cursor) error {
	if c.Pos > uint64(len(d.train)) {
		return fmt.Errorf("cursor position %d, an epoch has %d windows: %w", c.Pos, len(d.train), ErrCursor)
	}
	return nil
}

// NextBatch returns the global batch that starts at c, the next G windows of
// the stream, and the cursor after it. An epoch is a permutation of the
// training windows seeded by (Options.Seed, epoch); the stream is the orders
// of epochs 0, 1, 2, ... one after another, so a batch that reaches the end
// of an epoch continues in the next epoch's order: every batch has exactly G
// windows and every epoch visits every training window exactly once (a G
// larger than NumTrain repeats windows within a batch). A cursor with Pos at
// or past the end of its epoch is carried into the following epochs (see
// CheckCursor). It panics if G < 1.
func (d *Dataset) NextBatch(c Cursor, G int) ([]int, Cursor) {
	return d.AppendBatch(make([]int, 0, max(G, 0)), c, G)
}

// AppendBatch is NextBatch appending to dst: with a dst of capacity G it
// allocates nothing (after the first call of an epoch, which computes the
// epoch's order into a reused buffer).
func (d *Dataset) AppendBatch(dst []int, c Cursor, G int) ([]int, Cursor) {
	if G < 1 {
		panic(fmt.Sprintf("shard: global batch of %d windows", G))
	}
	n := uint64(len(d.train))
	c.Epoch += c.Pos / n
	c.Pos %= n
	d.mu.Lock()
	defer d.mu.Unlock()
	for left := uint64(G); left > 0; {
		p := d.order(c.Epoch)
		take := min(left, n-c.Pos)
		for _, id := range p[c.Pos : c.Pos+take] {
			dst = append(dst, int(id))
		}
		left -= take
		c.Pos += take
		if c.Pos == n {
			c.Epoch, c.Pos = c.Epoch+1, 0
		}
	}
	return dst, c
}

// order returns the order of epoch e, from the cache of the last two epochs
// or computed into the slot used less recently. d.mu is held.
func (d *Dataset) order(e uint64) []int32 {
	for i := range d.cache {
		if c := &d.cache[i]; c.valid && c.epoch == e {
			d.last = i
			return c.ids
		}
	}
	slot := 1 - d.last
	c := &d.cache[slot]
	if c.ids == nil {
		c.ids = make([]int32, len(d.train))
	}
	copy(c.ids, d.train)
	r := newRNG(d.seed, domainOrder, e)
	r.shuffle(c.ids)
	c.epoch, c.valid = e, true
	d.last = slot
	return c.ids
}

// ShardRange returns the bounds [lo, hi) of rank's contiguous slice of a
// global batch of size windows split among n ranks: the first size%n ranks
// get one window more than the others. It panics unless 0 <= rank < n and
// size >= 0.
func ShardRange(size, rank, n int) (lo, hi int) {
	if n < 1 || rank < 0 || rank >= n || size < 0 {
		panic(fmt.Sprintf("shard: rank %d of %d ranks, batch of %d", rank, n, size))
	}
	q, r := size/n, size%n
	lo = rank*q + min(rank, r)
	hi = lo + q
	if rank < r {
		hi++
	}
	return lo, hi
}

// Shard returns rank's contiguous slice of batch split among n ranks (see
// ShardRange): a subslice of batch with its capacity cut to its length, not a
// copy. The split depends only on len(batch), rank and n, so re-splitting a
// global batch among fewer ranks after a failure covers the same windows.
func Shard(batch []int, rank, n int) []int {
	lo, hi := ShardRange(len(batch), rank, n)
	return batch[lo:hi:hi]
}
