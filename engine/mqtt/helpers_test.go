package mqtt

import "github.com/sluicemq/sluice/wire"

// wireSub is a subscription to every partition of topic from its first record.
func wireSub(topic string) wire.Subscribe {
	return wire.Subscribe{Topic: topic, Partition: -1, Start: wire.StartEarliest}
}
