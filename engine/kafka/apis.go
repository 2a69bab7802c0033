package kafka

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"reflect"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/engine/auth"
)

// Request framing (Kafka's, frozen by it):
//
//	request:  size int32 | api_key int16 | api_version int16 | correlation_id int32 |
//	          client_id nullable string (int16 length, -1 null) | [tagged fields: flexible versions] | body
//	response: size int32 | correlation_id int32 | [tagged fields: flexible versions, not ApiVersions] | body
//
// size counts the bytes after itself. The body's schema is kmsg's for (api_key, api_version).

// API keys served here (Kafka's numbering, frozen by it).
const (
	keyProduce          int16 = 0
	keyFetch            int16 = 1
	keyListOffsets      int16 = 2
	keyMetadata         int16 = 3
	keyFindCoordinator  int16 = 10
	keySASLHandshake    int16 = 17
	keyApiVersions      int16 = 18
	keyCreateTopics     int16 = 19
	keyDeleteTopics     int16 = 20
	keyInitProducerID   int16 = 22
	keyAddPartitionsTxn int16 = 24
	keyAddOffsetsToTxn  int16 = 25
	keyEndTxn           int16 = 26
	keyTxnOffsetCommit  int16 = 28
	keyDescribeConfigs  int16 = 32
	keySASLAuthenticate int16 = 36
	keyCreatePartitions int16 = 37
)

// apiRange is the versions of one API served.
type apiRange struct{ key, min, max int16 }

// served lists the APIs this package answers and their versions, advertised in ApiVersions exactly
// so. Produce starts at 3 and Fetch at 4: the first versions that carry RecordBatch v2 (magic 2),
// the only record format stored. docs/kafka.md explains each range.
var served = []apiRange{
	{keyProduce, 3, 9},
	{keyFetch, 4, 12},
	{keyListOffsets, 1, 6},
	{keyMetadata, 0, 12},
	{keyFindCoordinator, 0, 4},
	{keySASLHandshake, 0, 1},
	{keyApiVersions, 0, 3},
	{keyCreateTopics, 0, 7},
	{keyDeleteTopics, 0, 5},
	{keyInitProducerID, 0, 4},
	{keyAddPartitionsTxn, 0, 3},
	{keyAddOffsetsToTxn, 0, 3},
	{keyEndTxn, 0, 3},
	{keyTxnOffsetCommit, 0, 3},
	{keyDescribeConfigs, 0, 4},
	{keySASLAuthenticate, 0, 2},
	{keyCreatePartitions, 0, 3},
}

// groupServed lists the versions of the group coordinator's APIs (groups.go); an API is
// advertised and dispatched only while coordinator.handles reports it.
var groupServed = []apiRange{
	{8, 0, 8},  // OffsetCommit
	{9, 0, 7},  // OffsetFetch
	{11, 0, 9}, // JoinGroup
	{12, 0, 4}, // Heartbeat
	{13, 0, 5}, // LeaveGroup
	{14, 0, 5}, // SyncGroup
	{15, 0, 5}, // DescribeGroups
	{16, 0, 4}, // ListGroups
	{42, 0, 2}, // DeleteGroups
}

// versions returns the versions served for key, from this package or the coordinator.
func (s *Server) versions(key int16) (apiRange, bool) {
	for _, r := range served {
		if r.key == key {
			return r, true
		}
	}
	if s.coord.handles(key) {
		for _, r := range groupServed {
			if r.key == key {
				return r, true
			}
		}
	}
	return apiRange{}, false
}

// advertised is every API and version range served, sorted by key.
func (s *Server) advertised() []apiRange {
	out := slices.Clone(served)
	for _, r := range groupServed {
		if s.coord.handles(r.key) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b apiRange) int { return int(a.key) - int(b.key) })
	return out
}

// header is a parsed request header; clientID aliases the frame.
type header struct {
	key, version int16
	corr         int32
	clientID     []byte
}

// parseHeader reads the request header from frame (the bytes after the size) and returns it with
// the body. flexible says whether the request's version has a tagged-field section in its header;
// it is asked once key and version are known. ok is false for a header that does not parse.
func parseHeader(frame []byte, flexible func(key, version int16) bool) (h header, body []byte, ok bool) {
	if len(frame) < 10 {
		return h, nil, false
	}
	h.key = int16(binary.BigEndian.Uint16(frame))
	h.version = int16(binary.BigEndian.Uint16(frame[2:]))
	h.corr = int32(binary.BigEndian.Uint32(frame[4:]))
	n := int(int16(binary.BigEndian.Uint16(frame[8:])))
	rest := frame[10:]
	if n >= 0 {
		if n > len(rest) {
			return h, nil, false
		}
		h.clientID, rest = rest[:n], rest[n:]
	} else if n != -1 {
		return h, nil, false
	}
	if flexible(h.key, h.version) {
		var ok bool
		if rest, ok = skipTags(rest); !ok {
			return h, nil, false
		}
	}
	return h, rest, true
}

// skipTags skips a tagged-field section: uvarint count, then per field uvarint tag, uvarint size
// and size bytes.
func skipTags(b []byte) ([]byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, false
	}
	b = b[k:]
	for range n {
		if _, k = binary.Uvarint(b); k <= 0 {
			return nil, false
		}
		b = b[k:]
		size, k := binary.Uvarint(b)
		if k <= 0 || size > uint64(len(b)-k) {
			return nil, false
		}
		b = b[k+int(size):]
	}
	return b, true
}

// flexibleVersion reports whether (key, version) is a flexible version, whose request header has
// tagged fields. Produce and Fetch are answered without allocating; the rest ask kmsg.
func flexibleVersion(key, version int16) bool {
	switch key {
	case keyProduce:
		return version >= 9
	case keyFetch:
		return version >= 12
	}
	req := kmsg.RequestForKey(key)
	if req == nil {
		return false
	}
	req.SetVersion(version)
	return req.IsFlexible()
}

// appendResponse appends a whole response frame for corr carrying resp.
func appendResponse(dst []byte, corr int32, resp kmsg.Response) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(corr))
	if resp.IsFlexible() && resp.Key() != keyApiVersions { // ApiVersions answers with header v0 always
		dst = append(dst, 0)
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// reply answers the request corr with resp, now: straight into the turn's output when nothing
// waits before it, else into a slot of its own.
func (c *conn) reply(corr int32, resp kmsg.Response) {
	c.srv.stats.countErrors(resp)
	if c.q.n == 0 {
		c.out = appendResponse(c.out, corr, resp)
		return
	}
	_, s := c.q.push()
	s.buf, s.ready = appendResponse(nil, corr, resp), true
}

// later takes a slot for request corr and runs fn on its own goroutine: for work that touches the
// file system (creating, deleting topics, searching by timestamp) or is slow (SCRAM). fn's answer
// fills the slot; apply, when fn returns one, runs on the loop first.
func (c *conn) later(corr int32, fn func() (kmsg.Response, func(*conn), bool)) {
	seq, _ := c.q.push()
	go func() {
		resp, apply, closeAfter := fn()
		var buf []byte
		if resp != nil {
			c.srv.stats.countErrors(resp)
			buf = appendResponse(nil, corr, resp)
		}
		c.complete(asyncDone{seq: seq, buf: buf, apply: apply, close: closeAfter})
	}()
}

// handleFrame serves one request. frame aliases gnet's buffer: nothing may keep it past the call.
func (c *conn) handleFrame(frame []byte) {
	if c.saslRaw {
		c.saslRawStep(frame)
		return
	}
	h, body, ok := parseHeader(frame, flexibleVersion)
	if !ok {
		c.protocolError("malformed request header")
		return
	}
	c.srv.stats.request(h.key)
	if h.key == keyApiVersions {
		c.apiVersions(h, body)
		return
	}
	if !c.authed && h.key != keySASLHandshake && h.key != keySASLAuthenticate {
		c.protocolError("request before authentication", "api_key", h.key)
		return
	}
	if r, ok := c.srv.versions(h.key); !ok || h.version < r.min || h.version > r.max {
		c.unsupported(h)
		return
	}
	if h.key == keyProduce {
		c.prodReq.version = h.version
		if err := c.prodReq.decode(body); err != nil {
			c.protocolError("malformed produce", "err", err)
			return
		}
		c.produce(h)
		return
	}
	if h.key == keyFetch {
		c.fetch(h, body)
		return
	}
	req := kmsg.RequestForKey(h.key)
	req.SetVersion(h.version)
	// kmsg copies strings but leaves byte fields (SASL bytes, group protocol metadata and
	// assignments) aliasing the input, and these requests may be answered off the loop, after gnet
	// has reused its buffer: they decode from a copy.
	body = bytes.Clone(body)
	if err := req.ReadFrom(body); err != nil {
		c.protocolError("malformed request", "api_key", h.key, "api_version", h.version, "err", err)
		return
	}
	if c.srv.coord.handles(h.key) {
		c.clientID = string(h.clientID)
		c.group(h, req)
		return
	}
	switch req := req.(type) {
	case *kmsg.MetadataRequest:
		c.metadata(h, req)
	case *kmsg.ListOffsetsRequest:
		c.listOffsets(h, req)
	case *kmsg.FindCoordinatorRequest:
		c.findCoordinator(h, req)
	case *kmsg.InitProducerIDRequest:
		c.initProducerID(h, req)
	case *kmsg.AddPartitionsToTxnRequest:
		c.addPartitionsToTxn(h, req)
	case *kmsg.AddOffsetsToTxnRequest:
		c.addOffsetsToTxn(h, req)
	case *kmsg.TxnOffsetCommitRequest:
		c.txnOffsetCommit(h, req)
	case *kmsg.EndTxnRequest:
		c.endTxn(h, req)
	case *kmsg.CreateTopicsRequest:
		c.createTopics(h, req)
	case *kmsg.DeleteTopicsRequest:
		c.deleteTopics(h, req)
	case *kmsg.CreatePartitionsRequest:
		c.createPartitions(h, req)
	case *kmsg.DescribeConfigsRequest:
		c.describeConfigs(h, req)
	case *kmsg.SASLHandshakeRequest:
		c.saslHandshake(h, req)
	case *kmsg.SASLAuthenticateRequest:
		c.saslAuthenticate(h, req)
	default:
		c.protocolError("unsupported request", "api_key", h.key)
	}
}

// unsupported answers a request for an API or version not served with UNSUPPORTED_VERSION, when
// its response (at that version, as kmsg knows it) has a top-level error code to carry it; other
// requests close the connection, logged: an unknown key or version has no schema to answer in, as
// with Kafka. A client that negotiated with ApiVersions never sends either.
func (c *conn) unsupported(h header) {
	req := kmsg.RequestForKey(h.key)
	if req != nil && h.version >= 0 && h.version <= req.MaxVersion() {
		resp := req.ResponseKind()
		resp.SetVersion(h.version)
		if f := reflect.ValueOf(resp).Elem().FieldByName("ErrorCode"); f.IsValid() && f.Kind() == reflect.Int16 {
			f.SetInt(int64(errUnsupportedVersion))
			// The field may not exist at this version (FindCoordinator v4+ moved it): answer only
			// when it survives encoding.
			back := req.ResponseKind()
			back.SetVersion(h.version)
			if back.ReadFrom(resp.AppendTo(nil)) == nil &&
				reflect.ValueOf(back).Elem().FieldByName("ErrorCode").Int() == int64(errUnsupportedVersion) {
				c.srv.log.Debug("kafka: unsupported request answered", "remote", c.remote, "api_key", h.key, "api_version", h.version)
				c.reply(h.corr, resp)
				return
			}
		}
	}
	c.protocolError("unsupported request", "api_key", h.key, "api_version", h.version)
}

// group hands a group request to the coordinator; its answer may come later, from any goroutine.
func (c *conn) group(h header, req kmsg.Request) {
	seq, _ := c.q.push()
	corr := h.corr
	rc := requestContext{Principal: c.principal, ClientID: c.clientID, ClientHost: c.remote}
	c.srv.coord.serve(rc, req, func(resp kmsg.Response) {
		c.srv.stats.countErrors(resp)
		c.complete(asyncDone{seq: seq, buf: appendResponse(nil, corr, resp)})
	})
}

// apiVersions answers ApiVersions: every API served with its versions. A version above the ones
// served gets Kafka's fallback: a v0 answer with UNSUPPORTED_VERSION and the list, from which the
// client picks a version it shares.
func (c *conn) apiVersions(h header, body []byte) {
	r, _ := c.srv.versions(keyApiVersions)
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(h.version)
	if h.version > r.max || h.version < 0 {
		resp.SetVersion(0)
		resp.ErrorCode = errUnsupportedVersion
	} else {
		req := kmsg.NewPtrApiVersionsRequest()
		req.SetVersion(h.version)
		if err := req.ReadFrom(body); err != nil {
			resp.ErrorCode = errInvalidRequest
		}
	}
	for _, a := range c.srv.advertised() {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = a.key, a.min, a.max
		resp.ApiKeys = append(resp.ApiKeys, k)
	}
	c.reply(h.corr, resp)
}

// brokerAddr is the host and port Metadata names: AdvertisedAddr, or the address the connection
// reached.
func (c *conn) brokerAddr() (string, int32) {
	a := c.srv.opts.AdvertisedAddr
	if a == "" && c.local != nil {
		a = c.local.String()
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "127.0.0.1", 9092
	}
	p, _ := strconv.Atoi(port)
	return host, int32(p)
}

// findCoordinator names this broker the coordinator of every group the principal may use (key
// type 0) and of every transactional id (key type 1: txn.go); another key type is INVALID_REQUEST.
func (c *conn) findCoordinator(h header, req *kmsg.FindCoordinatorRequest) {
	resp := kmsg.NewPtrFindCoordinatorResponse()
	resp.SetVersion(h.version)
	host, port := c.brokerAddr()
	keys := req.CoordinatorKeys
	if h.version < 4 {
		keys = []string{req.CoordinatorKey}
	}
	for _, key := range keys {
		code := errNone
		var msg *string
		switch {
		case req.CoordinatorType == 1: // a transactional id: this broker
		case req.CoordinatorType != 0:
			code, msg = errInvalidRequest, strPtr("coordinator types are 0 (group) and 1 (transaction)")
		case !auth.MayGroup(c.srv.acl(), c.principal, auth.ActConsume, key):
			code = errGroupAuthorization
		}
		nodeID, hst, prt := int32(0), host, port
		if code != errNone {
			nodeID, hst, prt = -1, "", -1
		}
		if h.version < 4 {
			resp.ErrorCode, resp.ErrorMessage, resp.NodeID, resp.Host, resp.Port = code, msg, nodeID, hst, prt
			break
		}
		k := kmsg.NewFindCoordinatorResponseCoordinator()
		k.Key, k.NodeID, k.Host, k.Port, k.ErrorCode, k.ErrorMessage = key, nodeID, hst, prt, code, msg
		resp.Coordinators = append(resp.Coordinators, k)
	}
	c.reply(h.corr, resp)
}

// initProducerID hands out a producer id for idempotent produce; a transactional id (non-empty,
// as Kafka reads it) is served by initTxnProducer.
func (c *conn) initProducerID(h header, req *kmsg.InitProducerIDRequest) {
	if req.TransactionalID != nil && *req.TransactionalID != "" {
		c.initTxnProducer(h, req)
		return
	}
	resp := kmsg.NewPtrInitProducerIDResponse()
	resp.SetVersion(h.version)
	resp.ProducerID, resp.ProducerEpoch = c.srv.nextProducerID.Add(1), 0
	c.reply(h.corr, resp)
}

// randomProducerBase is where a listener's producer ids start: a random point in the lower half
// of the positive int64s, so ids given before a restart (remembered by the partitions' idempotence
// state) are not handed out again, and the ids that follow cannot wrap.
func randomProducerBase() int64 { return rand.Int64N(1<<62) + 1<<20 }

func strPtr(s string) *string { return &s }
