package auth

import "testing"

// TestReload keeps the users in force, copies the tokens, and refuses a change that turns
// authentication or ACLs on or off.
func TestReload(t *testing.T) {
	users := &Users{}
	cur := &Authenticator{Tokens: map[string]string{"old": "alice"}, Users: users}
	rules := Rules{{Principal: "alice"}}
	tokens := map[string]string{"new": "bob"}

	next, ok := Reload(cur, rules, rules, tokens)
	if !ok || next.Users != users || next.Tokens["new"] != "bob" || len(next.Tokens) != 1 {
		t.Fatalf("Reload = %+v, %v; want the new tokens and the users in force", next, ok)
	}
	tokens["new"] = "mallory"
	if next.Tokens["new"] != "bob" {
		t.Error("tokens not copied")
	}

	for _, tc := range []struct {
		name        string
		cur         *Authenticator
		curACL, acl ACL
		tokens      map[string]string
	}{
		{"authentication off", cur, rules, rules, nil},
		{"authentication on", nil, rules, rules, map[string]string{"t": "p"}},
		{"ACLs off", cur, rules, nil, map[string]string{"t": "p"}},
		{"ACLs on", cur, nil, rules, map[string]string{"t": "p"}},
	} {
		if next, ok := Reload(tc.cur, tc.curACL, tc.acl, tc.tokens); ok || next != nil {
			t.Errorf("%s: Reload = %+v, %v; want refused", tc.name, next, ok)
		}
	}
	if next, ok := Reload(nil, nil, nil, nil); !ok || next.Enabled() {
		t.Errorf("off to off: Reload = %+v, %v; want an authenticator that is not enabled", next, ok)
	}
}
