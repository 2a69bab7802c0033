package units

import (
	"testing"
	"time"
)

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"512", 512, true}, {"64MiB", 64 << 20, true}, {"1GiB", 1 << 30, true},
		{"1.5KB", 1500, true}, {"10M", 10 << 20, true}, {"4k", 4096, true}, {"100B", 100, true},
		{"-1", 0, false}, {"x", 0, false}, {"9EiB", 0, false}, {"8388608TiB", 0, false}, {"NaNMiB", 0, false},
	} {
		got, err := ParseBytes(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"7d", 7 * 24 * time.Hour, true}, {"0.5d", 12 * time.Hour, true}, {"36h", 36 * time.Hour, true},
		{"-1d", -24 * time.Hour, true}, {"0", 0, true}, {"1000000d", 0, false}, {"d", 0, false}, {"xd", 0, false},
	} {
		got, err := ParseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
