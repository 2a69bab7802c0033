package client

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// Admin and metadata types are the protocol's own.
type (
	// TopicConfig describes a topic: name, partitions, retention, flags.
	TopicConfig = wire.TopicConfig
	// TopicInfo is a topic's configuration with each partition's offsets.
	TopicInfo = wire.TopicInfo
	// PartitionInfo is one partition's offsets and size.
	PartitionInfo = wire.PartitionInfo
	// GroupInfo is a consumer group's members, their partitions and the committed offsets.
	GroupInfo = wire.GroupInfo
)

// CreateTopic creates a topic. Partitions 0 takes the broker's default. An existing topic fails with
// an error matching wire.CodeTopicExists.
func (c *Client) CreateTopic(ctx context.Context, cfg TopicConfig) error {
	_, err := c.roundTrip(ctx, wire.OpCreateTopic, cfg.AppendCreate)
	return wrapf(err, "create topic %s", cfg.Name)
}

// Every admin request fails with ctx's error, ErrClosed, ErrConnectionLost (retriable), or the
// broker's refusal as a *wire.ProtocolError matching its code (wire.CodeNotAuthorized, say); the
// methods name the codes particular to them.

// DeleteTopic deletes a topic and its data: wire.CodeUnknownTopic when there is none.
func (c *Client) DeleteTopic(ctx context.Context, name string) error {
	_, err := c.roundTrip(ctx, wire.OpDeleteTopic, (&wire.Name{Name: name}).Append)
	return wrapf(err, "delete topic %s", name)
}

// ListTopics returns every topic's configuration.
func (c *Client) ListTopics(ctx context.Context) ([]TopicConfig, error) {
	body, err := c.roundTrip(ctx, wire.OpListTopics, func(b []byte) []byte { return b })
	if err != nil {
		return nil, wrapf(err, "list topics")
	}
	var tl wire.TopicList
	if err := tl.Decode(body); err != nil {
		return nil, wrapf(err, "list topics")
	}
	return tl.Topics, nil
}

// DescribeTopic returns a topic's configuration and its partitions' offsets: wire.CodeUnknownTopic
// when there is none.
func (c *Client) DescribeTopic(ctx context.Context, name string) (TopicInfo, error) {
	ti, err := c.describe(ctx, name)
	return ti, wrapf(err, "describe topic %s", name)
}

// describe is DescribeTopic without the error's context.
func (c *Client) describe(ctx context.Context, name string) (TopicInfo, error) {
	var ti TopicInfo
	body, err := c.roundTrip(ctx, wire.OpDescribe, (&wire.Name{Name: name}).Append)
	if err != nil {
		return ti, err
	}
	return ti, ti.Decode(body)
}

// ListGroups names every consumer group with members or committed offsets.
func (c *Client) ListGroups(ctx context.Context) ([]string, error) {
	body, err := c.roundTrip(ctx, wire.OpListGroups, func(b []byte) []byte { return b })
	if err != nil {
		return nil, wrapf(err, "list groups")
	}
	var gl wire.GroupList
	if err := gl.Decode(body); err != nil {
		return nil, wrapf(err, "list groups")
	}
	return gl.Groups, nil
}

// DescribeGroup returns a group's members, their partitions, and its committed offsets with each
// partition's end (lag = End - Committed): wire.CodeUnknownGroup when there is none.
func (c *Client) DescribeGroup(ctx context.Context, name string) (GroupInfo, error) {
	var gi GroupInfo
	body, err := c.roundTrip(ctx, wire.OpDescribeGrp, (&wire.Name{Name: name}).Append)
	if err != nil {
		return gi, wrapf(err, "describe group %s", name)
	}
	if err := gi.Decode(body); err != nil {
		return gi, wrapf(err, "describe group %s", name)
	}
	return gi, nil
}

// DeleteGroup deletes a consumer group and its committed offsets. The broker refuses a group that
// has members (wire.CodeInvalidRequest) and reports an unknown one (wire.CodeUnknownGroup).
func (c *Client) DeleteGroup(ctx context.Context, name string) error {
	if _, err := c.roundTrip(ctx, wire.OpDeleteGroup, (&wire.Name{Name: name}).Append); err != nil {
		return wrapf(err, "delete group %s", name)
	}
	return nil
}

// FetchOffset returns group's committed offset for a partition (the next offset the group reads), or
// -1 when none is stored (an unknown group or topic included).
func (c *Client) FetchOffset(ctx context.Context, group, topic string, partition int32) (int64, error) {
	req := wire.Commit{Group: group, Topic: topic, Partition: partition}
	body, err := c.roundTrip(ctx, wire.OpFetchOffset, req.Append)
	if err != nil {
		return -1, wrapf(err, "fetch offset %s/%s/%d", group, topic, partition)
	}
	var o wire.Offset
	if err := o.Decode(body); err != nil {
		return -1, wrapf(err, "fetch offset %s/%s/%d", group, topic, partition)
	}
	return o.Offset, nil
}

// CommitOffset stores group's committed offset for a partition: the next offset the group reads.
// Consumers commit on their own (Consumer.Commit); this is for tools that move a group's position.
// Errors: wire.CodeUnknownTopic, wire.CodeUnknownPartition, wire.CodeOffsetOutOfRange beyond the
// partition's end.
func (c *Client) CommitOffset(ctx context.Context, group, topic string, partition int32, offset int64) error {
	req := wire.Commit{Group: group, Topic: topic, Partition: partition, Offset: offset}
	_, err := c.roundTrip(ctx, wire.OpCommit, req.Append)
	return wrapf(err, "commit %s/%s/%d at %d", group, topic, partition, offset)
}

// Ping sends a liveness probe and returns the round-trip time.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	nonce := uint64(time.Now().UnixNano())
	start := time.Now()
	body, err := c.roundTrip(ctx, wire.OpPing, (&wire.Ping{Nonce: nonce}).Append)
	if err != nil {
		return 0, wrapf(err, "ping")
	}
	if len(body) != 8 || binary.BigEndian.Uint64(body) != nonce {
		return 0, fmt.Errorf("client: ping: %w: answer does not echo the nonce", wire.ErrMalformed)
	}
	return time.Since(start), nil
}
