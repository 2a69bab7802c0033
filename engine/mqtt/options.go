package mqtt

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// Options configure a Server. The zero value of each field takes the default named at it.
type Options struct {
	// Addr is the TCP listen address. Default 127.0.0.1:1883; port 0 picks a free port (see Addr()).
	Addr string
	// Engine is the broker core the listener fronts. Required.
	Engine *engine.Engine
	// Loops is the number of gnet event loops. Default runtime.NumCPU().
	Loops int
	// MaxPacketSize is the largest packet accepted, in bytes, fixed header included; a larger one
	// closes the connection (MQTT 5: after a DISCONNECT 0x95). It is announced to MQTT 5 clients in
	// CONNACK. Default 1 MiB; at most 268,435,460 (MQTT's own limit).
	MaxPacketSize int
	// ReceiveMaximum is how many QoS 1 and 2 PUBLISHes of a connection may await their
	// acknowledgement (stored at MinDurability) at once; past it the connection is not read until
	// acknowledgements leave. Announced to MQTT 5 clients in CONNACK. Default 256, at most 65535.
	ReceiveMaximum int
	// MaxInflight caps the QoS 1 and 2 messages sent to one client and not yet acknowledged, below
	// the client's own receive maximum (MQTT 5; 65,535 when it names none). Default 64.
	MaxInflight int
	// MinDurability is the durability every PUBLISH is stored at before a QoS 1 PUBACK or a QoS 2
	// PUBREC is sent (none, written or fsync). Default none: acknowledged once appended.
	MinDurability wire.Durability
	// MaxConnections caps concurrent connections; extra ones are closed at once. Default 10000.
	MaxConnections int
	// MaxOutboundBytes caps what gnet may hold unsent for one connection: deliveries to it pause
	// while more is queued (the ticker looks again). Default 1 MiB.
	MaxOutboundBytes int
	// MaxSessions caps the sessions kept for clients that are not connected (clean session false,
	// or a session expiry interval); past it a new persistent session is refused (CONNACK 0x97 on
	// MQTT 5, 0x03 before). Default 100000.
	MaxSessions int
	// MaxSessionExpiry caps the session expiry interval a client may ask for (MQTT 5); MQTT 3.1.1
	// persistent sessions expire after it too. Default 7 days (the engine's group offsets
	// retention should be at least as long).
	MaxSessionExpiry time.Duration
	// MaxKeepAlive caps the keep-alive a client may ask for; MQTT 5 clients asking more are told it
	// in CONNACK (Server Keep Alive). 0 (the default) accepts what the client asks; a client asking
	// 0 (no keep-alive) is then held open however long it is silent.
	MaxKeepAlive time.Duration
	// ConnectTimeout closes a connection that has not sent CONNECT this long after it opened.
	// Default 10 s.
	ConnectTimeout time.Duration
	// TLSAddr and TLSConfig, when TLSConfig is set, open a second listener that serves the same
	// protocol over crypto/tls. Default TLSAddr 127.0.0.1:8883.
	TLSAddr   string
	TLSConfig *tls.Config
	// Authenticator, when Enabled, requires a username and password in CONNECT: the password is a
	// users-file password (PLAIN), or a token whose principal is the username; with no username,
	// the password alone may be a token.
	Authenticator *auth.Authenticator
	// ACL, when set, decides what a principal may do; nil allows everything.
	ACL auth.ACL
	// Logger receives connection-level logs. Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:1883"
	}
	if o.TLSAddr == "" {
		o.TLSAddr = "127.0.0.1:8883"
	}
	if o.Loops == 0 {
		o.Loops = runtime.NumCPU()
	}
	if o.MaxPacketSize == 0 {
		o.MaxPacketSize = 1 << 20
	}
	if o.ReceiveMaximum == 0 {
		o.ReceiveMaximum = 256
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = 64
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = 10000
	}
	if o.MaxOutboundBytes == 0 {
		o.MaxOutboundBytes = 1 << 20
	}
	if o.MaxSessions == 0 {
		o.MaxSessions = 100000
	}
	if o.MaxSessionExpiry == 0 {
		o.MaxSessionExpiry = 7 * 24 * time.Hour
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// maxMQTTPacket is the largest packet MQTT can express: a 4-byte remaining length of 268,435,455
// after a 1-byte header and the 4 length bytes.
const maxMQTTPacket = 1 + 4 + 268_435_455

// Validate reports the first invalid option.
func (o *Options) Validate() error {
	switch {
	case o.Engine == nil:
		return errors.New("mqtt: Engine is required")
	case o.Loops < 1:
		return fmt.Errorf("mqtt: Loops %d", o.Loops)
	case o.MaxPacketSize < 64 || o.MaxPacketSize > maxMQTTPacket:
		return fmt.Errorf("mqtt: MaxPacketSize %d outside [64, %d]", o.MaxPacketSize, maxMQTTPacket)
	case o.ReceiveMaximum < 1 || o.ReceiveMaximum > 65535:
		return fmt.Errorf("mqtt: ReceiveMaximum %d outside [1, 65535]", o.ReceiveMaximum)
	case o.MaxInflight < 1 || o.MaxInflight > 65535:
		return fmt.Errorf("mqtt: MaxInflight %d outside [1, 65535]", o.MaxInflight)
	case o.MinDurability > wire.DurabilityFsync:
		return fmt.Errorf("mqtt: MinDurability %d", o.MinDurability)
	case o.MaxConnections < 1 || o.MaxOutboundBytes < 1 || o.MaxSessions < 1 || o.MaxSessionExpiry < 0 ||
		o.MaxKeepAlive < 0 || o.ConnectTimeout < 0:
		return errors.New("mqtt: MaxConnections, MaxOutboundBytes, MaxSessions must be positive, MaxSessionExpiry, MaxKeepAlive, ConnectTimeout not negative")
	}
	return nil
}
