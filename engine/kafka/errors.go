package kafka

import (
	"github.com/sluicemq/sluice/wire"
)

// Kafka's error codes used here (org.apache.kafka.common.protocol.Errors). Frozen by Kafka.
const (
	errUnknownServer            int16 = -1
	errNone                     int16 = 0
	errOffsetOutOfRange         int16 = 1
	errCorruptMessage           int16 = 2
	errUnknownTopicOrPartition  int16 = 3
	errRequestTimedOut          int16 = 7
	errMessageTooLarge          int16 = 10
	errInvalidTopic             int16 = 17
	errRecordListTooLarge       int16 = 18
	errInvalidRequiredAcks      int16 = 21
	errTopicAuthorization       int16 = 29
	errGroupAuthorization       int16 = 30
	errClusterAuthorization     int16 = 31
	errUnsupportedSASLMechanism int16 = 33
	errIllegalSASLState         int16 = 34
	errUnsupportedVersion       int16 = 35
	errTopicAlreadyExists       int16 = 36
	errInvalidPartitions        int16 = 37
	errInvalidReplicationFactor int16 = 38
	errInvalidConfig            int16 = 40
	errInvalidRequest           int16 = 42
	errOutOfOrderSequence       int16 = 45
	errDuplicateSequence        int16 = 46
	errInvalidProducerEpoch     int16 = 47
	errInvalidTxnState          int16 = 48
	errInvalidProducerIDMapping int16 = 49
	errTransactionalIDAuth      int16 = 53
	errKafkaStorage             int16 = 56
	errSASLAuthenticationFailed int16 = 58
	errFetchSessionIDNotFound   int16 = 70
	errInvalidRecord            int16 = 87
	errThrottlingQuotaExceeded  int16 = 89
	errProducerFenced           int16 = 90
	errResourceNotFound         int16 = 91 // DescribeConfigs of something that does not exist (Kafka 3.x uses 3 for topics)
)

// kafkaCode maps an engine error onto Kafka's error code.
func kafkaCode(err error) int16 {
	if err == nil {
		return errNone
	}
	switch wire.CodeOf(err) {
	case wire.CodeOK:
		return errNone
	case wire.CodeUnknownTopic, wire.CodeUnknownPartition:
		return errUnknownTopicOrPartition
	case wire.CodeTopicExists:
		return errTopicAlreadyExists
	case wire.CodeCorruptBatch:
		return errCorruptMessage
	case wire.CodeBatchTooLarge:
		return errMessageTooLarge
	case wire.CodeOffsetOutOfRange:
		return errOffsetOutOfRange
	case wire.CodeStorageFull, wire.CodeStorageFailed:
		return errKafkaStorage
	case wire.CodeNotAuthorized:
		return errTopicAuthorization
	case wire.CodeInvalidRequest:
		return errInvalidRequest
	case wire.CodeThrottled:
		return errThrottlingQuotaExceeded
	case wire.CodeDuplicateSequence:
		return errDuplicateSequence
	case wire.CodeOutOfOrderSequence:
		return errOutOfOrderSequence
	case wire.CodeTimeout:
		return errRequestTimedOut
	case wire.CodeTxnAborted:
		return errInvalidTxnState // the engine's transaction timeout aborted it
	case wire.CodeShuttingDown:
		return errRequestTimedOut // retriable: the client sends it again after reconnecting
	}
	return errUnknownServer
}

// errorMessage is err's message for a response's error message field, or nil.
func errorMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}
