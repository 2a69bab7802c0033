package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/sluicemq/sluice/wire"
)

// Request/reply over topics, as NATS does it with inboxes. A requester owns a reply inbox: a
// memory-only topic of one partition (nothing on disk, gone when the broker restarts) named
// "_inbox.<principal>.<random>" (wire.InboxName) after the principal the broker authenticated, so
// that under ACLs only that principal may read it and any principal may reply to it. It is deleted
// by Close, or by the broker a grace period after the connection that created it is gone unless the
// client has reconnected and resubscribed to it meanwhile (sluiced --inbox-grace, 10 s). A
// request is an ordinary record carrying two headers, HeaderReplyTo (the inbox) and
// HeaderCorrelationID; a responder consumes the request topic and answers with Reply, which produces
// to the inbox with the same correlation id. The requester matches replies to waiting calls by it.
//
// These routing headers are set by Request and Reply alone: Request replaces any HeaderReplyTo and
// HeaderCorrelationID the record already carries (a service that copies a request's headers into its
// own request to another service, as trace propagation does, still gets the answer itself), and Reply
// replaces any HeaderReplyTo and HeaderCorrelationID in the reply's record. Where a message carries
// a routing header more than once (a request from a client that appended rather than replaced), the
// last one is the sender's own and is the one read.
const (
	HeaderReplyTo       = "sluice-reply-to"
	HeaderCorrelationID = "sluice-correlation-id"
)

// ErrNotRequest is returned by Reply for a message without a reply-to header.
var ErrNotRequest = errors.New("client: message is not a request (no reply-to header)")

// requester is a client's reply inbox and its waiting calls.
type requester struct {
	c     *Client
	inbox string
	cons  *Consumer

	mu      sync.Mutex // guards waiting, next, err, producers
	waiting map[uint64]chan *Message
	next    uint64
	err     error // the inbox consumer's terminal error
	prods   map[string]*Producer
}

// Request sends rec to topic with a reply-to inbox and waits for the answer (or ctx). The request is
// produced at durability written; the reply is a detached copy the caller may keep. Errors: the
// produce's (see Producer.Publish), the inbox subscription's, ErrClosed, or ctx's when no reply came.
func (c *Client) Request(ctx context.Context, topic string, rec Record) (*Message, error) {
	r, err := c.requester(ctx)
	if err != nil {
		return nil, err
	}
	p, err := r.producer(topic)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.err != nil {
		r.mu.Unlock()
		return nil, r.err
	}
	r.next++
	id := r.next
	ch := make(chan *Message, 1)
	r.waiting[id] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiting, id)
		r.mu.Unlock()
	}()
	rec.Headers = withRouting(rec.Headers,
		Header{Key: []byte(HeaderReplyTo), Value: []byte(r.inbox)},
		Header{Key: []byte(HeaderCorrelationID), Value: strconv.AppendUint(nil, id, 10)})
	if _, err := p.Publish(ctx, rec); err != nil {
		return nil, err
	}
	select {
	case m := <-ch:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Reply answers request req with rec, produced to the requester's inbox: the last HeaderReplyTo of
// req, with its last HeaderCorrelationID. Routing headers rec carries (copied from another message)
// are replaced. It returns ErrNotRequest for a message without both headers.
func (c *Client) Reply(ctx context.Context, req *Message, rec Record) error {
	to, ok := lastHeader(req, HeaderReplyTo)
	corr, ok2 := lastHeader(req, HeaderCorrelationID)
	if !ok || !ok2 || len(to) == 0 {
		return ErrNotRequest
	}
	r, err := c.requester(ctx)
	if err != nil {
		return err
	}
	p, err := r.producer(string(to))
	if err != nil {
		return err
	}
	rec.Headers = withRouting(rec.Headers,
		Header{Key: []byte(HeaderCorrelationID), Value: append([]byte(nil), corr...)})
	_, err = p.Publish(ctx, rec)
	return err
}

// withRouting returns a new slice: hdrs without any HeaderReplyTo or HeaderCorrelationID, then
// routing. hdrs is not modified.
func withRouting(hdrs []Header, routing ...Header) []Header {
	out := make([]Header, 0, len(hdrs)+len(routing))
	for _, h := range hdrs {
		if k := string(h.Key); k != HeaderReplyTo && k != HeaderCorrelationID {
			out = append(out, h)
		}
	}
	return append(out, routing...)
}

// lastHeader returns the value of the last header of m named key (pointing into m, like Header).
func lastHeader(m *Message, key string) (value []byte, ok bool) {
	m.Headers(func(k, v []byte) bool {
		if string(k) == key {
			value, ok = v, true
		}
		return true
	})
	return value, ok
}

// requester returns the client's reply inbox, creating it and its consumer on first use.
func (c *Client) requester(ctx context.Context) (*requester, error) {
	c.reqMu.Lock()
	defer c.reqMu.Unlock()
	if c.req != nil {
		return c.req, nil
	}
	var suffix [16]byte // 128 bits: a responder learns the name, nobody can guess it
	if _, err := rand.Read(suffix[:]); err != nil {
		return nil, err
	}
	c.mu.Lock()
	principal := c.principal
	c.mu.Unlock()
	r := &requester{c: c, inbox: wire.InboxName(principal, hex.EncodeToString(suffix[:])),
		waiting: map[uint64]chan *Message{}, prods: map[string]*Producer{}}
	if err := c.CreateTopic(ctx, TopicConfig{Name: r.inbox, Partitions: 1, Flags: wire.TopicMemory}); err != nil {
		return nil, fmt.Errorf("client: reply inbox: %w", err)
	}
	cons, err := c.Subscribe(ctx, r.inbox, WithPartition(0), WithStartEarliest())
	if err != nil {
		return nil, fmt.Errorf("client: reply inbox: %w", err)
	}
	r.cons = cons
	c.req = r
	go r.dispatch()
	return r, nil
}

// dispatch hands each reply to the call waiting for its correlation id.
func (r *requester) dispatch() {
	for {
		m, err := r.cons.Next(r.c.closeCtx)
		if err != nil {
			r.mu.Lock()
			r.err = err
			r.mu.Unlock()
			return
		}
		v, ok := lastHeader(m, HeaderCorrelationID)
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			continue
		}
		r.mu.Lock()
		ch := r.waiting[id]
		r.mu.Unlock()
		if ch != nil {
			select {
			case ch <- m.Clone():
			default: // a duplicate reply (at-least-once): the first one won
			}
		}
	}
}

// producer returns a cached producer for topic.
func (r *requester) producer(topic string) (*Producer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.prods[topic]; p != nil {
		return p, nil
	}
	p, err := r.c.Producer(topic, WithDurability(wire.DurabilityWritten))
	if err != nil {
		return nil, err
	}
	r.prods[topic] = p
	return p, nil
}

// close releases the inbox: its consumer, the cached producers and the topic itself.
func (r *requester) close(ctx context.Context) {
	r.mu.Lock()
	prods := r.prods
	r.prods = map[string]*Producer{}
	r.mu.Unlock()
	for _, p := range prods {
		_ = p.Close(ctx)
	}
	_ = r.cons.Close(ctx)
	_ = r.c.DeleteTopic(ctx, r.inbox)
}
