package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

func init() {
	register(command{name: "consume", summary: "print the records of a topic", run: runConsume})
}

func runConsume(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("consume", "TOPIC",
		"Print the records of TOPIC until interrupted, or until --count records or --idle without one.\n"+
			"--format raw writes each value followed by the delimiter, so what `sluice produce` read comes\n"+
			"back byte for byte; --format json writes one object a line. With --group the consumer joins\n"+
			"the group, starts every partition at the group's committed offset (--from only where there\n"+
			"is none) and commits what it printed. A stored batch that cannot be read stops the command\n"+
			"with an error naming its offsets (--on-corrupt stop), or is skipped with a warning on stderr\n"+
			"(--on-corrupt skip; a group then commits past it).\n\n"+
			"--from -N prints the last N records of each partition; -e exits once the records that\n"+
			"were in the topic when the command started are printed. --format also takes a template,\n"+
			"as kcat's -f: %t topic, %p partition, %o offset, %k key, %s value, %K and %S their\n"+
			"lengths, %h headers (k=v,...), %T timestamp (Unix milliseconds), %% a percent sign,\n"+
			"and the escapes \\n \\t \\r \\0 \\\\ \\xHH; for example --format '%p:%o %k=%s\\n'.\n\n"+
			"TOPIC may be a pattern of dot-separated tokens, '*' for one token and '>' for the rest\n"+
			"('orders.>', 'telemetry.*.temp'): every matching topic, including those created while the\n"+
			"command runs (not with --partition); with --group, the group shares their partitions and\n"+
			"commits each topic's. --filter keeps, on the broker, the records\n"+
			"whose headers match k=v terms joined by &, or for which a CEL expression over key, headers,\n"+
			"timestamp, value (its JSON fields) and topic is true: 'value.temp > 30 && headers[\"region\"] == \"eu\"'.", stdout, stderr)
	var from startFlag
	f.Var(&from, "from", "start at `WHERE`: earliest, latest, an offset (an error where a partition does not reach it), -N (the last N records of each partition), or an RFC 3339 time (default earliest)")
	filter := f.String("filter", "", "print only the records that match `F` on the broker: header terms k=v joined by &, or a CEL expression over key (bytes: key == b\"k1\"), headers, timestamp, value and topic")
	var atEnd bool
	f.BoolVar(&atEnd, "e", false, "exit at the end of the data: once the records present at the start are printed (not with --group or --filter)")
	f.BoolVar(&atEnd, "exit-at-end", false, "the same as -e")
	group := f.String("group", "", "consume as a member of group `G`, resuming from and committing its offsets")
	partition := f.Int("partition", -1, "read partition `P` only (default: all; not with --group)")
	count := f.Int("count", 0, "stop after `N` records (default: no limit)")
	idle := f.Duration("idle", 0, "stop after `D` without a record (default: wait until interrupted)")
	format := f.String("format", "raw", "output format `F`: raw, json, or a template with %t %p %o %k %s %h %T (see above)")
	delim := delimFlag("\n")
	f.Var(&delim, "delim", "with raw: write `D` after each value, with the escapes of produce")
	keyField := f.Bool("key-field", false, "with raw: write each record as KEY<tab>VALUE")
	onCorrupt := f.String("on-corrupt", "stop", "what to do with a stored batch that cannot be read: `stop` or skip")
	uncommitted := f.Bool("read-uncommitted", false, "print transactions' records as soon as they are stored, open and aborted ones too (default: once committed)")
	ops, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	var tmpl []fmtPiece
	if *format != "raw" && *format != "json" {
		if tmpl, err = parseTemplate(*format); err != nil {
			return f.usageError("--format %q: %v", *format, err)
		}
	}
	switch {
	case *format != "raw" && (*keyField || flagGiven(f, "delim")):
		return f.usageError("--delim and --key-field apply to --format raw only")
	case from.last > 0 && *group != "":
		return f.usageError("--from -N and --group exclude each other: a group starts at its committed offsets")
	case atEnd && (*group != "" || *filter != ""):
		return f.usageError("-e excludes --group and --filter: it counts the records to the end of each partition")
	case *group != "" && *partition >= 0:
		return f.usageError("--partition and --group exclude each other: the group assigns partitions")
	case strings.ContainsAny(ops[0], "*>") && (*partition >= 0 || atEnd || from.last > 0):
		return f.usageError("a pattern takes neither --partition, -e nor --from -N")
	case *partition < -1:
		return f.usageError("--partition %d is not a partition", *partition)
	case *count < 0 || *idle < 0:
		return f.usageError("--count and --idle cannot be negative")
	}
	policy, err := client.ParseCorruptPolicy(*onCorrupt)
	if err != nil {
		return f.usageError("--on-corrupt %q: want stop or skip", *onCorrupt)
	}
	topic := ops[0]
	copts := []client.ConsumerOption{from.option(), client.WithOnCorrupt(policy)}
	if *group != "" {
		copts = append(copts, client.WithGroup(*group))
	}
	if *partition >= 0 {
		copts = append(copts, client.WithPartition(int32(*partition)))
	}
	if *filter != "" {
		copts = append(copts, filterOption(*filter))
	}
	if *uncommitted {
		copts = append(copts, client.WithReadUncommitted())
	}

	c, err := f.g.dial(ctx, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	var win *window
	if atEnd || from.last > 0 {
		// Where each partition starts and ends now: what -e prints up to and -N counts back from.
		dctx, cancel := f.g.request(ctx)
		info, err := c.DescribeTopic(dctx, topic)
		cancel()
		if err != nil {
			return err
		}
		win = newWindow(info.Partitions, int32(*partition), from.last, atEnd)
		if *partition >= 0 && len(win.first) == 0 {
			return fmt.Errorf("topic %s has no partition %d", topic, *partition)
		}
		if from.last > 0 {
			copts = append(copts, client.WithStartOffset(win.lowest()))
		}
		if atEnd && win.done() {
			return nil // nothing to print
		}
	}
	sctx, cancel := f.g.request(ctx)
	cons, err := c.Subscribe(sctx, topic, copts...)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while subscribing
		}
		return err
	}

	out := bufio.NewWriterSize(stdout, 64<<10)
	w := &recordWriter{out: out, json: *format == "json", delim: delim, keyField: *keyField, tmpl: tmpl}
	if w.json {
		w.enc = json.NewEncoder(out)
		w.enc.SetEscapeHTML(false)
	}
	werr, rerr := consumeLoop(ctx, cons, w, win, *count, *idle)
	if ferr := out.Flush(); werr == nil {
		werr = ferr
	}
	if st := cons.Stats(); st.SkippedBatches > 0 {
		fmt.Fprintf(stderr, "sluice: skipped %d unreadable batch(es), %d offset(s) not printed (run with -v for their offsets)\n",
			st.SkippedBatches, st.SkippedOffsets)
	}

	// Commit what was printed (the last record included, which Close alone would leave out) unless
	// the output failed, then close.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), f.g.timeout)
	defer ccancel()
	var cerr error
	if *group != "" && werr == nil {
		cerr = cons.Commit(cctx)
	}
	cerr = errors.Join(cerr, cons.Close(cctx))
	switch {
	case werr != nil:
		return fmt.Errorf("writing the output: %w", werr)
	case rerr != nil:
		return rerr
	case cerr != nil:
		return cerr
	}
	return nil
}

// consumeLoop writes records until count (0: no limit), idle without a record (0: forever), the end
// of ctx, or an error: a write error in werr, a consumer error in rerr.
// win, when not nil, drops the records before each partition's first and ends the loop once every
// partition has reached its end.
func consumeLoop(ctx context.Context, cons *client.Consumer, w *recordWriter, win *window, count int, idle time.Duration) (werr, rerr error) {
	// now is an ended context: Next with it returns a record already received, or at once an error
	// when there is none. That is when the output is flushed, so a large backlog is written in big
	// writes and a live tail record by record.
	now, end := context.WithCancel(context.Background())
	end()
	for n := 0; count == 0 || n < count; n++ {
		m, err := cons.Next(now)
		if errors.Is(err, context.Canceled) && ctx.Err() == nil {
			if err := w.out.Flush(); err != nil {
				return err, nil
			}
			wctx, cancel := ctx, context.CancelFunc(func() {})
			if idle > 0 {
				wctx, cancel = context.WithTimeout(ctx, idle)
			}
			m, err = cons.Next(wctx)
			cancel()
		}
		switch {
		case ctx.Err() != nil:
			return nil, nil // interrupted: a normal end
		case err != nil && idle > 0 && errors.Is(err, context.DeadlineExceeded):
			return nil, nil
		case err != nil:
			return nil, err
		}
		if win != nil && win.skip(m) {
			n--
			continue
		}
		if err := w.write(m); err != nil {
			return err, nil
		}
		if win != nil && win.reached(m) {
			return nil, nil
		}
	}
	return nil, nil
}

// window is what --from -N and -e make of each partition's offsets when the command starts: the first
// offset printed (the last N records) and the end to stop at.
type window struct {
	first   map[int32]int64 // partition: the first offset printed
	end     map[int32]int64 // partition: its end when the command started; nil without -e
	pending int             // the partitions whose end has not been reached (with -e)
}

// newWindow makes the window of parts (only partition only, unless it is -1): the last last records
// (0: all) and, with atEnd, the ends to stop at.
func newWindow(parts []wire.PartitionInfo, only int32, last int64, atEnd bool) *window {
	w := &window{first: map[int32]int64{}}
	if atEnd {
		w.end = map[int32]int64{}
	}
	for _, p := range parts {
		if only >= 0 && p.Partition != only {
			continue
		}
		first := p.StartOffset
		if last > 0 {
			first = max(p.StartOffset, p.EndOffset-last)
		}
		w.first[p.Partition] = first
		if atEnd && first < p.EndOffset {
			w.end[p.Partition] = p.EndOffset
			w.pending++
		}
	}
	return w
}

// lowest is the smallest first offset: where the subscription starts (records below a partition's
// own first are skipped).
func (w *window) lowest() int64 {
	low := int64(-1)
	for _, o := range w.first {
		if low < 0 || o < low {
			low = o
		}
	}
	return max(low, 0)
}

func (w *window) done() bool { return w.end != nil && w.pending == 0 }

// skip reports whether m is before its partition's first offset, or past the end with -e.
func (w *window) skip(m *client.Message) bool {
	if m.Offset < w.first[m.Partition] {
		return true
	}
	if w.end != nil {
		end, ok := w.end[m.Partition]
		return !ok || m.Offset >= end
	}
	return false
}

// reached notes that m was printed and reports whether every partition has reached its end (-e).
func (w *window) reached(m *client.Message) bool {
	if w.end == nil {
		return false
	}
	if end, ok := w.end[m.Partition]; ok && m.Offset+1 >= end {
		delete(w.end, m.Partition)
		w.pending--
	}
	return w.pending == 0
}

// recordWriter formats consumed records.
type recordWriter struct {
	out      *bufio.Writer
	json     bool
	enc      *json.Encoder
	delim    []byte
	keyField bool
	tmpl     []fmtPiece // --format with a template; nil for raw and json
}

// jsonRecord is one line of --format json. Key, value and header values are strings when they are
// valid UTF-8, else base64 with the matching _base64 field true; null stays null.
type jsonRecord struct {
	Topic       string       `json:"topic"`
	Partition   int32        `json:"partition"`
	Offset      int64        `json:"offset"`
	Timestamp   string       `json:"timestamp"`
	Key         *string      `json:"key"`
	KeyBase64   bool         `json:"key_base64,omitempty"`
	Value       *string      `json:"value"`
	ValueBase64 bool         `json:"value_base64,omitempty"`
	Headers     []jsonHeader `json:"headers"`
}

type jsonHeader struct {
	Key         string  `json:"key"`
	KeyBase64   bool    `json:"key_base64,omitempty"`
	Value       *string `json:"value"`
	ValueBase64 bool    `json:"value_base64,omitempty"`
}

func (w *recordWriter) write(m *client.Message) error {
	if w.tmpl != nil {
		return writeTemplate(w.out, w.tmpl, m)
	}
	if !w.json {
		if w.keyField {
			w.out.Write(m.Key)
			w.out.WriteByte('\t')
		}
		w.out.Write(m.Value)
		_, err := w.out.Write(w.delim) // bufio.Writer errors are sticky: this reports any above
		return err
	}
	r := jsonRecord{
		Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
		Timestamp: m.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		Headers:   make([]jsonHeader, 0, m.HeaderCount()),
	}
	r.Key, r.KeyBase64 = jsonBytes(m.Key)
	r.Value, r.ValueBase64 = jsonBytes(m.Value)
	m.Headers(func(k, v []byte) bool {
		var h jsonHeader
		kp, kb := jsonBytes(k)
		if kp != nil {
			h.Key = *kp
		}
		h.KeyBase64 = kb
		h.Value, h.ValueBase64 = jsonBytes(v)
		r.Headers = append(r.Headers, h)
		return true
	})
	return w.enc.Encode(&r)
}

// jsonBytes renders b for JSON: nil for a null, the string when valid UTF-8, else base64 (and true).
func jsonBytes(b []byte) (*string, bool) {
	if b == nil {
		return nil, false
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, false
	}
	s := base64.StdEncoding.EncodeToString(b)
	return &s, true
}

// startFlag is a --from value.
type startFlag struct {
	text string
	opt  client.ConsumerOption
	last int64 // --from -N: N
}

func (s *startFlag) String() string { return s.text }

func (s *startFlag) Set(v string) error {
	s.last = 0
	switch v {
	case "earliest":
		s.opt = client.WithStartEarliest()
	case "latest":
		s.opt = client.WithStartLatest()
	default:
		if off, err := strconv.ParseInt(v, 10, 64); err == nil {
			if off < 0 {
				s.opt, s.last = nil, -off // the last -off records: set up once the ends are known
				break
			}
			if strings.HasPrefix(v, "-") {
				return errors.New("-N takes N of at least 1")
			}
			s.opt, s.last = offsetStart(off), 0
			break
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return errors.New("want earliest, latest, an offset, -N, or an RFC 3339 time such as 2024-05-01T12:00:00Z")
		}
		s.opt = client.WithStartTime(t)
	}
	s.text = v
	return nil
}

// offsetStart starts every partition at offset off, and fails the command, naming the partition and
// what it holds, where off is outside it (rather than the subscription's default of starting such a
// partition at its oldest record, which replayed a whole topic for an offset past its end).
func offsetStart(off int64) client.ConsumerOption {
	return func(o *client.ConsumerOptions) {
		client.WithStartOffset(off)(o)
		client.WithOffsetReset(wire.ResetError)(o)
	}
}

// option is the start option; earliest when --from was not given.
func (s *startFlag) option() client.ConsumerOption {
	if s.opt == nil {
		return client.WithStartEarliest()
	}
	return s.opt
}
