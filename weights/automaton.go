package weights

// automaton.go finds every phrase of a list in one pass over normalised
// text: an Aho-Corasick automaton over bytes.
//
// The petar-dambovaliev/aho-corasick package was measured first: for
// 10,000 phrases its DFA takes 89 MiB and scans about 95 MB/s before any
// normalisation or boundary checks, its iterator allocates per match, and
// its whole-word option is ASCII-only. So the automaton is our own, laid
// out for the common case:
//
//   - Bytes are mapped to classes: one per byte value that occurs in some
//     phrase, and two for all the others (ASCII word bytes, and the rest).
//
//   - Word starts are built in. A phrase that begins with a word rune can
//     only match where the rune before it is not one, so in the middle of
//     an ASCII word no such phrase can begin. There are two root states:
//     root (the text so far ends in a byte that is not an ASCII letter,
//     digit or '_', so a phrase may begin next) and inWord (it ends in
//     one: only a phrase beginning with a non-word character may). Failure
//     links lead only to suffixes that could begin where they do. Inside a
//     word that begins no phrase the automaton sits in inWord, which is
//     quick, and it never reports "free" inside "carefree". The rule is
//     conservative for non-ASCII text (any non-ASCII byte lets a phrase
//     begin); the exact check is made on each match found.
//
//   - Some states get a dense row of complete transitions, failures
//     already followed: the shallow ones, where scanning spends most of its
//     time, and those with many edges. The others keep a short list of
//     their goto edges and fall back along failure links, which always
//     lead to a shallower state and so end at a root if nothing else.
//
//   - A dense state's id is its row's offset, so that a transition is one
//     load, dense[id+class]; sparse state ids follow from denseEnd on.
//
//   - A transition to a state where some phrase ends has outBit set, so the
//     scan loop learns it without a second memory load; endWordBit says
//     that those phrases all end in a word rune, so a match followed by an
//     ASCII letter (a phrase ending inside a longer word) is dismissed
//     without looking further.

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// denseBudget bounds the dense rows, in transitions (4 bytes each): 2 Mi
// transitions is 8 MiB. Rows are laid out shallowest first, so the ones
// text visits most stay together in cache. The figures here were tuned on
// BenchmarkMatch100KB10k and 50k: a 10,000-entry list takes about 6 MiB,
// and a quarter less throughput with a quarter of the budget.
const denseBudget = 2 << 20

// maxDenseDepth is the deepest level that gets dense rows for being
// shallow. Some bytes into a phrase, text rarely follows the trie further
// and a state's one or two goto edges are quick to scan.
const maxDenseDepth = 6

// minDenseFanout is the number of goto edges from which a state gets a
// dense row at any depth.
const minDenseFanout = 4

const (
	outBit     = -1 << 31 // transition target ends a phrase
	endWordBit = 1 << 30  // ... and the phrases it ends need a boundary after
	idMask     = endWordBit - 1
)

// The two roots, by number; theirs are the first two dense rows, so their
// ids are 0 and stride.
const (
	root   = 0
	inWord = 1
)

type automaton struct {
	class    [256]uint8 // byte -> class
	stride   int32      // dense row length: the number of classes
	nDense   int32      // states numbered [0, nDense) have dense rows
	denseEnd int32      // nDense*stride: first sparse state id
	dense    []int32    // the rows, targets as marked ids
	sparse   []sparseState
	edges    []edge
	outs     []output  // by state number
	pats     []patInfo // by pattern
}

// sparseState is a state without a dense row. Most have a single goto
// edge, kept inline so that a step costs one memory access.
type sparseState struct {
	next0 int32 // the first goto edge: target (marked id)
	fail  int32 // id of the failure state
	first int32 // the other goto edges are edges[first : first+n-1]
	n     uint16
	cls0  uint8 // the first goto edge: class
}

type edge struct {
	next int32 // marked id
	cls  uint8
}

// output says which pattern ends at a state (-1 if none) and the number of
// the next state down its failure chain where one does (0 if none).
type output struct {
	term int32
	link int32
}

type patInfo struct {
	len   int32
	flags uint8 // patWordStart|patWordEnd
}

// Pattern flags, for the boundary check.
const (
	patWordStart = 1 << iota // first rune is a word rune: needs a non-word rune before
	patWordEnd               // last rune is a word rune: needs a non-word rune after
	patMarkEnd               // last rune is a letter but no word rune (Han, Thai): needs no combining mark after
)

// Classes of the bytes in no pattern.
const (
	classOther     = 0 // not an ASCII word byte
	classOtherWord = 1 // an ASCII word byte
)

// newAutomaton compiles patterns, which must be distinct and non-empty.
// Pattern i is reported as i.
func newAutomaton(patterns []string) *automaton {
	a := &automaton{pats: make([]patInfo, len(patterns))}
	var used [256]bool
	for i, p := range patterns {
		for j := 0; j < len(p); j++ {
			used[p[j]] = true
		}
		a.pats[i] = patInfo{len: int32(len(p)), flags: boundaryFlags(p)}
	}
	// Phrases are normalised, so valid UTF-8 without upper-case ASCII or
	// control white space: far fewer than 254 byte values occur, and a
	// class fits in a byte.
	var word [256]bool // by class: is it ASCII word bytes
	word[classOtherWord] = true
	n := 2
	for c, u := range used {
		switch {
		case u:
			a.class[c] = uint8(n)
			word[n] = asciiWord[c]
			n++
		case asciiWord[c]:
			a.class[c] = classOtherWord
		default:
			a.class[c] = classOther
		}
	}
	a.stride = int32(n)
	b := newBuilder(a, buildTrie(patterns), word[:n])
	b.link()
	b.encode()
	return a
}

// boundaryFlags returns the pat* flags of a normalised pattern.
func boundaryFlags(p string) uint8 {
	var f uint8
	if r, _ := utf8.DecodeRuneInString(p); isWord(r) {
		f |= patWordStart
	}
	// The last character is its base letter with the marks after it (a
	// Thai consonant and its vowel sign): a phrase ending in a Thai
	// cluster needs no boundary after it but a non-mark, as one ending in
	// a Thai consonant.
	last := p
	for {
		r, n := utf8.DecodeLastRuneInString(last)
		if n == 0 || !unicode.IsMark(r) || n == len(last) {
			break
		}
		last = last[:len(last)-n]
	}
	if r, _ := utf8.DecodeLastRuneInString(last); isWord(r) {
		f |= patWordEnd
	} else if unicode.IsLetter(r) {
		f |= patMarkEnd
	}
	return f
}

// trie is the goto graph as first built, in depth-first order.
type trie struct {
	parent []int32
	label  []byte
	depth  []int32
	term   []int32
}

// buildTrie inserts the patterns in sorted order, so that the child a
// pattern might share with the previous one is always the last child made:
// no lookups at all.
func buildTrie(patterns []string) *trie {
	order := make([]int32, len(patterns))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(x, y int32) int { return strings.Compare(patterns[x], patterns[y]) })

	t := &trie{parent: []int32{-1}, label: []byte{0}, depth: []int32{0}, term: []int32{-1}}
	path := []int32{0} // path[d]: node at depth d on the previous pattern
	prev := ""
	for _, id := range order {
		p := patterns[id]
		lcp := 0
		for lcp < len(p) && lcp < len(prev) && p[lcp] == prev[lcp] {
			lcp++
		}
		path = path[:lcp+1]
		for d := lcp; d < len(p); d++ {
			t.parent = append(t.parent, path[d])
			t.label = append(t.label, p[d])
			t.depth = append(t.depth, int32(d+1))
			t.term = append(t.term, -1)
			path = append(path, int32(len(t.parent)-1))
		}
		t.term[path[len(p)]] = id
		prev = p
	}
	return t
}

// builder holds the automaton while it is linked, with states numbered in
// breadth-first order (root, then inWord, then the trie's other nodes)
// rather than by id.
type builder struct {
	a     *automaton
	word  []bool  // by class: ASCII word bytes
	start []int32 // goto edges of state k: [start[k], start[k+1])
	cls   []uint8
	next  []int32
	fail  []int32
	row   []int32 // dense row of state k, or -1
	rows  []int32 // the dense rows, targets as state numbers
	outs  []output
	dfs   []int32 // the states in depth-first order
	final []int32 // state k's number in the automaton
}

// newBuilder lays the trie out in breadth-first order and chooses which
// states get dense rows.
func newBuilder(a *automaton, t *trie, word []bool) *builder {
	nt := len(t.parent)
	// Children of each node, in label order (creation order is label order).
	cstart := make([]int32, nt+1)
	for v := 1; v < nt; v++ {
		cstart[t.parent[v]+1]++
	}
	for v := range nt {
		cstart[v+1] += cstart[v]
	}
	children := make([]int32, nt)
	fill := slices.Clone(cstart[:nt])
	for v := 1; v < nt; v++ {
		p := t.parent[v]
		children[fill[p]] = int32(v)
		fill[p]++
	}

	// Breadth-first order, with a slot after the root for inWord, which is
	// no trie node.
	const none = -1
	bfs := make([]int32, 2, nt+1)
	bfs[0], bfs[1] = 0, none
	index := make([]int32, nt) // trie node -> state number
	for i := 0; i < len(bfs); i++ {
		if v := bfs[i]; v != none {
			index[v] = int32(i)
			bfs = append(bfs, children[cstart[v]:cstart[v+1]]...)
		}
	}
	n := len(bfs)

	b := &builder{
		a:     a,
		word:  word,
		start: make([]int32, n+1),
		cls:   make([]uint8, 0, nt-1),
		next:  make([]int32, 0, nt-1),
		outs:  make([]output, n),
		row:   make([]int32, n),
	}
	for k, v := range bfs {
		b.start[k] = int32(len(b.cls))
		b.outs[k].term = -1
		if v == none {
			continue
		}
		b.outs[k].term = t.term[v]
		for _, c := range children[cstart[v]:cstart[v+1]] {
			b.cls = append(b.cls, a.class[t.label[c]])
			b.next = append(b.next, index[c])
		}
	}
	b.start[n] = int32(len(b.cls))
	// The trie's nodes are in depth-first order already.
	b.dfs = make([]int32, 0, n)
	b.dfs = append(b.dfs, root, inWord)
	for v := 1; v < nt; v++ {
		b.dfs = append(b.dfs, index[v])
	}

	// Dense rows: both roots; states with many edges, where a list would
	// be slow to search (after a common word and a space, say); then the
	// shallow states, while the budget lasts.
	budget := max(2, int32(denseBudget)/a.stride)
	for k := range b.row {
		b.row[k] = -1
	}
	rows := int32(0)
	take := func(k int) {
		if b.row[k] < 0 && rows < budget {
			b.row[k] = rows
			rows++
		}
	}
	take(root)
	take(inWord)
	for k := 2; k < n; k++ {
		if b.start[k+1]-b.start[k] >= minDenseFanout {
			take(k)
		}
	}
	for k := 2; k < n && t.depth[bfs[k]] <= maxDenseDepth; k++ {
		take(k)
	}
	// Number the rows in breadth-first order, which keeps the rows of
	// the shallowest, busiest states together.
	a.nDense = 0
	for k := range b.row {
		if b.row[k] >= 0 {
			b.row[k] = a.nDense
			a.nDense++
		}
	}
	return b
}

// rowOf returns the dense row of state k, which must have one.
func (b *builder) rowOf(k int32) []int32 {
	r := int(b.row[k]) * int(b.a.stride)
	return b.rows[r : r+int(b.a.stride)]
}

// step is the transition from state k on class c, following failures.
func (b *builder) step(k int32, c uint8) int32 {
	for {
		if b.row[k] >= 0 {
			return b.rowOf(k)[c]
		}
		for i := b.start[k]; i < b.start[k+1]; i++ {
			if b.cls[i] == c {
				return b.next[i]
			}
		}
		k = b.fail[k]
	}
}

// link computes failure links, output links and the dense rows, in
// breadth-first order: everything a state's values depend on belongs to
// shallower states, which come first.
func (b *builder) link() {
	a := b.a
	n := len(b.outs)
	b.fail = make([]int32, n)
	b.rows = make([]int32, int(a.nDense)*int(a.stride))
	for k := range int32(n) {
		// The failure links of k's children: the longest proper
		// suffix that is in the trie and could begin where it does,
		// else the root that the last byte leads to. The parent is not
		// stored, so they are set from the parent's side.
		for i := b.start[k]; i < b.start[k+1]; i++ {
			switch c := b.cls[i]; {
			case k != root:
				b.fail[b.next[i]] = b.step(b.fail[k], c)
			case b.word[c]:
				b.fail[b.next[i]] = inWord
			default:
				b.fail[b.next[i]] = root
			}
		}
		if k > inWord {
			f := b.fail[k]
			if b.outs[f].term >= 0 {
				b.outs[k].link = f
			} else {
				b.outs[k].link = b.outs[f].link
			}
		}
		if b.row[k] < 0 {
			continue
		}
		// Dense row: goto where there is one, else the failure state's
		// transition (known, as that state is shallower).
		row := b.rowOf(k)
		switch k {
		case root:
			for c := range row {
				if b.word[c] {
					row[c] = inWord
				}
			}
		case inWord:
			// A phrase beginning with an ASCII word byte cannot begin
			// here; others can.
			copy(row, b.rowOf(root))
			for c := range row {
				if b.word[c] {
					row[c] = inWord
				}
			}
			continue
		default:
			if f := b.fail[k]; b.row[f] >= 0 {
				copy(row, b.rowOf(f))
			} else {
				for c := range row {
					row[c] = b.step(f, uint8(c))
				}
			}
		}
		for i := b.start[k]; i < b.start[k+1]; i++ {
			row[b.cls[i]] = b.next[i]
		}
	}
}

// encode turns the linked states into the automaton's final layout:
// states with dense rows first, in breadth-first order; then the others in
// depth-first order, which puts the rest of a phrase in a run of memory.
func (b *builder) encode() {
	a := b.a
	n := int32(len(b.outs))
	a.denseEnd = a.nDense * a.stride
	b.final = make([]int32, n)
	order := make([]int32, n) // final number -> k
	ns := a.nDense
	for _, k := range b.dfs {
		if r := b.row[k]; r >= 0 {
			b.final[k] = r
		} else {
			b.final[k] = ns
			ns++
		}
		order[b.final[k]] = k
	}
	a.outs = make([]output, n)
	for k, o := range b.outs {
		a.outs[b.final[k]] = output{term: o.term, link: b.final[o.link]}
	}
	mark := func(k int32) int32 {
		id := a.id(b.final[k])
		o := b.outs[k]
		if o.term < 0 && o.link == 0 {
			return id
		}
		id |= outBit
		t := o.term
		if t < 0 {
			t = b.outs[o.link].term
		}
		// Every pattern down the chain ends with the same rune.
		if a.pats[t].flags&patWordEnd != 0 {
			id |= endWordBit
		}
		return id
	}
	a.dense = make([]int32, len(b.rows))
	for i, k := range b.rows {
		a.dense[i] = mark(k)
	}
	a.sparse = make([]sparseState, 0, n-a.nDense)
	a.edges = make([]edge, 0)
	for _, k := range order[a.nDense:] {
		st := sparseState{
			fail:  a.id(b.final[b.fail[k]]),
			first: int32(len(a.edges)),
			n:     uint16(b.start[k+1] - b.start[k]),
		}
		if st.n > 0 {
			i := b.start[k]
			st.cls0, st.next0 = b.cls[i], mark(b.next[i])
		}
		for i := b.start[k] + 1; i < b.start[k+1]; i++ {
			a.edges = append(a.edges, edge{next: mark(b.next[i]), cls: b.cls[i]})
		}
		a.sparse = append(a.sparse, st)
	}
}

// id returns the id of the state numbered k.
func (a *automaton) id(k int32) int32 {
	if k < a.nDense {
		return k * a.stride
	}
	return a.denseEnd + k - a.nDense
}

// number returns the number of the state with id s (unmarked).
func (a *automaton) number(s int32) int32 {
	if s < a.denseEnd {
		return s / a.stride
	}
	return s - a.denseEnd + a.nDense
}

// stepSparse is the transition from sparse state s on class c: its goto
// edge, or its failure state's transition.
func (a *automaton) stepSparse(s int32, c uint8) int32 {
	for s >= a.denseEnd {
		st := &a.sparse[s-a.denseEnd]
		if st.cls0 == c && st.n > 0 {
			return st.next0
		}
		if st.n > 1 {
			for _, e := range a.edges[st.first : st.first+int32(st.n)-1] {
				if e.cls == c {
					return e.next
				}
			}
		}
		s = st.fail
	}
	return a.dense[s+int32(c)]
}
