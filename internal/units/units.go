// Package units parses the sizes and durations that sluice and sluiced take on their command lines,
// in their config file and in environment variables, so that both read "64MiB" and "7d" alike.
package units

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// byteUnits are the size suffixes: IEC (KiB, MiB, GiB, TiB) and the single letters k, K, M, G, T are
// powers of 1024; KB, MB, GB, TB are powers of 1000; B is one byte. Longest first, so "MiB" is not
// read as "B".
var byteUnits = []struct {
	suffix string
	mult   float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"k", 1 << 10}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

// ParseBytes reads a size in bytes: a decimal number with an optional unit ("512", "64KiB", "1.5GB",
// "10M"). A plain integer is exact; with a unit the number may have a fraction, rounded down to whole
// bytes. Negative sizes and sizes of 2^63 bytes or more are errors.
func ParseBytes(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), 1.0
	for _, u := range byteUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil && mult == 1 {
		if n < 0 {
			return 0, errors.New("negative size")
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsNaN(f) || f*mult >= 1<<63 {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	return int64(f * mult), nil
}

// ParseDuration reads a duration as time.ParseDuration does ("90m", "36h", "1h30m"), and also in days:
// a number followed by "d" ("7d", "0.5d"). A count of days beyond the range of time.Duration (about
// 292 years) is an error.
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
			return 0, fmt.Errorf("not a duration: %q", s)
		}
		ns := n * float64(24*time.Hour)
		if ns >= math.MaxInt64 || ns <= math.MinInt64 {
			return 0, fmt.Errorf("%s is out of range (at most about 292 years)", s)
		}
		return time.Duration(ns), nil
	}
	return time.ParseDuration(s)
}
