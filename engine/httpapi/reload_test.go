package httpapi

import (
	"errors"
	"net/http"
	"testing"

	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// TestSetAuth: new tokens and rules apply from the next request (a removed token is refused, a new
// one accepted, a rule's right taken away is refused), the users stay, and a change that would turn
// authentication or ACLs off is refused with ErrAuthMode, changing nothing.
func TestSetAuth(t *testing.T) {
	f := aclFixture(t)
	f.must("POST", "/v1/topics/orders.eu/records", "ta", `{"records":[{"value":"x"}]}`, 200, nil)

	rule := func(s string) auth.Rule {
		r, err := auth.ParseRule(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if err := f.h.SetAuth(map[string]string{"tn": "alice"}, auth.Rules{rule("alice:consume:orders.*")}); err != nil {
		t.Fatal(err)
	}
	f.wantError("GET", "/v1/whoami", "ta", nil, 401, wire.CodeAuthFailed)
	var who Whoami
	f.must("GET", "/v1/whoami", "tn", nil, 200, &who)
	if who.Principal != "alice" || !who.ACLEnabled {
		t.Fatalf("whoami with the new token: %+v", who)
	}
	f.wantError("POST", "/v1/topics/orders.eu/records", "tn", `{"records":[{"value":"x"}]}`, 403, wire.CodeNotAuthorized)
	f.must("GET", "/v1/topics/orders.eu/partitions/0/records?from=earliest", "tn", nil, 200, nil)

	if err := f.h.SetAuth(map[string]string{"tn": "alice"}, nil); !errors.Is(err, ErrAuthMode) {
		t.Fatalf("ACLs off: %v, want ErrAuthMode", err)
	}
	f.wantError("POST", "/v1/topics/orders.eu/records", "tn", `{"records":[{"value":"x"}]}`, 403, wire.CodeNotAuthorized)
	// No token left, but carol (a user) keeps authentication on: allowed.
	if err := f.h.SetAuth(nil, auth.Rules{rule("alice:all:*")}); err != nil {
		t.Fatalf("tokens removed, users kept: %v", err)
	}
	f.wantError("GET", "/v1/whoami", "tn", nil, 401, wire.CodeAuthFailed)
	req, _ := http.NewRequest("GET", f.srv.URL+"/v1/topics", nil)
	req.SetBasicAuth("carol", "s3cret")
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("carol (a user) after SetAuth: %d, want 200", resp.StatusCode)
	}
}
