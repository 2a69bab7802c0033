package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// sampleHist holds 1..10000 µs once each, in nanoseconds.
func sampleHist() *hdr.Histogram {
	h := newHist(time.Minute)
	for v := int64(1); v <= 10000; v++ {
		_ = h.RecordValue(v * 1000)
	}
	return h
}

func TestHGRMFormat(t *testing.T) {
	h := sampleHist()
	var buf bytes.Buffer
	if err := WriteHGRM(&buf, h, 1e3); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if got := strings.Fields(lines[0]); !reflect.DeepEqual(got, []string{"Value", "Percentile", "TotalCount", "1/(1-Percentile)"}) {
		t.Fatalf("header %q", lines[0])
	}
	if lines[1] != "" {
		t.Fatalf("no blank line after the header: %q", lines[1])
	}
	var rows, lastCount int64
	lastQ, lastV := -1.0, -1.0
	i := 2
	for ; i < len(lines) && !strings.HasPrefix(lines[i], "#"); i++ {
		f := strings.Fields(lines[i])
		if len(f) != 4 && len(f) != 3 {
			t.Fatalf("row %q: %d columns", lines[i], len(f))
		}
		v, _ := strconv.ParseFloat(f[0], 64)
		q, _ := strconv.ParseFloat(f[1], 64)
		n, _ := strconv.ParseInt(f[2], 10, 64)
		if v < lastV || q < lastQ || n < lastCount {
			t.Fatalf("row %q goes backwards", lines[i])
		}
		if len(f) == 4 {
			inv, _ := strconv.ParseFloat(f[3], 64)
			if math.Abs(inv-1/(1-q)) > 0.01*inv+0.01 {
				t.Fatalf("row %q: 1/(1-Percentile) is %v, want %v", lines[i], inv, 1/(1-q))
			}
		} else if q != 1 {
			t.Fatalf("three-column row %q before 100%%", lines[i])
		}
		lastV, lastQ, lastCount = v, q, n
		rows++
	}
	if lastQ != 1 || lastCount != 10000 || rows < 50 {
		t.Fatalf("last row at %v with count %d after %d rows; want 1.0, 10000, a full distribution", lastQ, lastCount, rows)
	}
	if math.Abs(lastV-10000) > 10 {
		t.Fatalf("max row %v µs, want about 10000", lastV)
	}
	footer := strings.Join(lines[i:], "\n")
	for _, want := range []string{"#[Mean    = ", "StdDeviation   = ", "#[Max     = ", "Total count    =        10000]", "#[Buckets = "} {
		if !strings.Contains(footer, want) {
			t.Errorf("footer lacks %q:\n%s", want, footer)
		}
	}
	// The geometry line must agree with the library's own printer.
	var lib bytes.Buffer
	if _, err := h.PercentilesPrint(&lib, 5, 1e3); err != nil {
		t.Fatal(err)
	}
	libLines := strings.Split(strings.TrimSpace(lib.String()), "\n")
	if got, want := strings.Fields(lines[len(lines)-1]), strings.Fields(libLines[len(libLines)-1]); !reflect.DeepEqual(got, want) {
		t.Errorf("buckets line %q, library says %q", got, want)
	}
	if len(libLines)-2 != len(lines)-2 { // same number of rows: same iterator
		t.Errorf("%d lines, library printer %d", len(lines), len(libLines))
	}
}

func TestSVGWellFormed(t *testing.T) {
	fast := newHist(time.Minute)
	for v := int64(1); v <= 1000; v++ {
		_ = fast.RecordValue(v * 100)
	}
	var buf bytes.Buffer
	names := []string{"sluice @ 10000 msg/s", "harness floor <&\"'>", "empty"}
	if err := WriteSVG(&buf, "a & b", Series{names[0], sampleHist()}, Series{names[1], fast}, Series{names[2], nil}); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(buf.Bytes()))
	var got []string
	var root string
	ticks := map[string]bool{}
	var inText bool
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, buf.String())
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
			}
			inText = el.Name.Local == "text"
			attrs := map[string]string{}
			for _, a := range el.Attr {
				attrs[a.Name.Local] = a.Value
			}
			if el.Name.Local == "polyline" && attrs["class"] == "series" {
				got = append(got, attrs["data-name"])
				if attrs["data-name"] != "empty" && len(strings.Fields(attrs["points"])) < 10 {
					t.Errorf("series %q has too few points: %q", attrs["data-name"], attrs["points"])
				}
			}
		case xml.CharData:
			if inText {
				ticks[string(el)] = true
			}
		case xml.EndElement:
			inText = false
		}
	}
	if root != "svg" {
		t.Errorf("root element %q", root)
	}
	if !reflect.DeepEqual(got, names) {
		t.Errorf("series %q, want %q", got, names)
	}
	for _, tick := range []string{"90%", "99%", "99.9%", "99.99%"} {
		if !ticks[tick] {
			t.Errorf("no x tick %q (have %v)", tick, ticks)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	res, err := Run(context.Background(), NewFloorTarget(), Config{
		Rate: 2000, Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond, KeyDist: KeysUniform,
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, res); err != nil {
		t.Fatal(err)
	}
	var back []*Result
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back) != 1 {
		t.Fatalf("%d results back", len(back))
	}
	got := back[0]
	for name, pair := range map[string][2]*hdr.Histogram{
		"latency": {res.Hist, got.Hist}, "uncorrected": {res.UncorrectedHist, got.UncorrectedHist}, "pacer": {res.PacerHist, got.PacerHist},
	} {
		if pair[1] == nil || pair[0].TotalCount() != pair[1].TotalCount() || pair[0].Max() != pair[1].Max() ||
			!reflect.DeepEqual(pair[0].Distribution(), pair[1].Distribution()) {
			t.Errorf("%s histogram did not round-trip", name)
		}
	}
	a, b := *res, *got
	a.Hist, a.UncorrectedHist, a.PacerHist = nil, nil, nil
	b.Hist, b.UncorrectedHist, b.PacerHist = nil, nil, nil
	if !reflect.DeepEqual(a, b) {
		t.Errorf("round trip changed the result:\n got %+v\nwant %+v", b, a)
	}
	var table bytes.Buffer
	if err := WriteTable(&table, res); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(table.String()), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "floor") ||
		strings.Fields(lines[1])[3] != "-" {
		t.Errorf("table (the floor's durability column should be -):\n%s", table.String())
	}
}

func TestMarkers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "benchmarks.md")
	const head = "# Benchmarks\n\n## wire\nhand-recorded figures\n"
	if err := os.WriteFile(path, []byte(head), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateMarkedFile(path, []byte("first run\n")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	want := head + "\n" + BeginMarker + "\nfirst run\n" + EndMarker + "\n"
	if string(b) != want {
		t.Fatalf("markers appended:\n%q\nwant\n%q", b, want)
	}
	// Text after the block, added by hand, survives the next run too.
	tail := "\n## ring\nmore hand-recorded figures\n"
	if err := os.WriteFile(path, append(b, tail...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateMarkedFile(path, []byte("second run")); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	want = head + "\n" + BeginMarker + "\nsecond run\n" + EndMarker + "\n" + tail
	if string(b) != want {
		t.Fatalf("markers replaced:\n%q\nwant\n%q", b, want)
	}
	// A missing file is created; misordered or doubled markers are refused.
	if err := UpdateMarkedFile(filepath.Join(dir, "new.md"), []byte("x\n")); err != nil {
		t.Fatal(err)
	}
	for _, doc := range []string{EndMarker + BeginMarker, BeginMarker + EndMarker + BeginMarker, BeginMarker} {
		if _, err := spliceMarked([]byte(doc), nil); err == nil {
			t.Errorf("%q accepted", doc)
		}
	}
}

func TestLimits(t *testing.T) {
	l, err := MeasureLimits(context.Background(), LimitsOptions{Dir: t.TempDir(), Probe: 50 * time.Millisecond,
		Buffered: 50 * time.Millisecond, BufferedWarmup: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if l.DiskBufferedMBps <= 0 || l.BufferedFor != 50*time.Millisecond || !strings.Contains(l.Summary(), "buffered write without sync") {
		t.Errorf("buffered-write probe not measured or not summarized: %+v: %s", l, l.Summary())
	}
	if l.LoopbackMBps <= 0 || l.LoopbackSmallMBps <= 0 || l.MemcpyMBps <= 0 || l.DiskWriteMBps <= 0 ||
		l.FdatasyncP50 <= 0 || l.FdatasyncP99 < l.FdatasyncP50 || l.FdatasyncN < 10 {
		t.Errorf("limits not all measured: %+v", l)
	}
	t.Logf("%+v", l)
}

// TestSuite runs a small suite on the floor target: a sweep that holds its limit for two steps, and one
// that breaks at its first step, then writes the report into a file between the markers.
func TestSuite(t *testing.T) {
	dir := t.TempDir()
	plots := filepath.Join(dir, "bench")
	scen := []Scenario{
		{Name: "floor sweep", Config: Config{Target: FloorName, Rate: 500, PayloadSize: 64}, Sweep: true, P99Limit: time.Hour, MaxSteps: 2},
		{Name: "floor-breaks", Config: Config{Target: FloorName, Rate: 500, Durability: DurabilityFsync}, Sweep: true, P99Limit: 1, MaxSteps: 2, NoFloor: true},
	}
	sr, err := RunSuite(context.Background(), SuiteOptions{
		Budget: 6 * time.Second, LimitsDir: dir, LimitsProbe: 30 * time.Millisecond, PlotDir: plots, PlotLink: "bench",
	}, scen)
	if err != nil {
		t.Fatal(err)
	}
	if len(sr.Scenarios) != 2 {
		t.Fatalf("%d scenarios", len(sr.Scenarios))
	}
	s0, s1 := sr.Scenarios[0], sr.Scenarios[1]
	if len(s0.Steps) != 2 || s0.Broke || s0.Steps[1].Target.Config.Rate != 1000 || s0.Steps[1].Floor == nil {
		t.Errorf("sweep: %d steps, broke %v: want rates 500 and 1000 with floors", len(s0.Steps), s0.Broke)
	}
	if len(s1.Steps) != 1 || !s1.Broke || s1.Steps[0].Floor != nil {
		t.Errorf("breaking sweep: %d steps, broke %v: want one step, broken, no floor", len(s1.Steps), s1.Broke)
	}
	for _, f := range []string{"floor-sweep.svg", "floor-sweep.hgrm", "floor-sweep-floor.hgrm", "floor-breaks.svg"} {
		if _, err := os.Stat(filepath.Join(plots, f)); err != nil {
			t.Error(err)
		}
	}
	var md bytes.Buffer
	if err := WriteMarkdown(&md, sr); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"loopback TCP, 256 KiB writes", "fdatasync p50 / p99", "#### floor sweep",
		"![floor sweep latency by percentile](bench/floor-sweep.svg)", "of loopback TCP bandwidth",
		"× raw fdatasync p99", "| floor | 1000 |", "Highest rate within the p99 limit"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, md.String())
		}
	}
	report := filepath.Join(dir, "benchmarks.md")
	if err := os.WriteFile(report, []byte("# Benchmarks\n\n## wire\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateMarkedFile(report, md.Bytes()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(report)
	if !strings.HasPrefix(string(b), "# Benchmarks\n\n## wire\n") || !strings.Contains(string(b), BeginMarker+"\n### Harness run") {
		t.Errorf("report file:\n%s", b)
	}
}
