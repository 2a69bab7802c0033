// Package httpapi is the broker's HTTP face: messaging for systems that only speak HTTP (produce,
// consume with long-polling, Server-Sent Events, work queues, request/reply) and the administration
// the web console (engine/httpapi/console) is built on. It is described by the OpenAPI 3 document it
// serves at /openapi.json; docs/http.md gives the design.
//
// It is a thin face over engine.Engine, as engine/server is: records are built as Kafka RecordBatch
// v2 with wire.BatchBuilder and appended with Engine.Publish; reads go through Engine.SubscribeLocal.
// Principals and rights are those of every other face: a bearer token (or HTTP Basic user and
// password, checked by the PLAIN conversation) names a principal through auth.Authenticator, and
// the ACL is consulted with auth.MayTopic, MayGroup, MayCreate and MayList exactly as the native
// protocol's handlers do. Errors are JSON objects carrying the protocol's error code (wire.Code).
//
// This face is not the native data path: it uses net/http and encoding/json and allocates per
// request. Every request and response is bounded (Options).
package httpapi

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/engine/httpapi/console"
	"github.com/sluicemq/sluice/wire"
)

// Errors returned by New for invalid Options.
var (
	ErrNoEngine = errors.New("httpapi: no engine")
	ErrOptions  = errors.New("httpapi: invalid options")
)

// Options configure a Handler. Zero values take the defaults given at each field.
type Options struct {
	// Engine is the broker core served. Required.
	Engine *engine.Engine
	// Auth authenticates requests. Nil, or one with no token and no user, turns authentication off:
	// every request acts as the anonymous principal "".
	Auth *auth.Authenticator
	// ACL decides rights; nil allows every authenticated principal everything (as engine/server).
	ACL auth.ACL
	// MinDurability is the broker's durability floor: a produce asking for less gets this.
	MinDurability wire.Durability
	// MaxRequestBytes bounds a request body, in bytes (413 beyond). Default 4 MiB.
	MaxRequestBytes int64
	// MaxResponseBytes bounds the record bytes (keys, values, headers) one consume or receive
	// answers with; the first record is always answered whole. Default 4 MiB.
	MaxResponseBytes int
	// MaxRecords bounds the records one produce takes and one consume answers with. Default 10,000.
	MaxRecords int
	// MaxWait bounds a long poll's, a receive's and a request/reply's wait. Default 30 s.
	MaxWait time.Duration
	// BodyTimeout bounds the time a request body takes to arrive. Default 30 s.
	BodyTimeout time.Duration
	// MaxWaiting bounds the requests waiting at once (long polls, receives, requests, SSE streams);
	// one more is refused with 429 (CodeThrottled). Default 1,024.
	MaxWaiting int
	// MaxSessions bounds the work-queue sessions open at once (429 beyond). Default 256.
	MaxSessions int
	// SessionTTL is how long a work-queue session lives without a request; it is then closed and its
	// unsettled records return to the queue. Default 60 s.
	SessionTTL time.Duration
	// Connections, if set, reports the native listener's connection counters for /v1/stats (for
	// sluiced, from server.Stats). Nil: none are reported.
	Connections func() map[string]int64
	// Logger receives the face's logs. Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = 4 << 20
	}
	if o.MaxResponseBytes == 0 {
		o.MaxResponseBytes = 4 << 20
	}
	if o.MaxRecords == 0 {
		o.MaxRecords = 10_000
	}
	if o.MaxWait == 0 {
		o.MaxWait = 30 * time.Second
	}
	if o.BodyTimeout == 0 {
		o.BodyTimeout = 30 * time.Second
	}
	if o.MaxWaiting == 0 {
		o.MaxWaiting = 1024
	}
	if o.MaxSessions == 0 {
		o.MaxSessions = 256
	}
	if o.SessionTTL == 0 {
		o.SessionTTL = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports options out of range (after defaults).
func (o *Options) Validate() error {
	switch {
	case o.Engine == nil:
		return ErrNoEngine
	case o.MaxRequestBytes < 1024 || o.MaxResponseBytes < 1024:
		return fmt.Errorf("%w: request and response bounds must be at least 1 KiB", ErrOptions)
	case o.MaxRecords < 1 || o.MaxWaiting < 1 || o.MaxSessions < 1:
		return fmt.Errorf("%w: record, waiting and session bounds must be positive", ErrOptions)
	case o.MaxWait < time.Millisecond || o.SessionTTL < time.Second || o.BodyTimeout < time.Second:
		return fmt.Errorf("%w: MaxWait at least 1 ms, SessionTTL and BodyTimeout at least 1 s", ErrOptions)
	case o.MinDurability > wire.DurabilityFsync:
		return fmt.Errorf("%w: durability %d", ErrOptions, o.MinDurability)
	}
	return nil
}

// Handler serves the HTTP API and the console. It is safe for concurrent use; Close ends its
// work-queue sessions and open streams.
type Handler struct {
	opts Options
	e    *engine.Engine
	mux  *http.ServeMux
	// root is mux wrapped in the security headers and the cross-origin protection.
	root http.Handler

	// waiting counts requests holding a wait slot (MaxWaiting); atomic, any goroutine.
	waiting atomic.Int64
	// produceNs and produceN sum the HTTP produce handling time and count, for /v1/stats.
	produceNs, produceN atomic.Uint64

	sessions sessionTable

	// auth is the authenticator and ACL rules in force: opts.Auth and opts.ACL at New, then what
	// SetAuth stored. Never nil after New.
	auth atomic.Pointer[authSettings]

	// ctx ends at Close: long polls, SSE streams and receives stop with it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the session reaper
}

// route is one endpoint of the API: the mux pattern's method and path (OpenAPI spelling: the
// document at /openapi.json lists exactly these), and its handler.
type route struct {
	method, path string
	h            func(*Handler, http.ResponseWriter, *http.Request, string)
	// anonymous routes answer a request without credentials too (as the anonymous principal ""):
	// whoami, so that the console learns it must ask for a token without a failed request.
	anonymous bool
}

// routes is the API. A test checks it against openapi.json, both ways.
var routes = []route{
	{"GET", "/v1/whoami", (*Handler).whoami, true},
	{"GET", "/v1/stats", (*Handler).stats, false},
	{"GET", "/v1/topics", (*Handler).listTopics, false},
	{"POST", "/v1/topics", (*Handler).createTopic, false},
	{"GET", "/v1/topics/{topic}", (*Handler).describeTopic, false},
	{"DELETE", "/v1/topics/{topic}", (*Handler).deleteTopic, false},
	{"POST", "/v1/topics/{topic}/records", (*Handler).produce, false},
	{"GET", "/v1/topics/{topic}/partitions/{partition}/records", (*Handler).consume, false},
	{"GET", "/v1/topics/{topic}/partitions/{partition}/stream", (*Handler).stream, false},
	{"POST", "/v1/topics/{topic}/request", (*Handler).request, false},
	{"GET", "/v1/groups", (*Handler).listGroups, false},
	{"GET", "/v1/groups/{group}", (*Handler).describeGroup, false},
	{"POST", "/v1/groups/{group}/seek", (*Handler).seekGroup, false},
	{"POST", "/v1/groups/{group}/reset", (*Handler).resetGroup, false},
	{"GET", "/v1/queues", (*Handler).listQueues, false},
	{"POST", "/v1/queues/{group}/sessions", (*Handler).openSession, false},
	{"DELETE", "/v1/queues/{group}/sessions/{session}", (*Handler).closeSession, false},
	{"POST", "/v1/queues/{group}/sessions/{session}/receive", (*Handler).receive, false},
	{"POST", "/v1/queues/{group}/sessions/{session}/ack", (*Handler).ack, false},
	{"POST", "/v1/queues/{group}/sessions/{session}/nack", (*Handler).nack, false},
}

//go:embed openapi.json
var openAPI []byte

// New returns a Handler serving the API under /v1/, the OpenAPI document at /openapi.json and the
// console at / (static files). It starts the work-queue session reaper; Close stops it.
func New(opts Options) (*Handler, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	h := &Handler{opts: opts, e: opts.Engine, mux: http.NewServeMux()}
	h.auth.Store(&authSettings{authn: opts.Auth, acl: opts.ACL})
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.sessions.init()
	for _, rt := range routes {
		fn, anonymous := rt.h, rt.anonymous
		h.mux.HandleFunc(rt.method+" "+rt.path, func(w http.ResponseWriter, r *http.Request) {
			principal, ok := "", anonymous && r.Header.Get("Authorization") == ""
			if !ok {
				if principal, ok = h.authenticate(w, r); !ok {
					return
				}
			}
			if r.Body != nil {
				r.Body = http.MaxBytesReader(w, r.Body, h.opts.MaxRequestBytes)
			}
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				// A body arrives within BodyTimeout plus MaxWait (the longest wait a request may then
				// make): a slow sender cannot hold a handler. Streams (GET) have no read deadline.
				_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.opts.BodyTimeout + h.opts.MaxWait))
			}
			fn(h, w, r, principal)
		})
	}
	h.mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
	staticFiles := console.Handler()
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, badRequest("the console's files are read with GET"), http.StatusMethodNotAllowed)
			return
		}
		staticFiles.ServeHTTP(w, r)
	})
	h.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "no such endpoint: " + r.Method + " " + r.URL.Path}, http.StatusNotFound)
	})
	// Cross-origin protection (Go's: Sec-Fetch-Site, then Origin against Host) refuses a state-changing
	// request a browser sends on behalf of another site; clients that are not browsers send neither
	// header and pass. Bearer tokens are never attached by a browser on its own, but Basic credentials
	// and an unauthenticated broker on loopback would be reachable without it.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, &wire.ProtocolError{Code: wire.CodeNotAuthorized, Message: "cross-origin request refused (CSRF protection)"}, http.StatusForbidden)
	}))
	h.root = securityHeaders(cop.Handler(h.mux))
	h.wg.Add(1)
	go h.reapSessions()
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.root.ServeHTTP(w, r) }

// Close ends every work-queue session, stream and waiting request, and stops the reaper. The
// engine stays open. It is safe to call twice.
func (h *Handler) Close() error {
	h.cancel()
	h.wg.Wait()
	h.sessions.closeAll()
	return nil
}

// ContentSecurityPolicy is sent with every response: scripts and styles only from the console's own
// files (no inline script, no inline style attribute), no framing, no other origin reachable.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", ContentSecurityPolicy)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// authenticate finds the request's principal: "Authorization: Bearer <token>" (a token as the
// native protocol's), or "Authorization: Basic" with a user and a password, checked by the PLAIN
// conversation (the password is a user's password, or a token whose principal is the user). With
// authentication off every request is the anonymous principal "". It answers 401 itself.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) (string, bool) {
	a := h.authn()
	if !a.Enabled() {
		return "", true
	}
	hdr := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(hdr, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer") && cred != "":
		if p, ok := a.Token([]byte(strings.TrimSpace(cred))); ok {
			return p, true
		}
	case strings.EqualFold(scheme, "Basic") && cred != "":
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		user, pass, ok := strings.Cut(string(raw), ":")
		if err == nil && ok && user != "" {
			conv, err := a.Start(auth.MechPlain)
			if err == nil {
				if _, done, err := conv.Step([]byte("\x00" + user + "\x00" + pass)); err == nil && done &&
					subtle.ConstantTimeCompare([]byte(conv.Principal()), []byte(user)) == 1 {
					return conv.Principal(), true
				}
			}
		}
	}
	// No WWW-Authenticate challenge for Basic: a browser would pop up its own login dialog over the
	// console's.
	w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
	msg := "missing credentials"
	if hdr != "" {
		msg = "credentials rejected"
	}
	writeError(w, &wire.ProtocolError{Code: wire.CodeAuthFailed, Message: msg}, http.StatusUnauthorized)
	return "", false
}

// acquireWait takes a wait slot (MaxWaiting) or answers 429. Release it with releaseWait.
func (h *Handler) acquireWait(w http.ResponseWriter) bool {
	if h.waiting.Add(1) > int64(h.opts.MaxWaiting) {
		h.waiting.Add(-1)
		writeError(w, &wire.ProtocolError{Code: wire.CodeThrottled, Message: "too many waiting requests"}, 0)
		return false
	}
	return true
}

func (h *Handler) releaseWait() { h.waiting.Add(-1) }

// waitFor parses the wait_ms query parameter: 0 when absent, at most MaxWait.
func (h *Handler) waitFor(r *http.Request) (time.Duration, error) {
	s := r.URL.Query().Get("wait_ms")
	if s == "" {
		return 0, nil
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms < 0 {
		return 0, badRequest("wait_ms: want a non-negative integer")
	}
	return min(time.Duration(ms)*time.Millisecond, h.opts.MaxWait), nil
}

// Error is the JSON body of every error answer.
//
//	{"error": {"code": 9, "name": "unknown topic", "message": "orders"}}
//
// code is the protocol's wire.Code number (frozen), name its text.
type Error struct {
	Code    uint16 `json:"code"`
	Name    string `json:"name"`
	Message string `json:"message,omitempty"`
}

// statusOf maps a protocol error code to an HTTP status.
func statusOf(c wire.Code) int {
	switch c {
	case wire.CodeAuthFailed:
		return http.StatusUnauthorized
	case wire.CodeNotAuthorized:
		return http.StatusForbidden
	case wire.CodeUnknownTopic, wire.CodeUnknownPartition, wire.CodeUnknownGroup, wire.CodeUnknownSubscription:
		return http.StatusNotFound
	case wire.CodeTopicExists:
		return http.StatusConflict
	case wire.CodeBatchTooLarge, wire.CodeFrameTooLarge:
		return http.StatusRequestEntityTooLarge
	case wire.CodeThrottled:
		return http.StatusTooManyRequests
	case wire.CodeOffsetOutOfRange:
		return http.StatusRequestedRangeNotSatisfiable
	case wire.CodeInvalidRequest, wire.CodeCorruptBatch, wire.CodeMalformedFrame, wire.CodeDuplicateSequence, wire.CodeOutOfOrderSequence:
		return http.StatusBadRequest
	case wire.CodeTimeout:
		return http.StatusGatewayTimeout
	case wire.CodeShuttingDown:
		return http.StatusServiceUnavailable
	case wire.CodeStorageFull:
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

// writeError answers err as JSON with its protocol code; status 0 derives the status from the code.
// A body over MaxRequestBytes is CodeFrameTooLarge (413).
func writeError(w http.ResponseWriter, err error, status int) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = &wire.ProtocolError{Code: wire.CodeFrameTooLarge, Message: fmt.Sprintf("request body over %d bytes", mbe.Limit)}
	}
	e := errorOf(err)
	if status == 0 {
		status = statusOf(wire.Code(e.Code))
	}
	writeJSON(w, status, map[string]Error{"error": e})
}

// errorOf is err as an Error: its protocol code (CodeInternal for an error without one) and
// message (the ProtocolError's, none for a bare Code, else the error's text).
func errorOf(err error) Error {
	code := wire.CodeOf(err)
	if code == wire.CodeOK {
		code = wire.CodeInternal
	}
	msg := err.Error()
	var pe *wire.ProtocolError
	if errors.As(err, &pe) {
		msg = pe.Message
	} else if _, ok := err.(wire.Code); ok {
		msg = ""
	}
	return Error{Code: uint16(code), Name: code.String(), Message: msg}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func badRequest(msg string) error {
	return &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: msg}
}

func denied(what string) error {
	return &wire.ProtocolError{Code: wire.CodeNotAuthorized, Message: what}
}

// decodeJSON reads a JSON request body into v: unknown fields are refused, and so is anything
// after the value.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequest("body: " + err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("body: data after the JSON value")
	}
	return nil
}
