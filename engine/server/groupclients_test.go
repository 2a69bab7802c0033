package server

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// helloAs says hello on r announcing version and clientID, and returns the version the broker
// answered with.
func (r *rawConn) helloAs(version uint16, clientID string) uint16 {
	r.t.Helper()
	var hr wire.HelloReply
	r.expectReply(r.send(wire.OpHello, 0, &wire.Hello{Version: version, MaxFrame: wire.DefaultMaxFrame, ClientID: clientID}), &hr)
	return hr.Version
}

// groupOfTwo starts a broker with topic t (2 partitions) and two members of group g on it, from
// clients named alpha and beta; it returns the broker and the two members' connections.
func groupOfTwo(t *testing.T) (*Server, [2]*rawConn) {
	t.Helper()
	s, e := startServer(t, nil)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	var members [2]*rawConn
	for i, id := range []string{"alpha", "beta"} {
		members[i] = dial(t, s)
		if v := members[i].helloAs(wire.ProtocolVersion, id); v != wire.ProtocolVersion {
			t.Fatalf("%s: hello answered version %d", id, v)
		}
		members[i].must(wire.OpSubscribe, &wire.Subscribe{SubID: 1, Topic: "t", Partition: -1, Group: "g", Credit: 1 << 20})
	}
	return s, members
}

// TestDescribeGroupMemberClients (issue 16): DescribeGroup names each member's client id (from its
// connection's Hello) and its peer address, the member connection's own ip:port on 127.0.0.1.
func TestDescribeGroupMemberClients(t *testing.T) {
	s, members := groupOfTwo(t)
	admin := dial(t, s)
	admin.helloAs(wire.ProtocolVersion, "admin")
	var gi wire.GroupInfo
	if err := gi.Decode(admin.must(wire.OpDescribeGrp, &wire.Name{Name: "g"})); err != nil {
		t.Fatal(err)
	}
	if len(gi.Members) != 2 {
		t.Fatalf("members %+v, want 2", gi.Members)
	}
	for i, id := range []string{"alpha", "beta"} { // join order
		m, want := gi.Members[i], members[i].c.LocalAddr().String()
		if m.ClientID != id || m.Addr != want {
			t.Errorf("member %s: client id %q addr %q, want %q %q", m.Member, m.ClientID, m.Addr, id, want)
		}
	}
}

// TestDescribeGroupVersion1Client: a client announcing protocol version 1 is answered with version
// 1, and its DescribeGroup reply is the version-1 body (no client section), which a version-1
// decoder reads; it differs from the version-2 body by exactly that section.
func TestDescribeGroupVersion1Client(t *testing.T) {
	s, _ := groupOfTwo(t)
	old := dial(t, s)
	if v := old.helloAs(1, "old"); v != 1 {
		t.Fatalf("hello with version 1 answered version %d", v)
	}
	v1 := old.must(wire.OpDescribeGrp, &wire.Name{Name: "g"})
	cur := dial(t, s)
	cur.helloAs(wire.ProtocolVersion, "new")
	v2 := cur.must(wire.OpDescribeGrp, &wire.Name{Name: "g"})

	var gi wire.GroupInfo
	if err := gi.Decode(v2); err != nil {
		t.Fatal(err)
	}
	if len(gi.Members) != 2 || gi.Members[0].ClientID != "alpha" {
		t.Fatalf("version-2 description %+v", gi.Members)
	}
	gi.DropClients()
	if want := gi.Append(nil); !bytes.Equal(v1, want) {
		t.Fatalf("version-1 body:\n got %x\nwant %x", v1, want)
	}
	if len(v2) <= len(v1) || !bytes.Equal(v2[:len(v1)], v1) {
		t.Fatalf("the version-2 body does not extend the version-1 body:\nv1 %x\nv2 %x", v1, v2)
	}
	// The version-1 layout, read field by field: name, generation, 2 members (member, topic,
	// partitions), offsets; and nothing after.
	rest := v1
	str16 := func() string {
		n := int(binary.BigEndian.Uint16(rest))
		s := string(rest[2 : 2+n])
		rest = rest[2+n:]
		return s
	}
	if str16() != "g" {
		t.Fatal("name")
	}
	rest = rest[4:] // generation
	if n := int(rest[0])<<8 | int(rest[1]); n != 2 {
		t.Fatalf("%d members", n)
	}
	rest = rest[2:]
	for range 2 {
		str16()
		if str16() != "t" {
			t.Fatal("member topic")
		}
		k := int(rest[0])<<8 | int(rest[1])
		rest = rest[2+4*k:]
	}
	n := int(binary.BigEndian.Uint32(rest))
	rest = rest[4:]
	for range n {
		str16()
		rest = rest[4+8+8:] // partition, committed, end
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes after the offsets: %x", len(rest), rest)
	}
}
