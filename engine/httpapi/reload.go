package httpapi

import (
	"errors"
	"maps"

	"github.com/sluicemq/sluice/engine/auth"
)

// authSettings is one consistent pair of authenticator and ACL rules. Immutable once stored:
// SetAuth replaces the whole value, so a request that loaded it reads maps nobody writes.
type authSettings struct {
	authn *auth.Authenticator // tokens and users; nil or not Enabled: authentication off
	acl   auth.ACL            // nil: ACLs off
}

// ErrAuthMode is returned by SetAuth for a change that would turn authentication or ACLs on or off,
// which takes a restart (as engine/server's SetAuth).
var ErrAuthMode = errors.New("httpapi: turning authentication or ACLs on or off needs a restart")

// SetAuth replaces the tokens (token -> principal) and the ACL rules, as sluiced does on SIGHUP for
// every face; the users (Basic through PLAIN) stay those of the Authenticator in force. Safe while
// the handler serves: each check loads the settings in force when it is made. tokens is copied;
// acl must not be modified afterwards. It fails with ErrAuthMode, changing nothing, when
// authentication would turn on or off, or acl become nil or non-nil. An open work-queue session or
// SSE stream stays authorized, as a native subscription does.
func (h *Handler) SetAuth(tokens map[string]string, acl auth.ACL) error {
	cur := h.auth.Load()
	var users *auth.Users
	if cur.authn != nil {
		users = cur.authn.Users
	}
	next := &authSettings{authn: &auth.Authenticator{Tokens: maps.Clone(tokens), Users: users}, acl: acl}
	if next.authn.Enabled() != cur.authn.Enabled() || (acl != nil) != (cur.acl != nil) {
		return ErrAuthMode
	}
	h.auth.Store(next)
	return nil
}

// authn is the Authenticator in force (nil: authentication off).
func (h *Handler) authn() *auth.Authenticator { return h.auth.Load().authn }

// acl is the ACL in force (nil: ACLs off).
func (h *Handler) acl() auth.ACL { return h.auth.Load().acl }
