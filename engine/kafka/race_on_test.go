//go:build race

package kafka

// raceEnabled: the race detector slows the loops several times over; the large tests shrink under it.
const raceEnabled = true
