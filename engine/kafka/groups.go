package kafka

import (
	"log/slog"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
)

// requestContext is what a group request carries besides its body: who sent it and from where.
type requestContext struct {
	Principal  string // authenticated principal; "" without authentication
	ClientID   string // the request header's client id
	ClientHost string // the peer's address, "ip:port"
}

// coordinator is the group coordinator of Kafka's classic protocol (JoinGroup, SyncGroup,
// Heartbeat, LeaveGroup with client-side assignors), with offsets kept in the engine's durable
// offset store shared with native consumer groups.
type coordinator struct {
	e   *engine.Engine
	acl auth.ACL
	log *slog.Logger
}

func newCoordinator(e *engine.Engine, acl auth.ACL, log *slog.Logger) *coordinator {
	return &coordinator{e: e, acl: acl, log: log}
}

// handles reports whether key is an API the coordinator serves.
func (c *coordinator) handles(key int16) bool { return false }

// serve answers a group request (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
// OffsetFetch, DescribeGroups, ListGroups, DeleteGroups). It never blocks: respond is called
// exactly once, possibly later and from another goroutine (a JoinGroup waits for the rebalance).
func (c *coordinator) serve(rc requestContext, req kmsg.Request, respond func(kmsg.Response)) {
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	respond(resp)
}

// close ends every pending request and timer.
func (c *coordinator) close() {}
