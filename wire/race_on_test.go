//go:build race

package wire

// raceEnabled: the race detector changes what some dependencies allocate (zstd), so exact
// allocation counts of compressed paths are checked only without it.
const raceEnabled = true
