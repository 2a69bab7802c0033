package kafka

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// metadata answers Metadata: this broker is the only broker, the controller and every partition's
// leader (leader epoch -1: unknown, so clients skip epoch validation). A topic asked for that does
// not exist is created when the request allows it, the engine auto-creates topics and the
// principal may create it; the creation runs off the loop.
func (c *conn) metadata(h header, req *kmsg.MetadataRequest) {
	e := c.srv.e
	all := req.Topics == nil || (h.version == 0 && len(req.Topics) == 0)
	allowCreate := h.version < 4 || req.AllowAutoTopicCreation
	var names []string
	var create []string
	if all {
		for _, t := range e.Topics() {
			if auth.MayList(c.srv.acl(), c.principal, t.Name) {
				names = append(names, t.Name)
			}
		}
	} else {
		for _, t := range req.Topics {
			if t.Topic == nil {
				continue // by topic id: none are known (ids are all zero here)
			}
			name := *t.Topic
			names = append(names, name)
			if allowCreate && e.Options().AutoCreateTopics && e.TopicByName(name) == nil &&
				auth.MayCreate(c.srv.acl(), c.principal, wire.TopicConfig{Name: name}) {
				create = append(create, name)
			}
		}
	}
	host, port := c.brokerAddr()
	principal, acl, version := c.principal, c.srv.acl(), h.version
	build := func(createErr map[string]error) kmsg.Response {
		return buildMetadata(e, acl, principal, version, host, port, names, createErr)
	}
	if len(create) == 0 {
		c.reply(h.corr, build(nil))
		return
	}
	c.later(h.corr, func() (kmsg.Response, func(*conn), bool) {
		errs := map[string]error{}
		for _, name := range create {
			if _, err := e.AutoCreate(name); err != nil {
				errs[name] = err
			}
		}
		return build(errs), nil, false
	})
}

// buildMetadata builds a Metadata answer for names. Any goroutine: it reads only the engine.
func buildMetadata(e *engine.Engine, acl auth.ACL, principal string, version int16, host string, port int32,
	names []string, createErr map[string]error) *kmsg.MetadataResponse {
	resp := kmsg.NewPtrMetadataResponse()
	resp.SetVersion(version)
	b := kmsg.NewMetadataResponseBroker()
	b.NodeID, b.Host, b.Port = 0, host, port
	resp.Brokers = []kmsg.MetadataResponseBroker{b}
	resp.ClusterID = strPtr("sluice")
	resp.ControllerID = 0
	for _, name := range names {
		t := kmsg.NewMetadataResponseTopic()
		t.Topic = strPtr(name)
		topic := e.TopicByName(name)
		switch {
		case !auth.MayTopic(acl, principal, auth.ActDescribe, name):
			t.ErrorCode = errTopicAuthorization
		case createErr[name] != nil:
			t.ErrorCode = kafkaCode(createErr[name])
			if errors.Is(createErr[name], wire.CodeInvalidRequest) {
				t.ErrorCode = errInvalidTopic
			}
		case topic == nil:
			t.ErrorCode = errUnknownTopicOrPartition
		default:
			for i := range topic.Partitions() {
				p := kmsg.NewMetadataResponseTopicPartition()
				p.Partition, p.Leader, p.LeaderEpoch = int32(i), 0, -1
				p.Replicas, p.ISR = []int32{0}, []int32{0}
				t.Partitions = append(t.Partitions, p)
			}
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

// listOffsets answers ListOffsets: -2 the partition's start, -1 its end, a timestamp the first
// offset whose record is at or after it (the end when none is). A read_committed request (v2+
// isolation_level 1) sees the partition as ending at its last stable offset, as Kafka does: -1 is
// the LSO, and a timestamp search finding an offset at or past it answers the LSO. A search by
// timestamp reads segments, so a request holding one runs off the loop.
func (c *conn) listOffsets(h header, req *kmsg.ListOffsetsRequest) {
	e, acl, principal := c.srv.e, c.srv.acl(), c.principal
	committed := req.Version >= 2 && req.IsolationLevel == readCommitted
	build := func() (kmsg.Response, func(*conn), bool) {
		resp := kmsg.NewPtrListOffsetsResponse()
		resp.SetVersion(req.Version)
		for _, rt := range req.Topics {
			t := kmsg.NewListOffsetsResponseTopic()
			t.Topic = rt.Topic
			topic := e.TopicByName(rt.Topic)
			for _, rp := range rt.Partitions {
				p := kmsg.NewListOffsetsResponseTopicPartition()
				p.Partition, p.Timestamp, p.Offset, p.LeaderEpoch = rp.Partition, -1, -1, -1
				part := partitionOf(topic, rp.Partition)
				// end is where the request sees the partition end: its LSO for read_committed.
				end := func() int64 {
					if committed {
						return part.StableOffset()
					}
					return part.NextOffset()
				}
				switch {
				case !auth.MayTopic(acl, principal, auth.ActDescribe, rt.Topic):
					p.ErrorCode = errTopicAuthorization
				case part == nil:
					p.ErrorCode = errUnknownTopicOrPartition
				case rp.Timestamp == -2:
					p.Offset = part.StartOffset()
				case rp.Timestamp == -1:
					p.Offset = end()
				case rp.Timestamp >= 0:
					p.Offset = part.OffsetForTimestamp(rp.Timestamp)
					if lim := end(); p.Offset < lim {
						p.Timestamp = rp.Timestamp
					} else {
						p.Offset = lim
					}
				default:
					p.ErrorCode = errInvalidRequest
				}
				t.Partitions = append(t.Partitions, p)
			}
			resp.Topics = append(resp.Topics, t)
		}
		return resp, nil, false
	}
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			if p.Timestamp >= 0 {
				c.later(h.corr, build)
				return
			}
		}
	}
	resp, _, _ := build()
	c.reply(h.corr, resp)
}

// partitionOf is topic's partition i, or nil.
func partitionOf(t *engine.Topic, i int32) *engine.Partition {
	if t == nil {
		return nil
	}
	return t.Partition(i)
}

// topicConfigFromKafka reads CreateTopics' settings into a TopicConfig. Of Kafka's topic configs
// retention.ms, retention.bytes, segment.bytes and cleanup.policy=delete are understood; anything
// else is refused with INVALID_CONFIG, so a client never believes a setting took effect.
func topicConfigFromKafka(t *kmsg.CreateTopicsRequestTopic) (wire.TopicConfig, error) {
	cfg := wire.TopicConfig{Name: t.Topic}
	if t.NumPartitions > 0 {
		cfg.Partitions = uint32(t.NumPartitions)
	} else if t.NumPartitions != -1 {
		return cfg, fmt.Errorf("%d partitions", t.NumPartitions)
	}
	for _, kv := range t.Configs {
		if kv.Value == nil {
			continue
		}
		v := *kv.Value
		var err error
		switch kv.Name {
		case "retention.ms":
			cfg.RetentionMs, err = strconv.ParseInt(v, 10, 64)
			if cfg.RetentionMs == -1 {
				cfg.RetentionMs = 0 // Kafka's "for ever"
			}
		case "retention.bytes":
			cfg.RetentionBytes, err = strconv.ParseInt(v, 10, 64)
			if cfg.RetentionBytes == -1 {
				cfg.RetentionBytes = 0
			}
		case "segment.bytes":
			cfg.SegmentBytes, err = strconv.ParseInt(v, 10, 64)
		case "cleanup.policy":
			if v != "delete" {
				err = errors.New("only cleanup.policy=delete is offered")
			}
		default:
			err = errors.New("not offered by this broker")
		}
		if err != nil {
			return cfg, fmt.Errorf("config %s=%s: %w", kv.Name, v, err)
		}
	}
	return cfg, cfg.Validate()
}

// createTopics creates topics off the loop. The replication factor must be -1 or 1 (one broker);
// manual assignments are refused.
func (c *conn) createTopics(h header, req *kmsg.CreateTopicsRequest) {
	e, acl, principal := c.srv.e, c.srv.acl(), c.principal
	c.later(h.corr, func() (kmsg.Response, func(*conn), bool) {
		resp := kmsg.NewPtrCreateTopicsResponse()
		resp.SetVersion(req.Version)
		for i := range req.Topics {
			rt := &req.Topics[i]
			t := kmsg.NewCreateTopicsResponseTopic()
			t.Topic, t.NumPartitions, t.ReplicationFactor = rt.Topic, -1, -1
			cfg, err := topicConfigFromKafka(rt)
			switch {
			case !auth.MayCreate(acl, principal, cfg):
				t.ErrorCode = errTopicAuthorization
			case rt.ReplicationFactor != -1 && rt.ReplicationFactor != 1:
				t.ErrorCode, t.ErrorMessage = errInvalidReplicationFactor, strPtr("this broker is a single node: replication factor 1")
			case len(rt.ReplicaAssignment) > 0:
				t.ErrorCode, t.ErrorMessage = errInvalidRequest, strPtr("replica assignments are not offered")
			case err != nil:
				t.ErrorCode, t.ErrorMessage = errInvalidConfig, errorMessage(err)
			case req.ValidateOnly:
				if e.TopicByName(cfg.Name) != nil {
					t.ErrorCode = errTopicAlreadyExists
				}
			default:
				topic, err := e.CreateTopic(cfg)
				if err != nil {
					t.ErrorCode, t.ErrorMessage = kafkaCode(err), errorMessage(err)
					if t.ErrorCode == errInvalidRequest {
						t.ErrorCode = errInvalidTopic
					}
					break
				}
				t.NumPartitions, t.ReplicationFactor = int32(topic.Partitions()), 1
			}
			resp.Topics = append(resp.Topics, t)
		}
		return resp, nil, false
	})
}

// deleteTopics deletes topics off the loop; it needs admin on each.
func (c *conn) deleteTopics(h header, req *kmsg.DeleteTopicsRequest) {
	e, acl, principal := c.srv.e, c.srv.acl(), c.principal
	c.later(h.corr, func() (kmsg.Response, func(*conn), bool) {
		resp := kmsg.NewPtrDeleteTopicsResponse()
		resp.SetVersion(req.Version)
		for _, name := range req.TopicNames {
			t := kmsg.NewDeleteTopicsResponseTopic()
			t.Topic = strPtr(name)
			if !auth.MayTopic(acl, principal, auth.ActAdmin, name) {
				t.ErrorCode = errTopicAuthorization
			} else if err := e.DeleteTopic(name); err != nil {
				t.ErrorCode, t.ErrorMessage = kafkaCode(err), errorMessage(err)
			}
			resp.Topics = append(resp.Topics, t)
		}
		return resp, nil, false
	})
}

// createPartitions answers CreatePartitions: a topic's partition count is fixed at creation here,
// so asking for its current count succeeds (nothing to do) and any other is INVALID_PARTITIONS.
func (c *conn) createPartitions(h header, req *kmsg.CreatePartitionsRequest) {
	resp := kmsg.NewPtrCreatePartitionsResponse()
	resp.SetVersion(h.version)
	for _, rt := range req.Topics {
		t := kmsg.NewCreatePartitionsResponseTopic()
		t.Topic = rt.Topic
		topic := c.srv.e.TopicByName(rt.Topic)
		switch {
		case !auth.MayTopic(c.srv.acl(), c.principal, auth.ActAdmin, rt.Topic):
			t.ErrorCode = errTopicAuthorization
		case topic == nil:
			t.ErrorCode = errUnknownTopicOrPartition
		case int(rt.Count) != topic.Partitions():
			t.ErrorCode = errInvalidPartitions
			t.ErrorMessage = strPtr(fmt.Sprintf("topic %s has %d partitions; this broker cannot change a topic's partition count", rt.Topic, topic.Partitions()))
		}
		resp.Topics = append(resp.Topics, t)
	}
	c.reply(h.corr, resp)
}

// Config resource types (Kafka's).
const (
	resourceTopic  int8 = 2
	resourceBroker int8 = 4
)

// describeConfigs answers DescribeConfigs for topics with the settings that exist here; a broker
// resource is answered with no settings.
func (c *conn) describeConfigs(h header, req *kmsg.DescribeConfigsRequest) {
	resp := kmsg.NewPtrDescribeConfigsResponse()
	resp.SetVersion(h.version)
	for _, rr := range req.Resources {
		r := kmsg.NewDescribeConfigsResponseResource()
		r.ResourceType, r.ResourceName = rr.ResourceType, rr.ResourceName
		switch kmsg.ConfigResourceType(rr.ResourceType) {
		case kmsg.ConfigResourceType(resourceTopic):
			topic := c.srv.e.TopicByName(rr.ResourceName)
			switch {
			case !auth.MayTopic(c.srv.acl(), c.principal, auth.ActDescribe, rr.ResourceName):
				r.ErrorCode = errTopicAuthorization
			case topic == nil:
				r.ErrorCode = errUnknownTopicOrPartition
			default:
				cfg := topic.Config()
				retMs := cfg.RetentionMs
				if retMs == 0 {
					retMs = -1
				}
				retBytes := cfg.RetentionBytes
				if retBytes == 0 {
					retBytes = -1
				}
				for _, kv := range [][2]string{
					{"cleanup.policy", "delete"},
					{"retention.ms", strconv.FormatInt(retMs, 10)},
					{"retention.bytes", strconv.FormatInt(retBytes, 10)},
					{"segment.bytes", strconv.FormatInt(cfg.SegmentBytes, 10)},
				} {
					if len(rr.ConfigNames) > 0 && !contains(rr.ConfigNames, kv[0]) {
						continue
					}
					e := kmsg.NewDescribeConfigsResponseResourceConfig()
					e.Name, e.Value, e.ReadOnly = kv[0], strPtr(kv[1]), true
					e.Source = kmsg.ConfigSourceDynamicTopicConfig
					r.Configs = append(r.Configs, e)
				}
			}
		case kmsg.ConfigResourceType(resourceBroker):
		default:
			r.ErrorCode, r.ErrorMessage = errInvalidRequest, strPtr("only topic and broker resources are described")
		}
		resp.Resources = append(resp.Resources, r)
	}
	c.reply(h.corr, resp)
}

func contains(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}
