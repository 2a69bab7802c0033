package server

import (
	"errors"
	"testing"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
)

// TestOptionsValidateWrapsErrOptions: every invalid option is reported as ErrOptions, so a caller
// tells a configuration mistake from a failure to listen.
func TestOptionsValidateWrapsErrOptions(t *testing.T) {
	valid := func() Options {
		o := Options{Engine: &engine.Engine{}}
		o.setDefaults()
		return o
	}
	if o := valid(); o.Validate() != nil {
		t.Fatalf("the defaults are invalid: %v", o.Validate())
	}
	for name, spoil := range map[string]func(*Options){
		"no engine":            func(o *Options) { o.Engine = nil },
		"no loops":             func(o *Options) { o.Loops = 0 },
		"small frame":          func(o *Options) { o.MaxFrame = 1 },
		"durability":           func(o *Options) { o.MinDurability = 9 },
		"subscriptions":        func(o *Options) { o.MaxSubscriptionsPerConn = 0 },
		"pending acks":         func(o *Options) { o.MaxPendingAcks = 0 },
		"pre-auth frame":       func(o *Options) { o.MaxPreAuthFrame = 1 },
		"handshake timeout":    func(o *Options) { o.HandshakeTimeout = -1 },
		"unauthenticated":      func(o *Options) { o.MaxUnauthenticated = o.MaxConnections + 1 },
		"unauthenticated/addr": func(o *Options) { o.MaxUnauthenticatedPerAddr = o.MaxUnauthenticated + 1 },
		"two token sets": func(o *Options) {
			o.Tokens, o.Authenticator = map[string]string{"a": "x"}, &auth.Authenticator{Tokens: map[string]string{"b": "y"}}
		},
	} {
		o := valid()
		spoil(&o)
		if err := o.Validate(); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: %v, want ErrOptions", name, err)
		}
	}
}
