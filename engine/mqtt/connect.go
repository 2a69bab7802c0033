package mqtt

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sluicemq/sluice/engine/auth"
)

// CONNECT. The packet is validated (packets.ConnectValidate), the credentials checked off the loop
// (a users-file password costs a key derivation), the session claimed (a connection holding the
// same client id is closed first: session takeover), then CONNACK sent and a resumed session's
// subscriptions reopened. No other packet is read meanwhile.

// connackRefuse sends a refusing CONNACK and closes. code is the MQTT 5 reason; v3 is what MQTT
// 3.1.1 says for it (0 to send nothing).
func (c *conn) connackRefuse(code, v3 byte) {
	c.srv.stats.ConnectRefused.Add(1)
	pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code}
	if c.version != 5 {
		pk.ReasonCode = v3
	}
	if c.version == 5 || v3 != 0 {
		c.write(pk)
	}
	c.dead = true
}

func (c *conn) onConnect(pk *packets.Packet) {
	if code := pk.ConnectValidate(); code != packets.CodeSuccess {
		c.version = pk.ProtocolVersion
		if code == packets.ErrProtocolViolationProtocolVersion || (pk.ProtocolVersion != 3 && pk.ProtocolVersion != 4 && pk.ProtocolVersion != 5) {
			if c.version != 5 {
				c.version = 4 // answer an unknown level in 3.1.1's form: 0x01
			}
			c.connackRefuse(packets.ErrUnsupportedProtocolVersion.Code, packets.Err3UnsupportedProtocolVersion.Code)
			return
		}
		c.connackRefuse(code.Code, 0)
		c.srv.stats.ProtocolErrors.Add(1)
		return
	}
	c.version = pk.ProtocolVersion
	id := pk.Connect.ClientIdentifier
	persistent := !pk.Connect.Clean
	var expiry time.Duration
	if c.version == 5 {
		persistent = pk.Properties.SessionExpiryInterval > 0
		expiry = time.Duration(pk.Properties.SessionExpiryInterval) * time.Second
		if pk.Properties.SessionExpiryInterval == 0xFFFFFFFF || expiry > c.srv.opts.MaxSessionExpiry {
			expiry = c.srv.opts.MaxSessionExpiry
		}
	} else if persistent {
		expiry = c.srv.opts.MaxSessionExpiry
	}
	assigned := ""
	if id == "" {
		if c.version != 5 && !pk.Connect.Clean {
			c.connackRefuse(packets.ErrClientIdentifierNotValid.Code, packets.Err3ClientIdentifierNotValid.Code)
			return
		}
		var b [12]byte
		_, _ = rand.Read(b[:])
		id = "auto-" + hex.EncodeToString(b[:])
		assigned = id
	}
	c.clientID = id
	ka := time.Duration(pk.Connect.Keepalive) * time.Second
	serverKA := false
	if m := c.srv.opts.MaxKeepAlive; m > 0 && (ka == 0 || ka > m) && c.version == 5 {
		ka, serverKA = m, true
	}
	c.keepAlive.Store(ka.Nanoseconds())
	c.window = c.srv.opts.MaxInflight
	if c.version == 5 {
		if rm := int(pk.Properties.ReceiveMaximum); rm > 0 && rm < c.window {
			c.window = rm
		}
		if mp := pk.Properties.MaximumPacketSize; mp > 0 {
			c.maxOut = int(mp)
		}
		c.maxAliases = 16
	}
	if pk.Connect.WillFlag {
		w := *pk
		w.TopicName, w.Payload = pk.Connect.WillTopic, pk.Connect.WillPayload
		w.FixedHeader = packets.FixedHeader{Type: packets.Publish, Qos: pk.Connect.WillQos, Retain: pk.Connect.WillRetain}
		w.Properties = pk.Connect.WillProperties
		c.will = &w
		if c.version == 5 {
			c.willDelay = time.Duration(pk.Connect.WillProperties.WillDelayInterval) * time.Second
		}
	}
	c.connecting, c.parked = true, true
	finish := func(c *conn, principal string) {
		c.principal = principal
		c.srv.sessions.claim(c, id, pk.Connect.Clean, persistent, expiry, func(c *conn, s *session, present bool, err error) {
			c.sessionClaimed(s, present, err, assigned, serverKA)
		})
	}
	a := c.srv.authn()
	if !a.Enabled() {
		finish(c, "")
		return
	}
	user, pass, hasPass := string(pk.Connect.Username), pk.Connect.Password, pk.Connect.PasswordFlag
	go func() {
		principal, err := authenticate(a, user, pass, hasPass)
		c.complete(func(c *conn) {
			if err != nil {
				c.srv.stats.AuthFailures.Add(1)
				c.srv.log.Debug("mqtt: authentication failed", "remote", c.remote, "client", id, "err", err)
				if errors.Is(err, errNoCredentials) {
					c.connackRefuse(packets.ErrNotAuthorized.Code, packets.Err3NotAuthorized.Code)
				} else {
					c.connackRefuse(packets.ErrBadUsernameOrPassword.Code, packets.ErrMalformedUsernameOrPassword.Code)
				}
				return
			}
			finish(c, principal)
		})
	}()
}

var errNoCredentials = errors.New("mqtt: no username or password")

// authenticate checks CONNECT's credentials: a username with a password goes through PLAIN (a
// users-file password, or a token whose principal is the username); a password alone is a token.
func authenticate(a *auth.Authenticator, user string, pass []byte, hasPass bool) (string, error) {
	if !hasPass {
		return "", errNoCredentials
	}
	if user == "" {
		conv, err := a.Start(auth.MechToken)
		if err != nil {
			return "", err
		}
		if _, _, err := conv.Step(pass); err != nil {
			return "", err
		}
		return conv.Principal(), nil
	}
	conv, err := a.Start(auth.MechPlain)
	if err != nil {
		return "", err
	}
	msg := make([]byte, 0, 2+len(user)+len(pass))
	msg = append(append(append(append(msg, 0), user...), 0), pass...)
	if _, _, err := conv.Step(msg); err != nil {
		return "", err
	}
	return conv.Principal(), nil
}

// sessionClaimed finishes CONNECT once the session is the connection's.
func (c *conn) sessionClaimed(s *session, present bool, err error, assigned string, serverKA bool) {
	if err != nil {
		c.srv.log.Warn("mqtt: session refused", "client", c.clientID, "err", err)
		c.connackRefuse(packets.ErrQuotaExceeded.Code, packets.Err3ServerUnavailable.Code)
		return
	}
	c.sess = s
	c.connecting, c.parked = false, false
	ack := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, SessionPresent: present}
	if c.version == 5 {
		p := &ack.Properties
		p.ReceiveMaximum = uint16(c.srv.opts.ReceiveMaximum)
		p.MaximumPacketSize = uint32(c.srv.opts.MaxPacketSize)
		p.TopicAliasMaximum = c.maxAliases
		p.AssignedClientID = assigned
		p.RetainAvailable, p.RetainAvailableFlag = 1, true
		p.WildcardSubAvailable, p.WildcardSubAvailableFlag = 1, true
		p.SubIDAvailable, p.SubIDAvailableFlag = 1, true
		p.SharedSubAvailable, p.SharedSubAvailableFlag = 1, true
		if serverKA {
			p.ServerKeepAlive, p.ServerKeepAliveFlag = uint16(c.keepAlive.Load()/int64(time.Second)), true
		}
	}
	c.write(ack)
	c.connected.Store(true)
	c.srv.stats.Connects.Add(1)
	if present {
		c.resume()
	}
}
