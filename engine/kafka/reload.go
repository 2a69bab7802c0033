package kafka

import (
	"errors"

	"github.com/sluicemq/sluice/engine/auth"
)

// authState is one consistent pair of authenticator and ACL, immutable once stored: SetAuth replaces
// the whole value, so a loop that loaded it reads maps nobody writes.
type authState struct {
	authn *auth.Authenticator // tokens and users; authentication is on when it is Enabled
	acl   auth.ACL            // nil: ACLs off
}

// ErrAuthMode is returned by SetAuth for a change that would turn authentication or ACLs on or off,
// which takes a restart (connections admitted without authentication cannot be asked for it later).
var ErrAuthMode = errors.New("kafka: turning authentication or ACLs on or off needs a restart")

// SetAuth replaces the tokens (token -> principal) and the ACL rules, as sluiced does on SIGHUP; the
// users (SCRAM, PLAIN) stay those in force. Safe while the listener runs: every request, and every
// group request the coordinator serves, is checked against the settings in force when it is served;
// a connection keeps the principal it authenticated as. tokens is copied; acl must not be modified
// afterwards. It fails with ErrAuthMode, changing nothing, when authentication would turn on or off,
// or acl become nil or non-nil.
func (s *Server) SetAuth(tokens map[string]string, acl auth.ACL) error {
	cur := s.auth.Load()
	authn, ok := auth.Reload(cur.authn, cur.acl, acl, tokens)
	if !ok {
		return ErrAuthMode
	}
	s.auth.Store(&authState{authn: authn, acl: acl})
	return nil
}

// acl is the ACL in force (nil: ACLs off).
func (s *Server) acl() auth.ACL { return s.auth.Load().acl }

// authn is the authenticator in force.
func (s *Server) authn() *auth.Authenticator { return s.auth.Load().authn }
