// Package auth is the broker's authorization model, shared by every network face (the native
// protocol, Kafka, MQTT, HTTP): who may act on which topics and groups.
package auth

import (
	"fmt"
	"strings"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/wire"
)

// The authorization model, as Kafka's: an ACL grants a principal actions on resources of two types,
// topics and consumer groups, and every operation names the rights it needs on each resource it
// touches (docs/security.md has the table). Two kinds of topic take their rights from something else
// than rules on their own names:
//
//   - a dead-letter topic "<t>.dlq" belongs to t: consuming it needs consume on t, and producing to,
//     creating or deleting it needs admin on t (its records are written by the broker);
//   - a reply inbox "_inbox.<owner>.<id>" (wire.InboxName) belongs to its owner, who alone may
//     consume, describe in a listing, create (memory-only, one partition) and delete it; any
//     authenticated principal may produce to it (a reply) and describe it, as a responder's producer
//     must learn its partition count.
//
// Describing a topic needs any right on it. Listings show only what the principal may describe
// (inboxes only to their owner). Without an ACL every authenticated principal may do everything.

// Action is what an ACL rule grants. A set of actions (ActProduce|ActConsume) asks for any of them.
type Action uint8

const (
	ActProduce Action = 1 << iota // topic: append
	ActConsume                    // topic: subscribe, commit and fetch its offsets; group: join, commit, fetch, describe
	ActAdmin                      // topic: create (also by a produce that auto-creates) and delete
)

// ActDescribe is every action: describing a topic needs any right on it.
const ActDescribe = ActProduce | ActConsume | ActAdmin

func (a Action) String() string {
	switch a {
	case ActProduce:
		return "produce"
	case ActConsume:
		return "consume"
	case ActAdmin:
		return "admin"
	case ActDescribe:
		return "describe"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// ResourceType is the kind of object an ACL rule names.
type ResourceType uint8

const (
	ResTopic ResourceType = iota // a topic, by name
	ResGroup                     // a consumer group or work queue group, by name
)

func (t ResourceType) String() string {
	if t == ResGroup {
		return "group"
	}
	return "topic"
}

// Resource is one object an operation touches.
type Resource struct {
	Type ResourceType
	Name string
}

// ACL decides whether a principal may act on a resource: act may be a set, and Allow reports
// whether any of its actions is granted. Dead-letter topics and reply inboxes never reach an ACL:
// the broker resolves them to their source topic or owner first. It is consulted on the event loop:
// it must be fast, must not block, and must not allocate on a grant.
type ACL interface {
	Allow(principal string, act Action, res Resource) bool
}

// Rule grants a principal ("*" for any) some actions on topics or on groups matching a pattern: an
// exact name, a prefix ending in '*' ("orders.*" matches "orders.eu"), or "*" for every name.
// Exactly one of Topic and Group is set.
type Rule struct {
	Principal string
	Actions   Action
	Topic     string // topic pattern; empty in a group rule
	Group     string // group pattern; empty in a topic rule
}

// Rules is an ACL that allows what any of its rules grants and denies everything else.
type Rules []Rule

// Allow implements ACL.
func (rs Rules) Allow(principal string, act Action, res Resource) bool {
	for _, r := range rs {
		if r.Actions&act == 0 || (r.Principal != "*" && r.Principal != principal) {
			continue
		}
		pattern := r.Topic
		if res.Type == ResGroup {
			pattern = r.Group
		}
		if pattern != "" && matches(pattern, res.Name) {
			return true
		}
	}
	return false
}

func matches(pattern, name string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(name, prefix)
	}
	return pattern == name
}

// ParseRule reads a rule in one of three forms:
//
//	principal:actions:topic-pattern         actions: produce, consume, admin, all (comma list)
//	principal:actions:topic:topic-pattern
//	principal:actions:group:group-pattern   actions: consume or all
//
// A topic pattern may not name a reply inbox or a dead-letter topic: their rights come from their
// owner and their source topic.
func ParseRule(s string) (Rule, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 || parts[0] == "" || parts[2] == "" {
		return Rule{}, fmt.Errorf("auth: acl rule %q: want principal:actions:[topic:|group:]pattern", s)
	}
	r := Rule{Principal: parts[0]}
	typ := ResTopic
	if g, ok := strings.CutPrefix(parts[2], "group:"); ok {
		typ, r.Group = ResGroup, g
	} else {
		r.Topic = strings.TrimPrefix(parts[2], "topic:")
	}
	for _, a := range strings.Split(parts[1], ",") {
		switch {
		case a == "consume":
			r.Actions |= ActConsume
		case a == "all" && typ == ResGroup:
			r.Actions |= ActConsume
		case a == "all":
			r.Actions |= ActDescribe
		case a == "produce" && typ == ResTopic:
			r.Actions |= ActProduce
		case a == "admin" && typ == ResTopic:
			r.Actions |= ActAdmin
		default:
			return Rule{}, fmt.Errorf("auth: acl rule %q: action %q does not apply to a %s", s, a, typ)
		}
	}
	switch {
	case typ == ResGroup && r.Group == "":
		return Rule{}, fmt.Errorf("auth: acl rule %q: empty group pattern", s)
	case typ == ResTopic:
		if err := checkTopicPattern(r.Topic); err != nil {
			return Rule{}, fmt.Errorf("auth: acl rule %q: %w", s, err)
		}
	}
	return r, nil
}

func checkTopicPattern(p string) error {
	name := strings.TrimSuffix(p, "*")
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic pattern %q: only [A-Za-z0-9._-] and a trailing '*'", p)
		}
	}
	switch {
	case p == "":
		return fmt.Errorf("empty topic pattern")
	case wire.IsInbox(name):
		return fmt.Errorf("reply inboxes belong to their owner: rules do not reach them (docs/security.md)")
	case len(name) == len(p) && strings.HasSuffix(p, engine.DeadLetterSuffix):
		return fmt.Errorf("a dead-letter topic takes the rights of its source: write the rule for %q", strings.TrimSuffix(p, engine.DeadLetterSuffix))
	}
	return nil
}

// MayTopic reports whether principal may do act (a set: any of it) on the topic name, resolving
// dead-letter topics to their source and inboxes to their owner. A nil acl allows everything.
// It does not allocate.
func MayTopic(acl ACL, principal string, act Action, name string) bool {
	if acl == nil {
		return true
	}
	for {
		src, ok := strings.CutSuffix(name, engine.DeadLetterSuffix)
		if !ok || src == "" {
			break
		}
		name = src
		if act&ActProduce != 0 {
			act = act&^ActProduce | ActAdmin // dead letters are the broker's to write
		}
	}
	if wire.IsInbox(name) {
		return wire.InboxOwnedBy(name, principal) || act&ActProduce != 0
	}
	return acl.Allow(principal, act, Resource{Type: ResTopic, Name: name})
}

// MayList reports whether a listing shows the topic name to principal: any right on it, and for an
// inbox (or its dead letters) ownership, not the reply right every principal has.
func MayList(acl ACL, principal, name string) bool {
	if acl != nil && wire.IsInbox(name) {
		return wire.InboxOwnedBy(name, principal)
	}
	return MayTopic(acl, principal, ActDescribe, name)
}

// MayCreate reports whether principal may create a topic with cfg: admin on its name; an inbox only
// memory-only with one partition, which is all its owner's implicit right covers.
func MayCreate(acl ACL, principal string, cfg wire.TopicConfig) bool {
	if !MayTopic(acl, principal, ActAdmin, cfg.Name) {
		return false
	}
	return acl == nil || !wire.IsInbox(cfg.Name) || (cfg.Flags&wire.TopicMemory != 0 && cfg.Partitions == 1)
}

// MayGroup reports whether principal may do act on the group name. A nil acl allows everything.
func MayGroup(acl ACL, principal string, act Action, name string) bool {
	return acl == nil || acl.Allow(principal, act, Resource{Type: ResGroup, Name: name})
}
