package client

import (
	"errors"

	"github.com/sluicemq/sluice/wire"
)

// Errors of the client itself. Broker errors arrive as *wire.ProtocolError and match their code:
// errors.Is(err, wire.CodeUnknownTopic).
var (
	// ErrClosed: the client, producer or consumer was closed.
	ErrClosed = errors.New("client: closed")
	// ErrConnectionLost: the connection failed while the request was in flight; whether the broker
	// acted on it is unknown. It is retriable.
	ErrConnectionLost = errors.New("client: connection lost")
	// ErrHandshake: the broker turned the connection away, or answered the handshake with nonsense.
	ErrHandshake = errors.New("client: handshake failed")
	// ErrRecordTooLarge: one record does not fit the negotiated maximum frame size.
	ErrRecordTooLarge = errors.New("client: record too large")
	// ErrNoGroup: the operation needs a consumer group and the consumer has none.
	ErrNoGroup = errors.New("client: consumer has no group")
	// ErrNotQueue: Ack and Nack need a work-queue subscription.
	ErrNotQueue = errors.New("client: not a work-queue subscription")
	// ErrOptions marks an invalid option.
	ErrOptions = errors.New("client: invalid options")
	// ErrCorruptBatch: a delivered record batch cannot be read (see CorruptPolicy). The error wrapping
	// it names the topic, partition and offsets, and wraps the wire error that says why.
	ErrCorruptBatch = errors.New("client: unreadable record batch")
)

// IsRetriable reports whether err is transient: the same request may succeed if sent again (after
// a reconnect, or later). A retried produce may store its records twice (at-least-once).
func IsRetriable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrConnectionLost),
		errors.Is(err, wire.CodeThrottled),
		errors.Is(err, wire.CodeShuttingDown),
		errors.Is(err, wire.CodeTimeout):
		return true
	}
	return false
}
