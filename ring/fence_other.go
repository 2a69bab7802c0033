//go:build !linux || !amd64 || race

package ring

import "sync/atomic"

// asymmetric is false here: publication is a sequentially consistent Store.
const asymmetric = false

func heavyFence() {}

// storeRelease is Go's atomic Store, which is sequentially consistent.
func storeRelease(p *atomic.Uint64, v uint64) { p.Store(v) }
