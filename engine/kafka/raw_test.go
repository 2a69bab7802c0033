package kafka

import (
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawDial opens a plain TCP connection to the listener, for frames no client library would send.
func rawDial(t testing.TB, s *Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// appendRequest appends a whole request frame: header v1 (v2 with tags for flexible versions) and
// req's body.
func appendRequest(dst []byte, corr int32, req kmsg.Request) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(req.Key()))
	dst = binary.BigEndian.AppendUint16(dst, uint16(req.GetVersion()))
	dst = binary.BigEndian.AppendUint32(dst, uint32(corr))
	dst = binary.BigEndian.AppendUint16(dst, 4)
	dst = append(dst, "test"...)
	if req.IsFlexible() {
		dst = append(dst, 0)
	}
	dst = req.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// readFrame reads one response frame's bytes after the size.
func readFrame(t testing.TB, c net.Conn) []byte {
	t.Helper()
	var hb [4]byte
	if _, err := io.ReadFull(c, hb[:]); err != nil {
		t.Fatalf("read response: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint32(hb[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return b
}

// expectClosed fails unless the broker closes c without answering.
func expectClosed(t testing.TB, c net.Conn) {
	t.Helper()
	var b [1]byte
	n, err := c.Read(b[:])
	if n != 0 || !(errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)) {
		t.Fatalf("connection not closed: read %d bytes, %v", n, err)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// apiVersionsOK checks that a fresh connection is served: the listener survived what the test sent
// on another.
func apiVersionsOK(t testing.TB, s *Server) {
	t.Helper()
	c := rawDial(t, s)
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(3)
	req.ClientSoftwareName, req.ClientSoftwareVersion = "raw", "1"
	if _, err := c.Write(appendRequest(nil, 7, req)); err != nil {
		t.Fatal(err)
	}
	b := readFrame(t, c)
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(3)
	if int32(binary.BigEndian.Uint32(b)) != 7 {
		t.Fatalf("correlation id %d", binary.BigEndian.Uint32(b))
	}
	if err := resp.ReadFrom(b[4:]); err != nil || resp.ErrorCode != 0 || len(resp.ApiKeys) == 0 {
		t.Fatalf("ApiVersions: %v, code %d, %d keys", err, resp.ErrorCode, len(resp.ApiKeys))
	}
}

// TestApiVersionsAdvertisesServed: ApiVersions lists exactly the served table.
func TestApiVersionsAdvertisesServed(t *testing.T) {
	s, _ := startBroker(t, nil)
	c := rawDial(t, s)
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(0)
	if _, err := c.Write(appendRequest(nil, 1, req)); err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	if err := resp.ReadFrom(readFrame(t, c)[4:]); err != nil {
		t.Fatal(err)
	}
	adv := s.advertised()
	if len(resp.ApiKeys) != len(adv) {
		t.Fatalf("%d keys advertised, %d served", len(resp.ApiKeys), len(adv))
	}
	for i, k := range resp.ApiKeys {
		if a := adv[i]; k.ApiKey != a.key || k.MinVersion != a.min || k.MaxVersion != a.max {
			t.Fatalf("key %d: %d-%d, served %d %d-%d", k.ApiKey, k.MinVersion, k.MaxVersion, a.key, a.min, a.max)
		}
	}
}

// TestApiVersionsUnsupportedVersion: ApiVersions above the versions served is answered in v0 with
// UNSUPPORTED_VERSION and the list (Kafka's fallback), and the connection stays open.
func TestApiVersionsUnsupportedVersion(t *testing.T) {
	s, _ := startBroker(t, nil)
	c := rawDial(t, s)
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(3)
	frame := appendRequest(nil, 9, req)
	binary.BigEndian.PutUint16(frame[6:], 99) // version 99
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	b := readFrame(t, c)
	resp := kmsg.NewPtrApiVersionsResponse() // v0
	if err := resp.ReadFrom(b[4:]); err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != errUnsupportedVersion || len(resp.ApiKeys) != len(s.advertised()) {
		t.Fatalf("code %d, %d keys", resp.ErrorCode, len(resp.ApiKeys))
	}
	// The same connection goes on.
	req.SetVersion(3)
	if _, err := c.Write(appendRequest(nil, 10, req)); err != nil {
		t.Fatal(err)
	}
	if b := readFrame(t, c); binary.BigEndian.Uint32(b) != 10 {
		t.Fatalf("correlation id %d", binary.BigEndian.Uint32(b))
	}
}

// TestBadFramesCloseOnlyTheirConnection: truncated, oversized, random frames, unknown API keys and
// unsupported versions close the connection that sent them (Kafka has no answer for a request it
// cannot parse) and nothing else.
func TestBadFramesCloseOnlyTheirConnection(t *testing.T) {
	s, _ := startBroker(t, func(o *Options) { o.MaxFrame = 1 << 20 })
	bystander := rawDial(t, s)
	meta := kmsg.NewPtrMetadataRequest()
	meta.SetVersion(9)
	produce := kmsg.NewPtrProduceRequest()
	produce.SetVersion(7)

	unknownKey := appendRequest(nil, 1, meta)
	binary.BigEndian.PutUint16(unknownKey[4:], 999)
	badVersion := appendRequest(nil, 1, produce)
	binary.BigEndian.PutUint16(badVersion[6:], 2) // Produce v2 carries no RecordBatch v2: not served
	tooNew := appendRequest(nil, 1, meta)
	binary.BigEndian.PutUint16(tooNew[6:], 99)
	badBody := appendRequest(nil, 1, meta)
	badBody = append(badBody[:len(badBody)-1], 0xff, 0xff, 0xff) // a topic array that never ends
	binary.BigEndian.PutUint32(badBody, uint32(len(badBody)-4))
	oversized := binary.BigEndian.AppendUint32(nil, 2<<20)
	negative := binary.BigEndian.AppendUint32(nil, 0xfffffff0)
	shortHeader := []byte{0, 0, 0, 3, 0, 18, 0}
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 300)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	binary.BigEndian.PutUint32(random, 296)
	binary.BigEndian.PutUint16(random[4:], 500) // an unknown key, whatever follows

	for name, frame := range map[string][]byte{
		"unknown api key": unknownKey, "unsupported version": badVersion, "version too new": tooNew,
		"malformed body": badBody, "oversized": oversized, "negative size": negative,
		"short header": shortHeader, "random": random,
	} {
		t.Run(name, func(t *testing.T) {
			c := rawDial(t, s)
			if _, err := c.Write(frame); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c)
			apiVersionsOK(t, s)
		})
	}
	t.Run("truncated", func(t *testing.T) {
		c := rawDial(t, s)
		frame := appendRequest(nil, 1, meta)
		if _, err := c.Write(frame[:len(frame)-3]); err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		expectClosed(t, c) // no answer to half a request; the client's close is seen
		apiVersionsOK(t, s)
	})
	// The bystander connection was served through all of it.
	req := kmsg.NewPtrApiVersionsRequest()
	if _, err := bystander.Write(appendRequest(nil, 3, req)); err != nil {
		t.Fatal(err)
	}
	if b := readFrame(t, bystander); binary.BigEndian.Uint32(b) != 3 {
		t.Fatal("bystander not answered")
	}
}

// TestUnservedAPIAnswered: a request for an API Kafka defines but this broker does not serve, whose
// answer has a top-level error code, is answered UNSUPPORTED_VERSION and the connection goes on.
func TestUnservedAPIAnswered(t *testing.T) {
	s, _ := startBroker(t, nil)
	c := rawDial(t, s)
	dc := kmsg.NewPtrDescribeClusterRequest() // key 60, not served
	dc.SetVersion(0)
	if r := roundTrip(t, c, 1, dc).(*kmsg.DescribeClusterResponse); r.ErrorCode != errUnsupportedVersion {
		t.Fatalf("DescribeCluster: code %d", r.ErrorCode)
	}
	api := kmsg.NewPtrApiVersionsRequest()
	roundTrip(t, c, 2, api)

	// FindCoordinator v5 (above the versions served) has no top-level error code to carry the
	// refusal: an answer without one would read as "no coordinator", so the connection closes.
	find := kmsg.NewPtrFindCoordinatorRequest()
	find.SetVersion(5)
	find.CoordinatorKeys = []string{"g"}
	if _, err := c.Write(appendRequest(nil, 3, find)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	apiVersionsOK(t, s)
}
