// Package atomicutil holds atomic counters padded against false sharing, and the padding unit the
// packages that lay out their own hot fields (ring, disk, bench) use.
package atomicutil

import (
	"sync/atomic"
	"unsafe"
)

// CacheLine is the padding unit, in bytes, between words written by different cores. It is two
// 64-byte lines, not one: x86-64's adjacent-line (spatial) prefetcher fetches 64-byte lines in
// aligned 128-byte pairs, so a store to one line still invalidates a reader's copy of its neighbour;
// and Apple's arm64 cores have 128-byte lines. A tuning constant, not a format: nothing it shapes is
// persisted or sent, and changing it changes no behaviour.
const CacheLine = 128

// Uint64 is an atomic.Uint64 followed by padding to CacheLine bytes: two Uint64s side by side (in a
// struct or an array) never share a line pair. It may share one with whatever precedes it; put a Pad
// in front where that matters.
type Uint64 struct {
	atomic.Uint64
	_ [CacheLine - unsafe.Sizeof(atomic.Uint64{})%CacheLine]byte
}

// Int64 is an atomic.Int64 padded as Uint64 is.
type Int64 struct {
	atomic.Int64
	_ [CacheLine - unsafe.Sizeof(atomic.Int64{})%CacheLine]byte
}

// Pad is CacheLine bytes of padding, to keep the fields after it off the lines of those before it.
type Pad [CacheLine]byte
