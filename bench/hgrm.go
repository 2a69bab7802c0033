package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// hgrmTicks is the number of reporting ticks per half distance to 100%, HdrHistogram's default.
const hgrmTicks = 5

// WriteHGRM writes h's percentile distribution as HdrHistogram's outputPercentileDistribution does (the
// .hgrm files its plotter reads): a header, one row per reporting tick with the columns Value, Percentile,
// TotalCount and 1/(1-Percentile) (the 100% row has no fourth column), and the Mean/StdDeviation,
// Max/Total count and Buckets/SubBuckets footer. h holds nanoseconds; values are written in units of
// scale nanoseconds (1e3: microseconds, 1e6: milliseconds).
func WriteHGRM(w io.Writer, h *hdr.Histogram, scale float64) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")
	for _, b := range h.CumulativeDistributionWithTicks(hgrmTicks) {
		q := b.Quantile / 100
		v := float64(b.ValueAt) / scale
		if q >= 1 {
			fmt.Fprintf(bw, "%12.3f %2.12f %10d\n", v, 1.0, b.Count)
			continue
		}
		fmt.Fprintf(bw, "%12.3f %2.12f %10d %14.2f\n", v, q, b.Count, 1/(1-q))
	}
	buckets, subBuckets := histGeometry(h)
	fmt.Fprintf(bw, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", h.Mean()/scale, h.StdDev()/scale)
	fmt.Fprintf(bw, "#[Max     = %12.3f, Total count    = %12d]\n", float64(h.Max())/scale, h.TotalCount())
	fmt.Fprintf(bw, "#[Buckets = %12d, SubBuckets     = %12d]\n", buckets, subBuckets)
	return bw.Flush()
}

// histGeometry recomputes HdrHistogram's bucket and sub-bucket counts from the public parameters: the
// sub-bucket count is the power of two that resolves 2×10^digits values, and each further bucket doubles
// the covered range until it reaches the highest trackable value.
func histGeometry(h *hdr.Histogram) (buckets, subBuckets int64) {
	largestSingleUnit := 2 * math.Pow10(int(h.SignificantFigures()))
	subBuckets = int64(1) << int(math.Ceil(math.Log2(largestSingleUnit)))
	unitMagnitude := int(math.Floor(math.Log2(float64(h.LowestTrackableValue()))))
	smallestUntrackable := subBuckets << unitMagnitude
	buckets = 1
	for smallestUntrackable <= h.HighestTrackableValue() {
		if smallestUntrackable > math.MaxInt64/2 {
			return buckets + 1, subBuckets
		}
		smallestUntrackable <<= 1
		buckets++
	}
	return buckets, subBuckets
}
