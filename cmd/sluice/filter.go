package main

import (
	"regexp"
	"strings"

	"github.com/sluicemq/sluice/client"
)

// headerTerm is one term of a header filter (docs/protocol.md, Subscribe): a header name, optionally
// negated, optionally with =value or !=value; no spaces, quotes or parentheses, which every CEL
// expression comparing anything has.
var headerTerm = regexp.MustCompile(`^!?[A-Za-z0-9._:/-]+((!?=)[^&"'()\s]*)?$`)

// filterOption is the consumer option of a --filter text: header terms ("region=eu&!debug") when every
// '&'-separated term reads as one, else a CEL expression (`value.temp > 30 && headers["region"] ==
// "eu"`), which the broker checks at subscribe.
func filterOption(text string) client.ConsumerOption {
	for _, t := range strings.Split(text, "&") {
		if !headerTerm.MatchString(t) {
			return client.WithFilterCEL(text)
		}
	}
	return client.WithFilter(text)
}
