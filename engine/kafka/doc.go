// Package kafka is the broker's Kafka-protocol face: a gnet listener that serves stock Kafka clients
// (librdkafka, franz-go, kafka-python, Java) from the same topics, stored batches and durable offset
// store as the native protocol (engine/server). Request and response schemas are
// github.com/twmb/franz-go/pkg/kmsg's; docs/kafka.md lists what is served.
package kafka
