package wire

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// listCase is one u16-counted list kind: build returns a body whose list named field holds n
// entries, check compares a decoded body with the one encoded.
type listCase struct {
	field string
	build func(n int) body
	check func(t *testing.T, want, got body)
}

func partitionOffsetList(n int) []PartitionOffset {
	ps := make([]PartitionOffset, n)
	for i := range ps {
		ps[i] = PartitionOffset{Partition: int32(i % 4096), Offset: int64(i) << 20}
	}
	return ps
}

func listCases() []listCase {
	return []listCase{{
		field: "SubscribeReply.Starts",
		build: func(n int) body { return &SubscribeReply{SubID: 7, Starts: partitionOffsetList(n)} },
		check: func(t *testing.T, want, got body) {
			w, g := want.(*SubscribeReply), got.(*SubscribeReply)
			if g.SubID != w.SubID || !slices.Equal(g.Starts, w.Starts) {
				t.Errorf("SubscribeReply: sub %d, %d starts; want %d, %d", g.SubID, len(g.Starts), w.SubID, len(w.Starts))
			}
		},
	}, {
		field: "Assign.Partitions",
		build: func(n int) body { return &Assign{SubID: 7, Generation: 3, Partitions: partitionOffsetList(n)} },
		check: func(t *testing.T, want, got body) {
			w, g := want.(*Assign), got.(*Assign)
			if g.SubID != w.SubID || g.Generation != w.Generation || !slices.Equal(g.Partitions, w.Partitions) {
				t.Errorf("Assign: sub %d gen %d, %d partitions; want %d %d, %d", g.SubID, g.Generation, len(g.Partitions), w.SubID, w.Generation, len(w.Partitions))
			}
		},
	}, {
		field: "Ack offsets",
		build: func(n int) body {
			offs := make([]int64, n)
			for i := range offs {
				offs[i] = int64(i) * 3
			}
			return &ackBody{Ack: Ack{SubID: 7, Partition: 2, DelayMs: 10}, Offsets: offs}
		},
		check: func(t *testing.T, want, got body) {
			w, g := want.(*ackBody), got.(*ackBody)
			if g.SubID != w.SubID || g.Partition != w.Partition || g.DelayMs != w.DelayMs || !slices.Equal(g.Offsets, w.Offsets) {
				t.Errorf("Ack: sub %d partition %d delay %d, %d offsets; want %d %d %d, %d", g.SubID, g.Partition, g.DelayMs, len(g.Offsets), w.SubID, w.Partition, w.DelayMs, len(w.Offsets))
			}
		},
	}, {
		field: "GroupInfo.Members",
		build: func(n int) body {
			gi := &GroupInfo{Name: "g", Generation: 5, Members: make([]GroupMember, n), Offsets: []GroupOffset{{Topic: "t", Partition: 1, Committed: 2, End: 3}}}
			for i := range gi.Members {
				gi.Members[i] = GroupMember{Member: "m", Topic: "t", Partitions: []int32{int32(i % 4096)}, ClientID: "c", Addr: "127.0.0.1:1"}
			}
			return gi
		},
		check: func(t *testing.T, want, got body) {
			w, g := want.(*GroupInfo), got.(*GroupInfo)
			same := g.Name == w.Name && g.Generation == w.Generation && len(g.Members) == len(w.Members) && slices.Equal(g.Offsets, w.Offsets)
			for i := 0; same && i < len(g.Members); i++ {
				a, b := g.Members[i], w.Members[i]
				same = a.Member == b.Member && a.Topic == b.Topic && slices.Equal(a.Partitions, b.Partitions) && a.ClientID == b.ClientID && a.Addr == b.Addr
			}
			if !same {
				t.Errorf("GroupInfo: %d members, %d offsets; want %d, %d, all alike", len(g.Members), len(g.Offsets), len(w.Members), len(w.Offsets))
			}
		},
	}, {
		field: "GroupInfo.Members[].Partitions",
		build: func(n int) body {
			ps := make([]int32, n)
			for i := range ps {
				ps[i] = int32(i)
			}
			return &GroupInfo{Name: "g", Generation: 5, Members: []GroupMember{
				{Member: "a", Topic: "t", Partitions: []int32{0}},
				{Member: "b", Topic: "t", Partitions: ps},
			}}
		},
		check: func(t *testing.T, want, got body) {
			w, g := want.(*GroupInfo), got.(*GroupInfo)
			if len(g.Members) != 2 || !slices.Equal(g.Members[0].Partitions, w.Members[0].Partitions) || !slices.Equal(g.Members[1].Partitions, w.Members[1].Partitions) {
				t.Errorf("GroupInfo: %d members, want 2 with their partitions intact", len(g.Members))
			}
		},
	}}
}

// TestListOverLimitRefused: a list with more entries than its u16 count can say (65,536) must not
// reach the peer with a count that wrapped (to 0, so the peer reads a different message):
// AppendMessage refuses it with ErrFieldTooLong naming the field and the count, and leaves dst as it
// was.
func TestListOverLimitRefused(t *testing.T) {
	for _, c := range listCases() {
		out, err := AppendMessage([]byte("prefix"), c.build(0x10000))
		if !errors.Is(err, ErrFieldTooLong) {
			t.Errorf("%s: err %v, want ErrFieldTooLong", c.field, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.field+" holds 65536 entries") || !strings.Contains(msg, "at most 65535") {
			t.Errorf("%s: error %q does not name the field, the count and the limit", c.field, msg)
		}
		if string(out) != "prefix" {
			t.Errorf("%s: dst became %d bytes, want it unchanged", c.field, len(out))
		}
	}
}

// TestListAtLimitRoundTrip: lists of exactly 65,535 entries encode and decode intact.
func TestListAtLimitRoundTrip(t *testing.T) {
	for _, c := range listCases() {
		m := c.build(0xffff)
		b, err := AppendMessage(nil, m)
		if err != nil {
			t.Errorf("%s: %v", c.field, err)
			continue
		}
		got := c.build(0) // the same type; Decode overwrites every field the check reads
		if err := got.Decode(b); err != nil {
			t.Errorf("%s: decode: %v", c.field, err)
			continue
		}
		c.check(t, m, got)
	}
}
