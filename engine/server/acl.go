package server

import (
	"fmt"
	"strings"
)

// Action is what an ACL rule grants.
type Action uint8

const (
	ActProduce Action = 1 << iota // append to a topic
	ActConsume                    // subscribe to a topic, commit and fetch its offsets
	ActAdmin                      // create and delete a topic
)

func (a Action) String() string {
	switch a {
	case ActProduce:
		return "produce"
	case ActConsume:
		return "consume"
	case ActAdmin:
		return "admin"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// ACL decides whether a principal may act on a topic. It is consulted on the event loop: it must be
// fast and must not block.
type ACL interface {
	Allow(principal string, act Action, topic string) bool
}

// Rule grants a principal ("*" for any) some actions on topics matching a pattern: an exact name, or
// a prefix ending in '*' ("orders.*" matches "orders.eu"), or "*" for every topic.
type Rule struct {
	Principal string
	Actions   Action
	Topic     string
}

// Rules is an ACL that allows what any of its rules grants and denies everything else.
type Rules []Rule

// Allow implements ACL.
func (rs Rules) Allow(principal string, act Action, topic string) bool {
	for _, r := range rs {
		if r.Actions&act == 0 || (r.Principal != "*" && r.Principal != principal) {
			continue
		}
		if r.Topic == topic || r.Topic == "*" ||
			(strings.HasSuffix(r.Topic, "*") && strings.HasPrefix(topic, r.Topic[:len(r.Topic)-1])) {
			return true
		}
	}
	return false
}

// ParseRule reads "principal:actions:topic", actions a comma list of produce, consume, admin, all.
func ParseRule(s string) (Rule, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 || parts[0] == "" || parts[2] == "" {
		return Rule{}, fmt.Errorf("server: acl rule %q: want principal:actions:topic", s)
	}
	r := Rule{Principal: parts[0], Topic: parts[2]}
	for _, a := range strings.Split(parts[1], ",") {
		switch a {
		case "produce":
			r.Actions |= ActProduce
		case "consume":
			r.Actions |= ActConsume
		case "admin":
			r.Actions |= ActAdmin
		case "all":
			r.Actions |= ActProduce | ActConsume | ActAdmin
		default:
			return Rule{}, fmt.Errorf("server: acl rule %q: unknown action %q", s, a)
		}
	}
	return r, nil
}
