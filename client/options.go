package client

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// Options configure a Client. Dial starts from DefaultOptions and applies the With… options in order;
// the result must pass Validate.
type Options struct {
	// ClientID names the client to the broker (logs, metrics, and the member lists of DescribeGroup). At most 255 bytes. Default "sluice-go".
	ClientID string

	// DialTimeout bounds one connection attempt: TCP connect, TLS and the handshake. Default 10 s.
	DialTimeout time.Duration

	// RequestTimeout bounds requests the client makes on its own behalf (the producer's topic lookup,
	// a consumer's resubscription after a reconnect, automatic commits). Requests made with a
	// context use its deadline instead. Default 30 s.
	RequestTimeout time.Duration

	// MaxFrame is the largest frame this client accepts; the connection uses the smaller of it and the
	// broker's. At least wire.MinMaxFrame. Default wire.DefaultMaxFrame (16 MiB).
	MaxFrame int

	// TLS, when non-nil, wraps the connection in TLS with this configuration. An empty ServerName is
	// taken from the address's host.
	TLS *tls.Config

	// AuthToken, when non-empty, is sent after the handshake (mechanism "token").
	AuthToken string

	// SASLMechanism, when non-empty, authenticates after the handshake as SASLUser with
	// SASLPassword: "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512" (WithSCRAM, WithPlain). SCRAM never
	// sends the password, and the client checks the broker's proof that it holds the user's
	// verifier. Exclusive with AuthToken. The principal is the user name.
	SASLMechanism string
	SASLUser      string
	SASLPassword  string

	// ReconnectMin and ReconnectMax bound the exponential backoff between reconnection attempts
	// (jittered by ±25%). Defaults 50 ms and 5 s.
	ReconnectMin time.Duration
	ReconnectMax time.Duration

	// PingInterval is how often the client pings the broker. The ping keeps an idle connection from
	// the broker's idle timeout, and a connection whose pong is two intervals late is declared dead
	// and replaced. A broker that announces a shorter idle timeout in the handshake is pinged every
	// third of it instead (the pong deadline stays two of these intervals). Default 15 s; negative
	// disables pings.
	PingInterval time.Duration

	// Logger receives the client's structured logs. Default slog.Default().
	Logger *slog.Logger
}

// DefaultOptions returns the options Dial starts from.
func DefaultOptions() Options {
	return Options{
		ClientID:       "sluice-go",
		DialTimeout:    10 * time.Second,
		RequestTimeout: 30 * time.Second,
		MaxFrame:       wire.DefaultMaxFrame,
		ReconnectMin:   50 * time.Millisecond,
		ReconnectMax:   5 * time.Second,
		PingInterval:   15 * time.Second,
	}
}

// Validate reports the first invalid field.
func (o *Options) Validate() error {
	switch {
	case len(o.ClientID) > 255:
		return fmt.Errorf("%w: client id of %d bytes, limit 255", ErrOptions, len(o.ClientID))
	case o.DialTimeout <= 0:
		return fmt.Errorf("%w: dial timeout %v", ErrOptions, o.DialTimeout)
	case o.RequestTimeout <= 0:
		return fmt.Errorf("%w: request timeout %v", ErrOptions, o.RequestTimeout)
	case o.MaxFrame < wire.MinMaxFrame || o.MaxFrame > 1<<30:
		return fmt.Errorf("%w: max frame %d outside [%d, 1 GiB]", ErrOptions, o.MaxFrame, wire.MinMaxFrame)
	case o.PingInterval == 0:
		return fmt.Errorf("%w: ping interval 0 (negative disables pings)", ErrOptions)
	case o.ReconnectMin <= 0 || o.ReconnectMax < o.ReconnectMin:
		return fmt.Errorf("%w: reconnect backoff [%v, %v]", ErrOptions, o.ReconnectMin, o.ReconnectMax)
	case o.SASLMechanism != "" && o.AuthToken != "":
		return fmt.Errorf("%w: a token and a %s user: choose one", ErrOptions, o.SASLMechanism)
	case o.SASLMechanism != "" && (o.SASLUser == "" || o.SASLPassword == ""):
		return fmt.Errorf("%w: %s needs a user and a password", ErrOptions, o.SASLMechanism)
	case o.SASLMechanism != "" && saslMechanism(o.SASLMechanism, "", "") == nil:
		return fmt.Errorf("%w: SASL mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", ErrOptions, o.SASLMechanism)
	}
	return nil
}

// Option sets a field of Options.
type Option func(*Options)

// WithClientID names the client to the broker.
func WithClientID(id string) Option { return func(o *Options) { o.ClientID = id } }

// WithDialTimeout bounds one connection attempt, handshake included.
func WithDialTimeout(d time.Duration) Option { return func(o *Options) { o.DialTimeout = d } }

// WithRequestTimeout bounds the requests the client makes on its own behalf.
func WithRequestTimeout(d time.Duration) Option { return func(o *Options) { o.RequestTimeout = d } }

// WithMaxFrame sets the largest frame the client accepts.
func WithMaxFrame(n int) Option { return func(o *Options) { o.MaxFrame = n } }

// WithTLS connects over TLS with cfg.
func WithTLS(cfg *tls.Config) Option { return func(o *Options) { o.TLS = cfg } }

// WithAuthToken authenticates with a bearer token after the handshake.
func WithAuthToken(token string) Option { return func(o *Options) { o.AuthToken = token } }

// WithSCRAM authenticates as user with password by mechanism "SCRAM-SHA-256" or "SCRAM-SHA-512"
// (RFC 5802/7677) after the handshake: the password never leaves the client, and the broker proves
// it holds the user's verifier.
func WithSCRAM(user, password, mechanism string) Option {
	return func(o *Options) { o.SASLMechanism, o.SASLUser, o.SASLPassword = mechanism, user, password }
}

// WithPlain authenticates as user with password by SASL PLAIN (RFC 4616) after the handshake. The
// password travels as is: use it over TLS off loopback.
func WithPlain(user, password string) Option {
	return func(o *Options) { o.SASLMechanism, o.SASLUser, o.SASLPassword = "PLAIN", user, password }
}

// WithReconnectBackoff bounds the wait between reconnection attempts: it starts at min and doubles
// up to max.
func WithReconnectBackoff(min, max time.Duration) Option {
	return func(o *Options) { o.ReconnectMin, o.ReconnectMax = min, max }
}

// WithPingInterval sets how often the client pings the broker; negative disables pings.
func WithPingInterval(d time.Duration) Option { return func(o *Options) { o.PingInterval = d } }

// WithLogger sends the client's logs to l.
func WithLogger(l *slog.Logger) Option { return func(o *Options) { o.Logger = l } }

// CorruptPolicy is what a consumer does with a stored record batch it cannot read: one whose CRC holds
// but whose records do not parse, do not match its header, are compressed with a codec the client
// cannot read, or inflate past the iterator's bound. Brokers refuse such batches at produce; they can
// still be met in data written before brokers did.
type CorruptPolicy uint8

const (
	// CorruptStop (the default) ends consumption at the batch: Next returns an error wrapping
	// ErrCorruptBatch that names the partition and offsets, and so does every later call. Nothing past
	// the batch is delivered or committed, so no record is lost without the application deciding it.
	// This is Kafka's choice too (CorruptRecordException). Restart with CorruptSkip, or at an offset
	// past the batch, to move on.
	CorruptStop CorruptPolicy = iota
	// CorruptSkip moves past the batch: a warning naming the partition and offset range is logged, the
	// batch counts in ConsumerStats, and the consumer goes on with the next batch. A group member
	// commits past it, so the group does not meet it again. Records of the batch before the damage
	// that were already returned stay returned.
	CorruptSkip
)

func (p CorruptPolicy) String() string {
	switch p {
	case CorruptStop:
		return "stop"
	case CorruptSkip:
		return "skip"
	}
	return fmt.Sprintf("CorruptPolicy(%d)", uint8(p))
}

// ParseCorruptPolicy maps "stop" or "skip" to its policy.
func ParseCorruptPolicy(s string) (CorruptPolicy, error) {
	switch s {
	case "stop":
		return CorruptStop, nil
	case "skip":
		return CorruptSkip, nil
	}
	return 0, fmt.Errorf("%w: corrupt-batch policy %q: want stop or skip", ErrOptions, s)
}

// WithOnCorrupt sets what the consumer does with a stored batch it cannot read (default CorruptStop).
func WithOnCorrupt(p CorruptPolicy) ConsumerOption {
	return func(o *ConsumerOptions) { o.OnCorrupt = p }
}

// ConsumerStats are a consumer's counters since Subscribe.
type ConsumerStats struct {
	// SkippedBatches counts unreadable batches skipped under CorruptSkip.
	SkippedBatches int64
	// SkippedOffsets counts the offsets those batches held that were not returned (from each
	// batch's header: the records after the damage, or all of them).
	SkippedOffsets int64
}
