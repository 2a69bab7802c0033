package server

import (
	"errors"
	"maps"
)

// authState is one consistent set of tokens and ACL rules. It is immutable once stored: SetAuth
// replaces the whole value, so an event loop that loaded it reads a map and a slice nobody writes.
type authState struct {
	tokens map[string]string // token -> principal; empty: no authentication
	acl    ACL               // nil: ACLs off
}

// ErrAuthMode is returned by SetAuth for a change that would turn authentication or ACLs on or off,
// which takes a restart (connections admitted without authentication cannot be asked for it later).
var ErrAuthMode = errors.New("server: turning authentication or ACLs on or off needs a restart")

// SetAuth replaces the tokens (token -> principal) and ACL rules, as sluiced does on SIGHUP. It is
// safe while the server runs: loops read the settings through an atomic pointer, and each request is
// checked against the settings in force when it is served. A connection keeps the principal it
// authenticated as (a removed token does not close it; its requests are then authorized by the new
// rules for that principal). tokens is copied; acl must not be modified afterwards. It fails with ErrAuthMode, changing nothing,
// when tokens would become empty or non-empty, or acl nil or non-nil, unlike at Start.
func (s *Server) SetAuth(tokens map[string]string, acl ACL) error {
	cur := s.auth.Load()
	if (len(tokens) > 0) != (len(cur.tokens) > 0) || (acl != nil) != (cur.acl != nil) {
		return ErrAuthMode
	}
	s.auth.Store(&authState{tokens: maps.Clone(tokens), acl: acl})
	return nil
}
