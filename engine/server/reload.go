package server

import (
	"errors"
	"maps"

	"github.com/sluicemq/sluice/engine/auth"
)

// authState is one consistent pair of authenticator and ACL rules. It is immutable once stored:
// SetAuth replaces the whole value, so an event loop that loaded it reads maps nobody writes.
type authState struct {
	authn *auth.Authenticator // tokens and users; authentication is on when it is Enabled
	acl   ACL                 // nil: ACLs off
}

// ErrAuthMode is returned by SetAuth for a change that would turn authentication or ACLs on or off,
// which takes a restart (connections admitted without authentication cannot be asked for it later).
var ErrAuthMode = errors.New("server: turning authentication or ACLs on or off needs a restart")

// SetAuth replaces the tokens (token -> principal) and the ACL rules, as sluiced does on SIGHUP; the
// users (SCRAM, PLAIN) stay those of the Authenticator in force. It is safe while the server runs:
// loops read the settings through an atomic pointer, and each request is checked against the
// settings in force when it is served. A connection keeps the principal it authenticated as (a
// removed token does not close it; its requests are then authorized by the new rules for that
// principal). tokens is copied; acl must not be modified afterwards. It fails with ErrAuthMode,
// changing nothing, when authentication would turn on or off, or acl become nil or non-nil.
func (s *Server) SetAuth(tokens map[string]string, acl ACL) error {
	cur := s.auth.Load()
	var users *auth.Users
	if cur.authn != nil {
		users = cur.authn.Users
	}
	next := &authState{authn: &auth.Authenticator{Tokens: maps.Clone(tokens), Users: users}, acl: acl}
	if next.authn.Enabled() != cur.authn.Enabled() || (acl != nil) != (cur.acl != nil) {
		return ErrAuthMode
	}
	s.auth.Store(next)
	return nil
}
