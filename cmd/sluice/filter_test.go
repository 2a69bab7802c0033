package main

import (
	"testing"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

// TestFilterOption: --filter text that reads as header terms is sent as header terms; anything else
// (a CEL expression) as CEL.
func TestFilterOption(t *testing.T) {
	cases := []struct {
		text string
		want wire.FilterLang
	}{
		{"region=eu", wire.FilterHeaders},
		{"region=eu&tier!=gold&vip&!debug", wire.FilterHeaders},
		{"trace-id", wire.FilterHeaders},
		{`headers["region"] == "eu"`, wire.FilterCEL},
		{"value.temp > 30", wire.FilterCEL},
		{`key == b"k"`, wire.FilterCEL},
		{"has(value.temp)", wire.FilterCEL},
		{"a=b&value.x > 1", wire.FilterCEL},
	}
	for _, tc := range cases {
		var o client.ConsumerOptions
		filterOption(tc.text)(&o)
		if o.FilterLang != tc.want || o.Filter != tc.text {
			t.Errorf("%q: lang %d filter %q, want lang %d", tc.text, o.FilterLang, o.Filter, tc.want)
		}
	}
}
