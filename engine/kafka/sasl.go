package kafka

import (
	"encoding/binary"
	"errors"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/engine/auth"
)

// SASL. SaslHandshake names a mechanism and starts its conversation (auth.Authenticator.Start);
// the client's messages then arrive in SaslAuthenticate requests (handshake v1), or, after a v0
// handshake, as bare frames (int32 size | SASL bytes) answered the same way. Each step runs off the
// loop (SCRAM's key derivation is slow) and nothing more is read until it has answered. A failed
// step is answered (SASL_AUTHENTICATION_FAILED, or for bare frames nothing) and the connection
// closes, as Kafka does.

func (c *conn) saslHandshake(h header, req *kmsg.SASLHandshakeRequest) {
	resp := kmsg.NewPtrSASLHandshakeResponse()
	resp.SetVersion(h.version)
	a := c.srv.authn()
	if !a.Enabled() {
		resp.ErrorCode = errIllegalSASLState // authentication is off: nothing to authenticate against
		c.reply(h.corr, resp)
		return
	}
	resp.SupportedMechanisms = a.Mechanisms()
	if c.authed || req.Mechanism == auth.MechToken {
		resp.ErrorCode = errUnsupportedSASLMechanism
		if c.authed {
			resp.ErrorCode = errIllegalSASLState
		}
		c.reply(h.corr, resp)
		return
	}
	conv, err := a.Start(req.Mechanism)
	if err != nil {
		resp.ErrorCode = errUnsupportedSASLMechanism
		c.reply(h.corr, resp)
		return
	}
	c.sasl, c.saslMech, c.saslRaw = conv, req.Mechanism, h.version == 0
	c.reply(h.corr, resp)
}

func (c *conn) saslAuthenticate(h header, req *kmsg.SASLAuthenticateRequest) {
	if c.sasl == nil || c.authed {
		resp := kmsg.NewPtrSASLAuthenticateResponse()
		resp.SetVersion(h.version)
		resp.ErrorCode, resp.ErrorMessage = errIllegalSASLState, strPtr("SaslAuthenticate without a SaslHandshake")
		c.reply(h.corr, resp)
		c.dead = true
		return
	}
	conv, version, in := c.sasl, h.version, req.SASLAuthBytes
	c.authBusy = true
	c.later(h.corr, func() (kmsg.Response, func(*conn), bool) {
		out, done, err := conv.Step(in)
		resp := kmsg.NewPtrSASLAuthenticateResponse()
		resp.SetVersion(version)
		resp.SASLAuthBytes = out
		if err != nil {
			resp.ErrorCode = errSASLAuthenticationFailed
			msg := "authentication failed"
			if errors.Is(err, auth.ErrMalformed) {
				msg = "malformed authentication message"
			}
			resp.ErrorMessage = &msg
		}
		return resp, func(c *conn) { c.saslStepped(conv, done, err) }, err != nil
	})
}

// saslStepped applies a finished SASL step on the loop.
func (c *conn) saslStepped(conv auth.Conversation, done bool, err error) {
	c.authBusy = false
	if err != nil {
		c.srv.stats.SASLFailures.Add(1)
		c.srv.log.Debug("kafka: authentication failed", "remote", c.remote, "mechanism", c.saslMech, "err", err)
		c.sasl = nil
		return
	}
	if done {
		c.authed, c.principal, c.sasl, c.saslRaw = true, conv.Principal(), nil, false
		c.authDone.Store(true)
	}
}

// saslRawStep serves one bare SASL frame after a v0 handshake.
func (c *conn) saslRawStep(frame []byte) {
	conv := c.sasl
	in := append([]byte(nil), frame...)
	c.authBusy = true
	seq, _ := c.q.push()
	go func() {
		out, done, err := conv.Step(in)
		var buf []byte
		if err == nil {
			buf = binary.BigEndian.AppendUint32(nil, uint32(len(out)))
			buf = append(buf, out...)
		}
		c.complete(asyncDone{seq: seq, buf: buf, close: err != nil,
			apply: func(c *conn) { c.saslStepped(conv, done, err) }})
	}()
}
