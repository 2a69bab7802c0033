//go:build race

package engine

// raceEnabled: the race detector makes sync.Pool drop entries, so pooled paths allocate under it.
const raceEnabled = true
