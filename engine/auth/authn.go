package auth

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
)

// Authentication: a connection proves it speaks for a principal through one of the SASL-style
// mechanisms below, in one or more steps. Every network face runs the same conversations, so a
// principal is the same whichever protocol it arrives by.
//
//   - "token" (native protocol): one step, the payload is a bearer token; Tokens maps it to the
//     principal.
//   - "PLAIN" (RFC 4616): one step, "authzid \x00 username \x00 password". The password is either a
//     token whose principal is username, or the password of a user in Users.
//   - "SCRAM-SHA-256" / "SCRAM-SHA-512" (RFC 5802, RFC 7677): against Users.

// Mechanism names, as SASL spells them.
const (
	MechToken    = "token"
	MechPlain    = "PLAIN"
	MechSCRAM256 = "SCRAM-SHA-256"
	MechSCRAM512 = "SCRAM-SHA-512"
)

var (
	// ErrMechanism is returned by Start for a mechanism this Authenticator does not offer.
	ErrMechanism = errors.New("auth: unsupported mechanism")
	// ErrFailed is returned by a Conversation's Step when the credentials are wrong. It says no more
	// than that, on purpose.
	ErrFailed = errors.New("auth: authentication failed")
	// ErrMalformed is returned by Step for a message that does not parse.
	ErrMalformed = errors.New("auth: malformed authentication message")
)

// Authenticator holds what a face needs to authenticate connections. The zero value (nil maps and
// Users) accepts nobody; Enabled reports whether authentication is required at all.
type Authenticator struct {
	// Tokens maps a bearer token to its principal. Read-only once the Authenticator is in use.
	Tokens map[string]string
	// Users holds salted password verifiers (SCRAM, and PLAIN against them); nil for none.
	Users *Users
}

// Enabled reports whether connections must authenticate: any token or any user is configured.
func (a *Authenticator) Enabled() bool {
	return a != nil && (len(a.Tokens) > 0 || a.Users.Len() > 0)
}

// Mechanisms lists the SASL mechanisms a Kafka-style face should advertise, in preference order.
func (a *Authenticator) Mechanisms() []string {
	m := []string{}
	if a.Users.Len() > 0 {
		m = append(m, MechSCRAM512, MechSCRAM256)
	}
	return append(m, MechPlain)
}

// Conversation is one authentication exchange. Step takes the client's next message and returns
// the server's answer; done reports the exchange is complete and Principal is set. A failed step
// returns ErrFailed or ErrMalformed (possibly wrapped) and the conversation is over; its out may
// then still hold a message for the client (SCRAM's server-final "e=invalid-proof"), which a face
// may pass on. The error's text is for the broker's log: it may say more than the client is told
// (never whether a user exists). A Conversation is used by one goroutine at a time.
type Conversation interface {
	Step(in []byte) (out []byte, done bool, err error)
	Principal() string
}

// Start begins a conversation with mechanism (case-sensitive SASL name, or MechToken).
// It returns ErrMechanism for one not offered.
func (a *Authenticator) Start(mechanism string) (Conversation, error) {
	switch mechanism {
	case MechToken:
		return &tokenConv{a: a}, nil
	case MechPlain:
		return &plainConv{a: a}, nil
	case MechSCRAM256, MechSCRAM512:
		if a.Users.Len() > 0 {
			return a.Users.startSCRAM(mechanism)
		}
	}
	return nil, fmt.Errorf("%w %q", ErrMechanism, mechanism)
}

// Token returns the principal a bearer token maps to.
func (a *Authenticator) Token(token []byte) (string, bool) {
	p, ok := a.Tokens[string(token)]
	return p, ok
}

type tokenConv struct {
	a         *Authenticator
	principal string
}

func (c *tokenConv) Step(in []byte) ([]byte, bool, error) {
	p, ok := c.a.Token(in)
	if !ok {
		return nil, false, ErrFailed
	}
	c.principal = p
	return []byte(p), true, nil
}

func (c *tokenConv) Principal() string { return c.principal }

type plainConv struct {
	a         *Authenticator
	principal string
}

func (c *plainConv) Step(in []byte) ([]byte, bool, error) {
	// RFC 4616: [authzid] NUL authcid NUL passwd.
	parts := bytes.Split(in, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return nil, false, ErrMalformed
	}
	authz, user, pass := string(parts[0]), string(parts[1]), parts[2]
	if authz != "" && authz != user {
		return nil, false, ErrFailed // acting as another principal is not offered
	}
	if p, ok := c.a.Token(pass); ok && subtle.ConstantTimeCompare([]byte(p), []byte(user)) == 1 {
		c.principal = p
		return nil, true, nil
	}
	if c.a.Users.verifyPassword(user, pass) {
		c.principal = user
		return nil, true, nil
	}
	return nil, false, ErrFailed
}

func (c *plainConv) Principal() string { return c.principal }
