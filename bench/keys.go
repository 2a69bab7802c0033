package bench

import (
	"fmt"
	"math/rand/v2"
)

// keyPicker draws message keys for one producer goroutine. Keys are formatted once up front so that
// picking one allocates nothing.
type keyPicker struct {
	keys [][]byte
	rng  *rand.Rand
	zipf *rand.Zipf // nil unless KeyDist is zipf
}

func newKeyPicker(cfg Config, seed uint64) *keyPicker {
	if cfg.KeyDist == KeysNone {
		return &keyPicker{}
	}
	k := &keyPicker{
		keys: make([][]byte, cfg.KeyCount),
		rng:  rand.New(rand.NewPCG(seed, 0x5eed_5111ce)),
	}
	for i := range k.keys {
		k.keys[i] = fmt.Appendf(nil, "key-%08d", i)
	}
	if cfg.KeyDist == KeysZipf {
		k.zipf = rand.NewZipf(k.rng, cfg.ZipfS, 1, uint64(cfg.KeyCount-1))
	}
	return k
}

func (k *keyPicker) next() []byte {
	switch {
	case k.keys == nil:
		return nil
	case k.zipf != nil:
		return k.keys[k.zipf.Uint64()]
	default:
		return k.keys[k.rng.IntN(len(k.keys))]
	}
}
