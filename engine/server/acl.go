package server

import "github.com/sluicemq/sluice/engine/auth"

// The authorization model lives in package auth, shared with the other network faces; these names
// keep the server's Options readable.
type (
	Action       = auth.Action
	ResourceType = auth.ResourceType
	Resource     = auth.Resource
	ACL          = auth.ACL
	Rule         = auth.Rule
	Rules        = auth.Rules
)

const (
	ActProduce = auth.ActProduce
	ActConsume = auth.ActConsume
	ActAdmin   = auth.ActAdmin
	ResTopic   = auth.ResTopic
	ResGroup   = auth.ResGroup
)

// ParseRule reads one ACL rule (auth.ParseRule).
func ParseRule(s string) (Rule, error) { return auth.ParseRule(s) }
