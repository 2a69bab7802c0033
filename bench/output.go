package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// WriteTable writes one row per result: achieved throughput and latency percentiles.
func WriteTable(w io.Writer, results ...*Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tmode\tpayload\tdurability\trate\tmsgs/s\tMB/s\tp50\tp90\tp99\tp99.9\tp99.99\tmax\tlost\tunsent\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%.0f\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t\n",
			r.Target, r.Config.Mode, r.Config.PayloadSize, durabilityString(r), rateString(r.Config),
			r.Rate, r.MBps, FormatLatency(r.Latency.P50), FormatLatency(r.Latency.P90),
			FormatLatency(r.Latency.P99), FormatLatency(r.Latency.P999), FormatLatency(r.Latency.P9999),
			FormatLatency(r.Latency.Max), r.Lost, r.Unsent)
	}
	return tw.Flush()
}

// durabilityString is the table's durability column: "-" for the harness's own targets (the floor,
// the spsc floor and the relay), which store nothing.
func durabilityString(r *Result) string {
	switch r.Target {
	case FloorName, SPSCName, RelayName:
		return "-"
	}
	return string(r.Config.Durability)
}

func rateString(c Config) string {
	if c.Mode == ClosedLoop {
		return "max"
	}
	return strconv.FormatFloat(c.Rate, 'f', -1, 64)
}

// FormatLatency prints d with three significant digits in the unit that suits it.
func FormatLatency(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", int64(d))
	case d < time.Millisecond:
		return fmt.Sprintf("%.3gµs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.3gms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.3gs", d.Seconds())
	}
}

// resultJSON is Result's JSON form: the plain fields plus the histograms V2-encoded (compressed, base64),
// the format every HdrHistogram implementation reads.
type resultJSON struct {
	resultFields
	Histograms map[string]string `json:"histograms,omitempty"`
}

type resultFields Result // drops Result's methods, so encoding the embedded fields does not recurse

// MarshalJSON implements json.Marshaler.
func (r *Result) MarshalJSON() ([]byte, error) {
	out := resultJSON{resultFields: resultFields(*r), Histograms: map[string]string{}}
	for name, h := range map[string]*hdr.Histogram{
		"latency": r.Hist, "uncorrected": r.UncorrectedHist, "pacer": r.PacerHist,
	} {
		if h == nil {
			continue
		}
		b, err := h.Encode(hdr.V2CompressedEncodingCookieBase)
		if err != nil {
			return nil, fmt.Errorf("bench: encode %s histogram: %w", name, err)
		}
		out.Histograms[name] = string(b)
	}
	return json.Marshal(out)
}

// UnmarshalJSON implements json.Unmarshaler.
func (r *Result) UnmarshalJSON(b []byte) error {
	var in resultJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*r = Result(in.resultFields)
	for name, dst := range map[string]**hdr.Histogram{
		"latency": &r.Hist, "uncorrected": &r.UncorrectedHist, "pacer": &r.PacerHist,
	} {
		s, ok := in.Histograms[name]
		if !ok {
			continue
		}
		h, err := hdr.Decode([]byte(s))
		if err != nil {
			return fmt.Errorf("bench: decode %s histogram: %w", name, err)
		}
		*dst = h
	}
	return nil
}

// WriteJSON writes the results as an indented JSON array.
func WriteJSON(w io.Writer, results ...*Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if results == nil {
		results = []*Result{}
	}
	return enc.Encode(results)
}
