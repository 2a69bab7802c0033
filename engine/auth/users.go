package auth

import "fmt"

// Users is the store of user credentials: for each user name, salted and iterated verifiers
// (RFC 5802's StoredKey and ServerKey), never the password. A nil *Users holds nobody.
type Users struct {
	users map[string]struct{}
}

// Len reports how many users the store holds; 0 for nil.
func (u *Users) Len() int {
	if u == nil {
		return 0
	}
	return len(u.users)
}

// verifyPassword reports whether pass is user's password.
func (u *Users) verifyPassword(user string, pass []byte) bool {
	return false
}

// startSCRAM begins a SCRAM exchange with mechanism (MechSCRAM256 or MechSCRAM512).
func (u *Users) startSCRAM(mechanism string) (Conversation, error) {
	return nil, fmt.Errorf("%w %q", ErrMechanism, mechanism)
}
