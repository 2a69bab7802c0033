package engine

// Scripted engine tests: each testdata/*.txt file is an interaction script, run by TestScripts in a
// testing/synctest bubble, so every clock the engine reads (Options.Clock, which defaults to
// time.Now, and its timers: the queue janitor's tick, nack delays, group revoke timeouts, the group
// expirer) is the bubble's fake clock, which moves only when the script says "advance". Before each
// command's output is taken the bubble is let settle (synctest.Wait): every engine goroutine has done
// what the time so far asks of it, so outputs are exact.
//
// A script is a list of commands, each followed by "----" and its expected output, ended by a blank
// line; lines starting with # are comments:
//
//	# two records
//	produce topic=q n=2
//	----
//	p0: 0-1
//
// Run `go test ./engine -run TestScripts -rewrite` to write the outputs the engine gives now into the
// scripts (then read the diff). The commands:
//
//	open [ack-timeout=D] [max-deliveries=N] [max-ack-pending=N] [max-tracked=N] [revoke-timeout=D]
//	     [offsets-retention=D] [segment-bytes=N] [max-batch-bytes=N] [txn-timeout=D]
//	    Opens an engine on a new directory with these Options (D is a Go duration), closing the
//	    script's engine if it has one.
//	restart
//	    Closes the engine (its subscriptions with it) and opens it again on the same directory.
//	topic name=T [partitions=N] [segment-bytes=N] [retention-bytes=N] [retention-ms=N] [ttl=D]
//	    Creates a topic (ttl: its TTL, wire.TopicConfig.TTLMs).
//	produce topic=T [partition=P] [n=N] [batch=K] [size=B] [ts=D] [key=K] [header=k=v] [value=V]
//	    [ttl=D] [deliver-in=D] [priority=N]
//	    Appends n records (default 1) to partition P (default 0), K to a batch (default all), each
//	    value "T/P/i" padded to B bytes (or V, which has no spaces: {"temp":35}), with key K and
//	    header k=v when given, and stamped with the engine's clock plus D (default 0, negative for
//	    the past); prints the offsets given. ttl, deliver-in and priority set the scheduling
//	    headers: wire.HeaderTTL to D in milliseconds, wire.HeaderDeliverAt to the engine's clock
//	    plus D, wire.HeaderPriority to N. txn=PID makes the batches transactional, of producer id
//	    PID at epoch 0 (its sequence continued per partition).
//	endtxn pid=PID commit|abort
//	    Ends producer PID's open transaction (Engine.EndTxn, epoch 0).
//	sub name=A topic=T [group=G] [queue] [ack-timeout=D] [max-deliveries=N] [max-ack-pending=N]
//	    [start=earliest|latest|committed] [reset=earliest|latest|error] [filter=F] [cel=EXPR]
//	    [allow=PREFIX] [read-uncommitted]
//	    Opens subscription A (a group member with group=, a work-queue member with queue too). T may
//	    be a pattern; allow= lets it match only topics named PREFIX… (SubscribeOptions.MayTopic).
//	    read-uncommitted sets wire.ReadUncommitted (the default reads committed records).
//	    filter= is a header filter, cel= a CEL filter (no spaces).
//	take name=A [max-bytes=N] [values]
//	    One delivery to A: "pP: offsets…" ("T/pP: …" for a pattern; with values: offset=value…), or
//	    "nothing". A pattern subscription outside a group first takes the topics created since
//	    (ApplyAssignment; a group member's are the assignments command's).
//	drain name=A [values]
//	    Deliveries to A until there is nothing, one line each.
//	ack name=A [partition=P] offsets=O,O…
//	nack name=A [partition=P] offsets=O,O… [delay=D]
//	    Settles work-queue records.
//	close name=A
//	    Closes subscription A.
//	delete topic=T
//	    Deletes topic T.
//	advance d=D
//	    Moves the clock on by D (the engine's goroutines run as they would over that time); prints
//	    the time since open.
//	queue group=G topic=T
//	    A work queue's state per partition: floor, next, pending (offset:member#deliveries@deadline,
//	    deadlines as time since open), due (offset:#deliveries), dead runs (first-last#deliveries).
//	    Consecutive offsets alike are shown as one run, first-last:….
//	dlq topic=T
//	    The dead letters of T's queues: source offset, last offset when set, deliveries, reason, value.
//	committed group=G topic=T
//	    The group's committed offset per partition ("-" for none).
//	commit group=G topic=T [partition=P] offset=O
//	    Commits an offset (-1: a hand-back) and waits until it is durable.
//	assignments
//	    Applies the assignment of every group member told of a change since it last applied one, in
//	    name order: "A gen=N: P@start…" ("T/P@start…" for a pattern member), with the error if the
//	    assignment ended the subscription. A pattern member applying one may offer its group a topic
//	    created since, which tells the members again: run it until "none told".
//	group name=G
//	    The group's generation and its members' partitions (by subscription name; "A:T[…]" per topic
//	    for a pattern member, "A:PATTERN[]" for one holding nothing).
//	retain topic=T
//	    Runs retention on each partition of T now; prints the log starts.
//	groups
//	    The groups with members or committed offsets.
//	expire-groups
//	    Drops the groups whose offsets OffsetsRetention expired now; prints their names. (The
//	    engine's expirer does the same every tenth of OffsetsRetention, at most every 10 minutes.)
//	metrics
//	    The counters scripts pin: sluice_queue_records_expired_total.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicemq/sluice/wire"
)

var rewrite = flag.Bool("rewrite", false, "write the outputs the engine gives now into testdata/*.txt")

func TestScripts(t *testing.T) {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ent := range entries {
		name, ok := strings.CutSuffix(ent.Name(), ".txt")
		if !ok || ent.IsDir() {
			continue
		}
		n++
		t.Run(name, func(t *testing.T) { runScript(t, "testdata/"+ent.Name()) })
	}
	if n == 0 {
		t.Fatal("no scripts in testdata")
	}
}

// scriptCase is one command of a script and its expected output.
type scriptCase struct {
	line int      // of the command, 1-based
	pre  []string // comments and blank lines before the command, kept by -rewrite
	cmd  string
	want []string
}

// parseScript reads a script into its cases and the lines after the last one.
func parseScript(t *testing.T, file string) ([]scriptCase, []string) {
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	var cases []scriptCase
	var pre []string
	for i := 0; i < len(lines); {
		if l := lines[i]; strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			pre = append(pre, l)
			i++
			continue
		}
		c := scriptCase{line: i + 1, pre: pre, cmd: lines[i]}
		pre = nil
		i++
		if i >= len(lines) || lines[i] != "----" {
			t.Fatalf("%s:%d: %q is not followed by ----", file, c.line, c.cmd)
		}
		for i++; i < len(lines) && lines[i] != ""; i++ {
			c.want = append(c.want, lines[i])
		}
		cases = append(cases, c)
	}
	return cases, pre
}

func runScript(t *testing.T, file string) {
	cases, tail := parseScript(t, file)
	synctest.Test(t, func(t *testing.T) {
		env := &scriptEnv{t: t, subs: map[string]*scriptSub{}, seqs: map[string]int32{}}
		defer env.closeEngine()
		var out bytes.Buffer
		for _, c := range cases {
			got := env.run(c)
			synctest.Wait()
			if got == "" {
				got = "ok"
			}
			for _, l := range c.pre {
				out.WriteString(l + "\n")
			}
			fmt.Fprintf(&out, "%s\n----\n%s\n", c.cmd, got)
			if want := strings.Join(c.want, "\n"); got != want && !*rewrite {
				t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", file, c.line, c.cmd, got, want)
			}
		}
		for _, l := range tail {
			out.WriteString(l + "\n")
		}
		if *rewrite {
			if err := os.WriteFile(file, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// scriptEnv is a script's engine and subscriptions. It lives in the bubble's one test goroutine,
// which is every subscription's owner goroutine.
type scriptEnv struct {
	t    *testing.T
	opts Options
	e    *Engine
	t0   time.Time // when the script opened its engine (bubble time)
	subs map[string]*scriptSub
	seqs map[string]int32 // a transactional producer's next sequence, by "topic/partition/pid"
}

// scriptSub is a subscription and its owner: wake-ups are ignored (take readies every cursor) and
// reassignments counted for the assignments command.
type scriptSub struct {
	name    string
	s       *Subscription
	told    atomic.Int32 // Reassign calls
	applied int32        // told, when the script last applied the assignment
}

func (*scriptSub) Wake(*Cursor)             {}
func (o *scriptSub) Reassign(*Subscription) { o.told.Add(1) }

type scriptArgs map[string]string

func (a scriptArgs) has(k string) bool {
	_, ok := a[k]
	return ok
}

func (a scriptArgs) str(k, def string) string {
	if v, ok := a[k]; ok {
		return v
	}
	return def
}

func (env *scriptEnv) int(a scriptArgs, k string, def int64) int64 {
	v, ok := a[k]
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		env.t.Fatalf("%s=%q: %v", k, v, err)
	}
	return n
}

func (env *scriptEnv) dur(a scriptArgs, k string, def time.Duration) time.Duration {
	v, ok := a[k]
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		env.t.Fatalf("%s=%q: %v", k, v, err)
	}
	return d
}

func (env *scriptEnv) offsets(a scriptArgs) []int64 {
	var out []int64
	for _, f := range strings.Split(a["offsets"], ",") {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			env.t.Fatalf("offsets=%q: %v", a["offsets"], err)
		}
		out = append(out, n)
	}
	return out
}

func (env *scriptEnv) sub(a scriptArgs) *scriptSub {
	s := env.subs[a["name"]]
	if s == nil {
		env.t.Fatalf("no subscription %q", a["name"])
	}
	return s
}

func errLine(err error) string { return "error: " + err.Error() }

// run runs one command and returns its output.
func (env *scriptEnv) run(c scriptCase) string {
	t := env.t
	fields := strings.Fields(c.cmd)
	a := scriptArgs{}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(f, "=")
		a[k] = v
	}
	if env.e == nil && fields[0] != "open" {
		t.Fatalf("line %d: %s before open", c.line, fields[0])
	}
	switch fields[0] {
	case "open":
		env.closeEngine()
		o := testOptions(t)
		o.QueueAckTimeout = env.dur(a, "ack-timeout", 0)
		o.QueueMaxDeliveries = int(env.int(a, "max-deliveries", 0))
		o.QueueMaxAckPending = int(env.int(a, "max-ack-pending", 0))
		o.QueueMaxTracked = int(env.int(a, "max-tracked", 0))
		o.GroupRevokeTimeout = env.dur(a, "revoke-timeout", 0)
		o.OffsetsRetention = env.dur(a, "offsets-retention", 0)
		o.SegmentBytes = env.int(a, "segment-bytes", o.SegmentBytes)
		o.MaxBatchBytes = int(env.int(a, "max-batch-bytes", 0))
		o.TxnTimeout = env.dur(a, "txn-timeout", 0)
		env.opts, env.t0 = o, time.Now()
		return env.open()
	case "restart":
		env.closeEngine()
		return env.open()
	case "topic":
		cfg := wire.TopicConfig{Name: a["name"], Partitions: uint32(env.int(a, "partitions", 1)),
			SegmentBytes: env.int(a, "segment-bytes", 0), RetentionBytes: env.int(a, "retention-bytes", 0),
			RetentionMs: env.int(a, "retention-ms", 0), TTLMs: env.dur(a, "ttl", 0).Milliseconds()}
		if _, err := env.e.CreateTopic(cfg); err != nil {
			return errLine(err)
		}
	case "produce":
		return env.produce(a)
	case "sub":
		return env.subscribe(a)
	case "take":
		s := env.sub(a)
		return env.take(s, int(env.int(a, "max-bytes", int64(env.e.opts.MaxDeliverBytes))), a.has("values"))
	case "drain":
		s := env.sub(a)
		var out []string
		for {
			l := env.take(s, env.e.opts.MaxDeliverBytes, a.has("values"))
			if l == "nothing" || strings.HasPrefix(l, "error") {
				return strings.Join(append(out, l), "\n")
			}
			out = append(out, l)
		}
	case "ack", "nack":
		s := env.sub(a)
		offs := env.offsets(a)
		at := func(i int) int64 { return offs[i] }
		p := int32(env.int(a, "partition", 0))
		var err error
		if fields[0] == "ack" {
			err = s.s.Ack(p, len(offs), at)
		} else {
			err = s.s.Nack(p, len(offs), at, env.dur(a, "delay", 0))
		}
		if err != nil {
			return errLine(err)
		}
	case "delete":
		if err := env.e.DeleteTopic(a["topic"]); err != nil {
			return errLine(err)
		}
	case "endtxn":
		if err := env.e.EndTxn(env.int(a, "pid", 0), 0, a.has("commit")); err != nil {
			return errLine(err)
		}
	case "close":
		env.sub(a).s.Close()
		delete(env.subs, a["name"])
	case "advance":
		time.Sleep(env.dur(a, "d", 0))
		synctest.Wait()
		return "t=" + time.Since(env.t0).String()
	case "queue":
		return env.queueState(a["group"], a["topic"])
	case "dlq":
		return env.deadLetters(a["topic"])
	case "committed":
		tp := env.e.TopicByName(a["topic"])
		var out []string
		for p := range tp.parts {
			off := strconv.FormatInt(env.e.CommittedOffset(a["group"], a["topic"], int32(p)), 10)
			if off == "-1" {
				off = "-"
			}
			out = append(out, fmt.Sprintf("p%d: %s", p, off))
		}
		return strings.Join(out, "\n")
	case "commit":
		done := make(chan error, 1)
		env.e.CommitOffset(a["group"], a["topic"], int32(env.int(a, "partition", 0)), env.int(a, "offset", 0),
			func(err error) { done <- err })
		if err := <-done; err != nil {
			return errLine(err)
		}
	case "assignments":
		return env.assignments()
	case "group":
		return env.describeGroup(a["name"])
	case "retain":
		tp := env.e.TopicByName(a["topic"])
		var out []string
		for _, p := range tp.parts {
			if err := p.log.EnforceRetention(); err != nil {
				return errLine(err)
			}
			out = append(out, fmt.Sprintf("p%d: start=%d", p.id, p.StartOffset()))
		}
		return strings.Join(out, "\n")
	case "groups":
		if gs := env.e.ListGroups(); len(gs) > 0 {
			return strings.Join(gs, " ")
		}
		return "none"
	case "expire-groups":
		if gone := env.e.expireGroups(); len(gone) > 0 {
			return strings.Join(gone, " ")
		}
		return "none"
	case "metrics":
		return fmt.Sprintf("queue_records_expired=%d", env.e.metrics.QueueRecordsExpired.Load())
	default:
		t.Fatalf("line %d: unknown command %q", c.line, fields[0])
	}
	return ""
}

func (env *scriptEnv) open() string {
	e, err := Open(env.opts)
	if err != nil {
		return errLine(err)
	}
	env.e = e
	return ""
}

func (env *scriptEnv) closeEngine() {
	if env.e == nil {
		return
	}
	for name, s := range env.subs {
		s.s.Close()
		delete(env.subs, name)
	}
	if err := env.e.Close(); err != nil {
		env.t.Errorf("close: %v", err)
	}
	env.e = nil
}

func (env *scriptEnv) produce(a scriptArgs) string {
	topic, p := a["topic"], int32(env.int(a, "partition", 0))
	n := int(env.int(a, "n", 1))
	per := int(env.int(a, "batch", int64(n)))
	size := int(env.int(a, "size", 0))
	ts := env.e.opts.Clock().Add(env.dur(a, "ts", 0)).UnixMilli()
	var hdrs []wire.Header
	if a.has("ttl") {
		hdrs = append(hdrs, wire.Header{Key: []byte(wire.HeaderTTL), Value: []byte(strconv.FormatInt(env.dur(a, "ttl", 0).Milliseconds(), 10))})
	}
	if a.has("deliver-in") {
		at := env.e.opts.Clock().Add(env.dur(a, "deliver-in", 0)).UnixMilli()
		hdrs = append(hdrs, wire.Header{Key: []byte(wire.HeaderDeliverAt), Value: []byte(strconv.FormatInt(at, 10))})
	}
	if a.has("priority") {
		hdrs = append(hdrs, wire.Header{Key: []byte(wire.HeaderPriority), Value: []byte(a["priority"])})
	}
	b := wire.NewBatchBuilder(4096)
	first, last := int64(-1), int64(-1)
	for i := 0; i < n; i += per {
		b.Reset()
		if a.has("txn") {
			pid := env.int(a, "txn", 0)
			k := fmt.Sprintf("%s/%d/%d", topic, p, pid)
			b.SetProducer(pid, 0, env.seqs[k])
			env.seqs[k] += int32(min(per, n-i))
		}
		for j := i; j < min(i+per, n); j++ {
			v := fmt.Sprintf("%s/%d/%d", topic, p, j)
			if len(v) < size {
				v += strings.Repeat(".", size-len(v))
			}
			if val, ok := a["value"]; ok {
				v = val
			}
			var key []byte
			if k, ok := a["key"]; ok {
				key = []byte(k)
			}
			recHdrs := hdrs
			if h, ok := a["header"]; ok {
				k, hv, _ := strings.Cut(h, "=")
				recHdrs = append(slices.Clip(hdrs), wire.Header{Key: []byte(k), Value: []byte(hv)})
			}
			b.Append(key, []byte(v), recHdrs, ts)
		}
		batch, err := b.Build()
		if err != nil {
			env.t.Fatal(err)
		}
		if a.has("txn") {
			batch = slices.Clone(batch)
			wire.MarkTransactional(batch)
		}
		base, end, err := env.e.Publish(context.Background(), topic, p, batch, wire.DurabilityWritten)
		if err != nil {
			return errLine(err)
		}
		if first < 0 {
			first = base
		}
		last = end
	}
	return fmt.Sprintf("p%d: %d-%d", p, first, last)
}

func (env *scriptEnv) subscribe(a scriptArgs) string {
	spec := wire.Subscribe{Topic: a["topic"], Partition: -1, Group: a["group"], Start: wire.StartEarliest,
		AckTimeoutMs: uint32(env.dur(a, "ack-timeout", 0).Milliseconds()), MaxDeliveries: uint16(env.int(a, "max-deliveries", 0)),
		MaxAckPending: uint32(env.int(a, "max-ack-pending", 0))}
	if a.has("queue") {
		spec.Mode = wire.ModeQueue
	}
	switch a.str("start", "earliest") {
	case "latest":
		spec.Start = wire.StartLatest
	case "committed":
		spec.Start = wire.StartCommitted
	}
	switch a.str("reset", "earliest") {
	case "latest":
		spec.Reset = wire.ResetLatest
	case "error":
		spec.Reset = wire.ResetError
	}
	spec.Filter = a["filter"]
	if a.has("read-uncommitted") {
		spec.Isolation = wire.ReadUncommitted
	}
	if c, ok := a["cel"]; ok {
		spec.Filter, spec.FilterLang = c, wire.FilterCEL
	}
	var opts SubscribeOptions
	if prefix, ok := a["allow"]; ok {
		opts.MayTopic = func(name string) bool { return strings.HasPrefix(name, prefix) }
	}
	o := &scriptSub{name: a["name"]}
	s, _, err := env.e.SubscribeWith(spec, o, opts)
	if err != nil {
		return errLine(err)
	}
	o.s = s
	env.subs[o.name] = o
	return ""
}

// take readies every cursor of s (the script ignores wake-ups) and takes one delivery.
func (env *scriptEnv) take(o *scriptSub, maxBytes int, values bool) string {
	if o.s.Pattern() && !o.s.Grouped() { // a group member's assignments are the assignments command's
		if _, err := o.s.ApplyAssignment(); err != nil {
			return errLine(err)
		}
	}
	o.s.ReadyAll()
	o.s.AddCredit(1 << 30)
	d, ok, err := o.s.Next(maxBytes)
	if err != nil {
		return errLine(err)
	}
	if !ok {
		return "nothing"
	}
	defer d.Release()
	var it wire.RecordIter
	var r wire.Record
	line := fmt.Sprintf("p%d:", d.Partition.ID())
	if o.s.Pattern() {
		line = d.Partition.Topic().Name() + "/" + line
	}
	for rest := d.Batches(); len(rest) > 0; {
		h, err := it.Reset(rest)
		if err != nil {
			return errLine(err)
		}
		rest = rest[h.Size():]
		for it.Next(&r) {
			line += " " + strconv.FormatInt(r.Offset, 10)
			if values {
				line += "=" + string(r.Value)
			}
		}
	}
	return line
}

// since renders a unix-nanosecond deadline as the time since the script opened its engine.
func (env *scriptEnv) since(ns int64) string {
	return time.Unix(0, ns).Sub(env.t0).String()
}

func (env *scriptEnv) queueState(group, topic string) string {
	qt := env.e.queues
	qt.mu.Lock()
	q := qt.queues[queueKey{group, topic}]
	qt.mu.Unlock()
	if q == nil {
		return "no queue"
	}
	names := map[*member]string{}
	q.mu.Lock()
	for s, m := range q.members {
		for name, o := range env.subs {
			if o.s == s {
				names[m] = name
			}
		}
	}
	q.mu.Unlock()
	var out []string
	for _, qp := range q.parts {
		qp.mu.Lock()
		var pend, due, dead []string
		for _, off := range slices.Sorted(maps.Keys(qp.pending)) {
			pd := qp.pending[off]
			pend = appendRun(pend, off, fmt.Sprintf("%s#%d@%s", names[pd.m], pd.deliveries, env.since(pd.deadline)))
		}
		for _, off := range slices.Sorted(maps.Keys(qp.due)) {
			due = appendRun(due, off, fmt.Sprintf("#%d", qp.due[off].deliveries))
		}
		for _, off := range slices.Sorted(maps.Keys(qp.dead)) {
			dl := qp.dead[off]
			dead = append(dead, fmt.Sprintf("%d-%d#%d", dl.first, dl.last, dl.deliveries))
		}
		out = append(out, fmt.Sprintf("p%d: floor=%d next=%d pending=[%s] due=[%s] dead=[%s]", qp.p.id, qp.floor, qp.next,
			strings.Join(pend, " "), strings.Join(due, " "), strings.Join(dead, " ")))
		qp.mu.Unlock()
	}
	return strings.Join(out, "\n")
}

// appendRun appends offset off, described by what, to runs: "first-last:what" joins the last run
// when off follows it with the same description, else "off:what" starts a new one.
func appendRun(runs []string, off int64, what string) []string {
	if n := len(runs); n > 0 {
		first, rest, _ := strings.Cut(runs[n-1], ":")
		lo, hi, ok := strings.Cut(first, "-")
		if !ok {
			hi = lo
		}
		if last, err := strconv.ParseInt(hi, 10, 64); err == nil && last+1 == off && rest == what {
			runs[n-1] = fmt.Sprintf("%s-%d:%s", lo, off, what)
			return runs
		}
	}
	return append(runs, fmt.Sprintf("%d:%s", off, what))
}

func (env *scriptEnv) deadLetters(topic string) string {
	tp := env.e.TopicByName(DeadLetterTopic(topic))
	if tp == nil {
		return "no dead-letter topic"
	}
	p := tp.Partition(0)
	var out []string
	var it wire.RecordIter
	var r wire.Record
	for off := p.StartOffset(); off < p.NextOffset(); {
		v, err := p.log.Read(off, 1<<20)
		if err != nil {
			return errLine(err)
		}
		for rest := v.Data; len(rest) > 0; {
			h, err := it.Reset(rest)
			if err != nil {
				v.Release()
				return errLine(err)
			}
			rest = rest[h.Size():]
			for it.Next(&r) {
				line := fmt.Sprintf("%d: offset=%s", r.Offset, header(r, HeaderDLQOffset))
				if last := header(r, HeaderDLQLastOffset); last != "" {
					line += " last=" + last
				}
				line += fmt.Sprintf(" deliveries=%s reason=%q", header(r, HeaderDLQDeliveries), header(r, HeaderDLQReason))
				if reason := header(r, HeaderDLQReason); reason == DeadLetterReasonMaxDeliveries || reason == DeadLetterReasonExpired {
					line += fmt.Sprintf(" value=%q", r.Value)
				}
				out = append(out, line)
				off = r.Offset + 1
			}
		}
		v.Release()
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "\n")
}

func (env *scriptEnv) assignments() string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(env.subs)) {
		o := env.subs[name]
		told := o.told.Load()
		if !o.s.Grouped() || told == o.applied {
			continue
		}
		o.applied = told
		a, err := o.s.ApplyAssignment()
		line := fmt.Sprintf("%s gen=%d:", name, a.Generation)
		for _, po := range a.Partitions {
			line += fmt.Sprintf(" %d@%d", po.Partition, po.Offset)
		}
		for _, ta := range a.Topics {
			for _, po := range ta.Partitions {
				line += fmt.Sprintf(" %s/%d@%d", ta.Topic, po.Partition, po.Offset)
			}
		}
		if err != nil {
			line += " " + errLine(err)
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		return "none told"
	}
	return strings.Join(out, "\n")
}

func (env *scriptEnv) describeGroup(name string) string {
	info, err := env.e.DescribeGroup(name)
	if err != nil {
		return errLine(err)
	}
	names := map[string]string{}
	pattern := map[string]bool{}
	gt := env.e.groups
	gt.mu.Lock()
	for sname, o := range env.subs {
		if o.s.member != nil {
			names[o.s.member.id] = sname
			pattern[o.s.member.id] = o.s.Pattern()
		}
	}
	gt.mu.Unlock()
	line := fmt.Sprintf("gen=%d", info.Generation)
	for _, m := range info.Members {
		if pattern[m.Member] {
			line += fmt.Sprintf(" %s:%s%v", names[m.Member], m.Topic, m.Partitions)
			continue
		}
		line += fmt.Sprintf(" %s%v", names[m.Member], m.Partitions)
	}
	return line
}
