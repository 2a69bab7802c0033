package kafka

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// randomFetch builds a Fetch request of version v with random topics, partitions, forgotten
// topics, rack and tagged fields (as the version has them).
func randomFetch(r *rand.Rand, v int16) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(v)
	req.MaxWaitMillis, req.MinBytes, req.MaxBytes = r.Int32(), r.Int32(), r.Int32()
	req.IsolationLevel = int8(r.IntN(2))
	req.SessionID, req.SessionEpoch = r.Int32N(3), r.Int32()
	for range r.IntN(4) {
		t := kmsg.NewFetchRequestTopic()
		t.Topic = string(bytes.Repeat([]byte{byte('a' + r.IntN(26))}, r.IntN(12)))
		for range r.IntN(4) {
			p := kmsg.NewFetchRequestTopicPartition()
			p.Partition, p.CurrentLeaderEpoch, p.FetchOffset = r.Int32N(8), r.Int32(), r.Int64()
			p.LastFetchedEpoch, p.LogStartOffset, p.PartitionMaxBytes = r.Int32(), r.Int64(), r.Int32()
			if v >= 12 && r.IntN(3) == 0 {
				p.UnknownTags.Set(5, []byte{9})
			}
			t.Partitions = append(t.Partitions, p)
		}
		req.Topics = append(req.Topics, t)
	}
	for range r.IntN(3) {
		f := kmsg.NewFetchRequestForgottenTopic()
		f.Topic = "gone"
		for range r.IntN(3) {
			f.Partitions = append(f.Partitions, r.Int32())
		}
		req.ForgottenTopics = append(req.ForgottenTopics, f)
	}
	req.Rack = []string{"", "rack-1"}[r.IntN(2)]
	if v >= 12 && r.IntN(3) == 0 {
		req.ClusterID = kmsg.StringPtr("cluster")
	}
	return req
}

// TestFetchDecodeMatchesKmsg: the listener's Fetch walker reads every version served (4-12) as
// kmsg does, into one reused request: max wait, min and max bytes, session id, topic names,
// partitions, fetch offsets and partition max bytes; the names stay valid once the frame is gone;
// every prefix of a request is refused exactly when kmsg refuses it.
func TestFetchDecodeMatchesKmsg(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var got fetchReq
	for v := int16(4); v <= 12; v++ {
		for range 300 {
			want := randomFetch(r, v)
			body := want.AppendTo(nil)
			// kmsg's reading of its own encoding is the reference (fields a version lacks read as
			// their defaults).
			ref := kmsg.NewPtrFetchRequest()
			ref.SetVersion(v)
			if err := ref.ReadFrom(body); err != nil {
				t.Fatal(err)
			}
			got.version = v
			if err := got.decode(body); err != nil {
				t.Fatalf("v%d: %v", v, err)
			}
			clear(body) // the frame's buffer is reused: the request must not depend on it
			sid := int32(0)
			if v >= 7 {
				sid = ref.SessionID
			}
			if got.maxWaitMillis != ref.MaxWaitMillis || got.minBytes != ref.MinBytes || got.maxBytes != ref.MaxBytes ||
				got.sessionID != sid || len(got.topics) != len(ref.Topics) {
				t.Fatalf("v%d: header %+v, want %+v", v, got, ref)
			}
			for i, wt := range ref.Topics {
				gt := got.topics[i]
				if gt.name != wt.Topic || len(gt.parts) != len(wt.Partitions) {
					t.Fatalf("v%d topic %d: %q with %d partitions, want %q with %d", v, i, gt.name, len(gt.parts), wt.Topic, len(wt.Partitions))
				}
				for j, wp := range wt.Partitions {
					gp := gt.parts[j]
					if gp.id != wp.Partition || gp.offset != wp.FetchOffset || gp.maxBytes != wp.PartitionMaxBytes {
						t.Fatalf("v%d topic %d partition %d: %+v, want %+v", v, i, j, gp, wp)
					}
				}
			}
			body = want.AppendTo(body[:0])
			for cut := range len(body) {
				prefix := bytes.Clone(body[:cut]) // exact capacity: a read past the end panics
				k := kmsg.NewPtrFetchRequest()
				k.SetVersion(v)
				kerr := k.ReadFrom(prefix)
				got.version = v
				if err := got.decode(prefix); (err == nil) != (kerr == nil) {
					t.Fatalf("v%d cut at %d of %d: walker %v, kmsg %v", v, cut, len(body), err, kerr)
				}
			}
		}
	}
}

// TestFetchAllocs: a Fetch request, decoded, served from the mapping and answered on a connection
// that has seen its shape, allocates nothing (the request, its wait state and the answer's
// scratch are reused per connection).
func TestFetchAllocs(t *testing.T) {
	s := fuzzServer(t)
	frame := appendRequest(nil, 1, fetchRequest(12, "t", 0, 0, 1, 1<<20, 1<<20))
	batch := len(testBatch())
	m := &memTransport{}
	c := newConn(s, m)
	defer c.close()
	run := func() {
		m.in = frame
		m.out.Reset()
		c.onTraffic()
		if m.out.Len() < batch || c.dead || binary.BigEndian.Uint32(m.out.Bytes()[4:]) != 1 {
			t.Fatal("no answer")
		}
	}
	run() // the connection learns the request's shape
	if n := testing.AllocsPerRun(50, run); n != 0 {
		t.Fatalf("%v allocations per Fetch request, want 0", n)
	}
}
