package auth

import "maps"

// Reload builds the authenticator that replaces cur on a reload (sluiced's SIGHUP): its tokens
// (token -> principal) are a copy of tokens, its users those of cur (none when cur is nil). curACL
// and acl are the ACL rules in force and those to come (nil: ACLs off). ok is false when the change
// would turn authentication on or off, or ACLs on or off, which takes a restart (connections
// admitted without authentication cannot be asked for it later); the caller then changes nothing.
func Reload(cur *Authenticator, curACL, acl ACL, tokens map[string]string) (next *Authenticator, ok bool) {
	var users *Users
	if cur != nil {
		users = cur.Users
	}
	next = &Authenticator{Tokens: maps.Clone(tokens), Users: users}
	if next.Enabled() != cur.Enabled() || (acl != nil) != (curACL != nil) {
		return nil, false
	}
	return next, true
}
