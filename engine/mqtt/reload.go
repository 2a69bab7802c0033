package mqtt

import (
	"errors"

	"github.com/sluicemq/sluice/engine/auth"
)

// ErrAuthMode is returned by SetAuth for a change that would turn authentication or ACLs on or off,
// which takes a restart (connections admitted without authentication cannot be asked for it later).
var ErrAuthMode = errors.New("mqtt: turning authentication or ACLs on or off needs a restart")

// SetAuth replaces the tokens (token -> principal) and the ACL rules, as sluiced does on SIGHUP; the
// users stay those in force. Each packet is checked against the settings in force when it is
// served; a connection keeps the principal it authenticated as. tokens is copied; acl must not be
// modified afterwards. It fails with ErrAuthMode, changing nothing, when authentication would turn
// on or off, or acl become nil or non-nil.
func (s *Server) SetAuth(tokens map[string]string, acl auth.ACL) error {
	cur := s.auth.Load()
	authn, ok := auth.Reload(cur.authn, cur.acl, acl, tokens)
	if !ok {
		return ErrAuthMode
	}
	s.auth.Store(&authState{authn: authn, acl: acl})
	return nil
}
