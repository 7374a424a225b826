package tokenizer

import (
	"fmt"
	"math"
	"unicode"
	"unicode/utf8"

	"github.com/tiktoken-go/tokenizer/codec"
)

// GPT-2's vocabulary: 50256 mergeable tokens, whose ids are their merge
// ranks, and the end-of-text token.
const (
	gpt2Vocab     = 50257
	gpt2EndOfText = 50256
	endOfText     = "<|endoftext|>"
)

// gpt2 is GPT-2's byte-level BPE: text is cut into pieces by GPT-2's
// pattern, and each piece is merged from its bytes, lowest rank first.
type gpt2 struct {
	ranks map[string]int32 // the bytes of each mergeable token -> its id
	short map[uint64]int32 // the same for tokens of at most 7 bytes, by pack()
	pairs []int32          // rank of the two bytes a, b at a<<8|b, or noRank
	data  []byte           // the bytes of every token, in id order
	off   []uint32         // token id is data[off[id]:off[id+1]]; gpt2Vocab+1 entries
	ascii [utf8.RuneSelf]class
}

// class of a character in GPT-2's pattern.
type class uint8

const (
	other  class = iota // [^\s\p{L}\p{N}], and every byte that is not UTF-8
	letter              // \p{L}
	number              // \p{N}
	space               // \s: Unicode White_Space
)

func runeClass(r rune) class {
	switch {
	case unicode.IsLetter(r):
		return letter
	case unicode.IsNumber(r):
		return number
	case unicode.IsSpace(r): // White_Space, as \s of tiktoken and Python's regex
		return space
	}
	return other
}

// newGPT2 builds the tables from the vocabulary tiktoken-go embeds.
func newGPT2() (*gpt2, error) {
	c := codec.NewR50kBase()
	g := &gpt2{
		ranks: make(map[string]int32, gpt2EndOfText),
		short: make(map[uint64]int32, gpt2EndOfText),
		pairs: make([]int32, 1<<16),
		data:  make([]byte, 0, 330<<10),
		off:   make([]uint32, 0, gpt2Vocab+1),
	}
	id := make([]uint, 1)
	for i := range gpt2EndOfText {
		id[0] = uint(i)
		s, err := c.Decode(id)
		if err != nil || s == "" {
			return nil, fmt.Errorf("tokenizer: gpt2's vocabulary has no token %d: %v", i, err)
		}
		if _, dup := g.ranks[s]; dup {
			return nil, fmt.Errorf("tokenizer: gpt2's vocabulary has %q twice", s)
		}
		g.ranks[s] = int32(i)
		if len(s) <= 7 {
			g.short[pack([]byte(s))] = int32(i)
		}
		g.off = append(g.off, uint32(len(g.data)))
		g.data = append(g.data, s...)
	}
	g.off = append(g.off, uint32(len(g.data)))
	g.data = append(g.data, endOfText...)
	g.off = append(g.off, uint32(len(g.data)))
	for b := range 256 {
		if _, ok := g.ranks[string([]byte{byte(b)})]; !ok {
			return nil, fmt.Errorf("tokenizer: gpt2's vocabulary has no token for byte %#02x", b)
		}
	}
	for i := range g.pairs {
		g.pairs[i] = g.rank([]byte{byte(i >> 8), byte(i)})
	}
	for r := range rune(utf8.RuneSelf) {
		g.ascii[r] = runeClass(r)
	}
	return g, nil
}

func (g *gpt2) Name() string { return NameGPT2 }
func (g *gpt2) Vocab() int   { return gpt2Vocab }

func (g *gpt2) TokenBytes(id int32) int {
	if uint32(id) >= gpt2Vocab {
		return -1
	}
	return int(g.off[id+1] - g.off[id])
}

func (g *gpt2) Decode(ids []int32) ([]byte, error) {
	n := 0
	for i, id := range ids {
		b := g.TokenBytes(id)
		if b < 0 {
			return nil, rangeError(g, id, i)
		}
		n += b
	}
	out := make([]byte, 0, n)
	for _, id := range ids {
		out = append(out, g.data[g.off[id]:g.off[id+1]]...)
	}
	return out, nil
}

// charAt returns the class and the length of the character at text[i]. A
// byte that does not start a valid UTF-8 sequence is a character of its own,
// of class other.
func (g *gpt2) charAt(text []byte, i int) (class, int) {
	if c := text[i]; c < utf8.RuneSelf {
		return g.ascii[c], 1
	}
	r, n := utf8.DecodeRune(text[i:])
	if r == utf8.RuneError && n == 1 {
		return other, 1
	}
	return runeClass(r), n
}

// pieceEnd returns the end of the piece that starts at text[i]: the match of
// GPT-2's pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// at i, alternatives tried in order, each greedy.
func (g *gpt2) pieceEnd(text []byte, i int) int {
	if text[i] == '\'' && i+1 < len(text) {
		switch text[i+1] {
		case 's', 't', 'm', 'd':
			return i + 2
		case 'r', 'v':
			if i+2 < len(text) && text[i+2] == 'e' {
				return i + 3
			}
		case 'l':
			if i+2 < len(text) && text[i+2] == 'l' {
				return i + 3
			}
		}
	}
	cls, n := g.charAt(text, i)
	if text[i] == ' ' && i+1 < len(text) {
		// " ?" before a run of letters, numbers or others.
		if c2, n2 := g.charAt(text, i+1); c2 != space {
			cls, n = c2, 1+n2
		}
	}
	j := i + n
	if cls != space {
		for j < len(text) {
			c, m := g.charAt(text, j)
			if c != cls {
				break
			}
			j += m
		}
		return j
	}
	// Whitespace: \s+(?!\S) takes the run but for its last character when a
	// non-space follows (that character then starts the next piece, " word"
	// if it is a space); \s+ takes a lone whitespace character.
	last := i
	for j < len(text) {
		c, m := g.charAt(text, j)
		if c != space {
			if last > i {
				return last
			}
			return j
		}
		last = j
		j += m
	}
	return j
}

// Cut returns the first position p >= from where text may be cut: between
// two characters of different classes, the first not whitespace and not an
// apostrophe (which may begin a contraction). No piece of GPT-2's pattern
// spans such a place, and no piece looks behind its start.
func (g *gpt2) Cut(text []byte, from int) int {
	checkFrom(text, from)
	p := from
	for p < len(text) && p > 0 && !utf8.RuneStart(text[p]) {
		p++ // to the start of a character
	}
	if p == 0 || p >= len(text) {
		return p
	}
	prev := other
	if r, _ := utf8.DecodeLastRune(text[:p]); r != utf8.RuneError {
		prev = runeClass(r)
	}
	prevApos := text[p-1] == '\''
	for p < len(text) {
		c, n := g.charAt(text, p)
		if c != prev && prev != space && !prevApos {
			return p
		}
		prev, prevApos = c, text[p] == '\''
		p += n
	}
	return p
}

func (g *gpt2) Encode(text []byte) []int32 {
	ids := make([]int32, 0, len(text)/3+8)
	var sc scratch
	for i := 0; i < len(text); {
		j := g.pieceEnd(text, i)
		if id := g.rank(text[i:j]); id != noRank {
			ids = append(ids, id)
		} else {
			ids = g.merge(ids, text[i:j], &sc)
		}
		i = j
	}
	return ids
}

// heapMin is the piece length from which merge uses a heap: below it a scan
// for the lowest rank is faster; above it, a scan would cost O(n^2).
const heapMin = 128

const noRank = math.MaxInt32

// scratch is the reusable memory of merge within one Encode call.
type scratch struct {
	starts []int32
	ranks  []int32
	nodes  []node
	heap   mergeHeap
}

// pack returns a key for up to 7 bytes: the bytes, little-endian, and the
// length in the top byte.
func pack(b []byte) uint64 {
	k := uint64(len(b)) << 56
	for i, c := range b {
		k |= uint64(c) << (8 * i)
	}
	return k
}

// rank returns the id of the token b, or noRank if b is no token.
func (g *gpt2) rank(b []byte) int32 {
	var r int32
	var ok bool
	if len(b) <= 7 {
		r, ok = g.short[pack(b)]
	} else {
		r, ok = g.ranks[string(b)]
	}
	if !ok {
		return noRank
	}
	return r
}

// merge appends the ids of piece, which is at least two bytes and not itself
// a token: starting from its bytes, it merges the adjacent pair of parts
// whose concatenation is the token of lowest rank (the leftmost such pair on
// a tie) until no pair is a token.
func (g *gpt2) merge(dst []int32, piece []byte, sc *scratch) []int32 {
	if len(piece) >= heapMin {
		return g.mergeHeap(dst, piece, sc)
	}
	// Part k is piece[starts[k]:starts[k+1]]; ranks[k] is the rank of parts
	// k and k+1 merged.
	starts, ranks := sc.starts[:0], sc.ranks[:0]
	for i := 0; i <= len(piece); i++ {
		starts = append(starts, int32(i))
	}
	for i := 0; i+2 <= len(piece); i++ {
		ranks = append(ranks, g.pairs[int(piece[i])<<8|int(piece[i+1])])
	}
	for len(ranks) > 0 {
		best, k := int32(noRank), -1
		for i, r := range ranks {
			if r < best {
				best, k = r, i
			}
		}
		if k < 0 {
			break
		}
		starts = append(starts[:k+1], starts[k+2:]...)
		ranks = append(ranks[:k], ranks[k+1:]...)
		if k < len(ranks) {
			ranks[k] = g.rank(piece[starts[k]:starts[k+2]])
		}
		if k > 0 {
			ranks[k-1] = g.rank(piece[starts[k-1]:starts[k+1]])
		}
	}
	for k := 0; k+1 < len(starts); k++ {
		dst = append(dst, g.rank(piece[starts[k]:starts[k+1]]))
	}
	sc.starts, sc.ranks = starts, ranks
	return dst
}

// node is a part in mergeHeap's list: it starts at its index in the piece;
// rank is the rank of it merged with the next part, noRank if that is no
// token or the part was merged into the one before.
type node struct {
	prev, next int32 // -1 at the ends
	rank       int32
}

type candidate struct{ rank, at int32 }

// mergeHeap is a min-heap of candidates by (rank, at), so that the leftmost
// of equal ranks comes first.
type mergeHeap []candidate

func (g *gpt2) mergeHeap(dst []int32, piece []byte, sc *scratch) []int32 {
	n := int32(len(piece))
	nodes := sc.nodes[:0]
	for i := range n {
		nodes = append(nodes, node{prev: i - 1, next: i + 1, rank: noRank})
	}
	nodes[n-1].next = -1
	end := func(i int32) int32 { // where part i ends
		if nodes[i].next < 0 {
			return n
		}
		return nodes[i].next
	}
	pairRank := func(i int32) int32 { // rank of part i merged with the next
		j := nodes[i].next
		if j < 0 {
			return noRank
		}
		return g.rank(piece[i:end(j)])
	}
	h := sc.heap[:0]
	for i := range n - 1 {
		if r := g.pairs[int(piece[i])<<8|int(piece[i+1])]; r != noRank {
			nodes[i].rank = r
			h = append(h, candidate{r, i})
		}
	}
	h.init()
	for len(h) > 0 {
		c := h.pop()
		if nodes[c.at].rank != c.rank {
			continue // stale: a part's pair only grows, so its rank never recurs
		}
		i, j := c.at, nodes[c.at].next
		nodes[j].rank = noRank
		nodes[i].next = nodes[j].next
		if k := nodes[j].next; k >= 0 {
			nodes[k].prev = i
		}
		for _, b := range [2]int32{i, nodes[i].prev} {
			if b < 0 {
				continue
			}
			if nodes[b].rank = pairRank(b); nodes[b].rank != noRank {
				h.push(candidate{nodes[b].rank, b})
			}
		}
	}
	for i := int32(0); i >= 0; i = nodes[i].next {
		dst = append(dst, g.rank(piece[i:end(i)]))
	}
	sc.nodes, sc.heap = nodes, h
	return dst
}

func (h mergeHeap) less(a, b int) bool {
	return h[a].rank < h[b].rank || h[a].rank == h[b].rank && h[a].at < h[b].at
}

func (h mergeHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *mergeHeap) push(c candidate) {
	*h = append(*h, c)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *mergeHeap) pop() candidate {
	s := *h
	top := s[0]
	s[0] = s[len(s)-1]
	*h = s[:len(s)-1]
	h.down(0)
	return top
}

func (h mergeHeap) down(i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && h.less(c+1, c) {
			c++
		}
		if !h.less(c, i) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}
