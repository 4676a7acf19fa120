package lists

import (
	"hash/maphash"
	"math"
	"math/bits"
)

// Deduper remembers the addresses seen in one pass over a list with bounded
// memory: it keeps a 64-bit hash of each key and the line of its first
// occurrence, not the strings. The hashes are seeded per Deduper, so two
// Dedupers disagree on collisions; with 64-bit hashes the chance that two of
// a million distinct keys collide is about 3 in 100 million.
//
// It is an open-addressing table (linear probing, at most 3/4 full) of
// 12 bytes per slot: about 24 MiB for 1,000,000 keys when it grows to them,
// 16 MiB when Reset is told to expect them.
//
// A Deduper is not safe for concurrent use.
type Deduper struct {
	seed  maphash.Seed
	keys  []uint64 // 0 marks an empty slot
	lines []uint32
	n     int
}

// initialSlots is the capacity of a new Deduper.
const initialSlots = 1024

// NewDeduper returns an empty Deduper.
func NewDeduper() *Deduper {
	return &Deduper{
		seed:  maphash.MakeSeed(),
		keys:  make([]uint64, initialSlots),
		lines: make([]uint32, initialSlots),
	}
}

// Len returns the number of distinct keys added.
func (d *Deduper) Len() int { return d.n }

// Reset forgets every key. With expected > 0 (the number of keys a second pass over the
// same list will add) the table is sized for exactly that many, so that the pass neither
// grows it nor keeps more than it needs; otherwise the table is kept as it is.
func (d *Deduper) Reset(expected int) {
	d.n = 0
	if want := expected/3*4 + expected%3*2 + 1; expected > 0 && want > initialSlots && (want > len(d.keys) || want < len(d.keys)*3/4) {
		d.keys = make([]uint64, want)
		d.lines = make([]uint32, want)
		return
	}
	clear(d.keys)
	clear(d.lines)
}

// slot maps a hash onto the table (any size): the high half of hash × size.
func (d *Deduper) slot(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(d.keys)))
	return int(hi)
}

// Add records key (normally Row.Key) seen at line. The first time a key is
// added it returns (line, false); later it returns the line of the first
// occurrence and true. Lines beyond 4294967295 are stored as that value.
func (d *Deduper) Add(key string, line int) (firstLine int, duplicate bool) {
	h := maphash.String(d.seed, key)
	if h == 0 {
		h = 1
	}
	if (d.n+1)*4 > len(d.keys)*3 {
		d.grow()
	}
	for i := d.slot(h); ; i++ {
		if i == len(d.keys) {
			i = 0
		}
		switch d.keys[i] {
		case h:
			return int(d.lines[i]), true
		case 0:
			d.keys[i] = h
			d.lines[i] = clampLine(line)
			d.n++
			return line, false
		}
	}
}

// grow doubles the table.
func (d *Deduper) grow() {
	oldKeys, oldLines := d.keys, d.lines
	d.keys = make([]uint64, 2*len(oldKeys))
	d.lines = make([]uint32, 2*len(oldLines))
	for j, h := range oldKeys {
		if h == 0 {
			continue
		}
		i := d.slot(h)
		for d.keys[i] != 0 {
			if i++; i == len(d.keys) {
				i = 0
			}
		}
		d.keys[i] = h
		d.lines[i] = oldLines[j]
	}
}

// clampLine fits a line number into a table slot.
func clampLine(line int) uint32 {
	switch {
	case line < 0:
		return 0
	case uint64(line) > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(line)
}
