// Package client is the Go client of the Sluice broker: producers, consumers (plain, consumer
// groups, work queues) and admin calls over one pipelined TCP connection per Client.
//
// # Connection
//
// Dial opens one connection and speaks the handshake (Hello, then Auth with a token when one is
// set). Every request carries a correlation id, so any number are in flight at once from any
// goroutines. Requests are encoded straight into a shared write buffer. A caller that finds no write
// in progress writes it to the kernel itself (no hand-off to wait for); frames queued while a write is
// in progress are handed to a writer goroutine that sends them together in one write (large writes are
// what loopback and NICs are fast at). A reader goroutine decodes frames
// with wire.Decoder and completes the request filed under each answer's correlation id; deliveries
// are routed to their consumer by subscription id. Deadlines come from each call's context. Broker
// errors are *wire.ProtocolError values and match their code: errors.Is(err, wire.CodeUnknownTopic).
//
// When the connection fails the client reconnects in the background with jittered exponential
// backoff (WithReconnectBackoff) until Close; a ping every WithPingInterval (or every third of the
// idle timeout the broker announced in the handshake, when that is shorter) keeps an idle connection
// open and detects a dead one. Requests in flight on the lost connection fail with an error matching
// ErrConnectionLost (IsRetriable reports true) — except produce batches, which the producer sends
// again (below).
//
// # Producing
//
// A Producer batches records per partition into Kafka RecordBatch v2 batches (wire.BatchBuilder,
// optionally compressed). A batch leaves when it reaches MaxBatchBytes (lowered to the batch limit the
// broker announced in the handshake; a batch the broker refuses as too large is split in halves, sent
// one at a time in its place), when it has lingered for
// Linger, on Flush and Close, or at once for Publish; at most MaxInFlight produce requests are
// unanswered, and Produce blocks while MaxBufferedBytes of records are not yet complete. Keyed
// records are placed by Kafka's murmur2 hash; keyless ones stick to one partition per batch and
// rotate. Each record's Result arrives through a callback (Produce), a Future (Send, Wait), or
// synchronously (Publish). The steady-state produce path allocates nothing: batches, builders and
// futures are recycled (see BenchmarkProducer).
//
// Ownership: Produce copies Key, Value and Headers into the batch before it returns, so the caller
// keeps its buffers. A Future belongs to the caller until Wait returns a result, then to the pool.
//
// # Consuming
//
// Subscribe opens a Consumer. The broker pushes whole stored batches while the subscription's credit
// (WithCredit, bytes) lasts; the consumer grants bytes back as the application reads, once half the
// window is used, so a slow application holds at most about one window of records. Records are read
// with Next (iterator) or Consume (handler). A Message's Key, Value and headers point into the
// delivered batch, not copied: a Message from Next is valid until the next Next or Close, one given
// to a Consume handler until the handler returns; Clone copies one out.
//
// Where a partition starts: WithStartEarliest, WithStartLatest (the default without a group),
// WithStartOffset, WithStartTime, or the group's committed offset (the default with WithGroup;
// earliest when the group has none). Records below the start offset in the first delivered batch
// are skipped. A committed or requested offset the partition does not hold (removed by retention,
// or beyond the end of a topic deleted and recreated) starts where WithOffsetReset says: the
// earliest record (the default), the end, or an error.
//
// A group member (WithGroup) reads the partitions the broker assigns it; the assignment changes as
// members come and go (Assigned, Generation). It commits the offset after the last processed record
// of each partition: with automatic commits on (the default), every WithAutoCommit interval, on Close
// and before resubscribing after a reconnect; and whenever the application calls Commit. A record counts as processed when Next is called again after it, or
// when its Consume handler returns nil. Commit (manual) also counts the record Next returned last.
//
// A work-queue consumer (WithQueue) shares records with competing consumers; each record is settled
// with Message.Ack or Message.Nack (Consume acks when the handler returns nil, and nacks when it
// fails and carries on). An unsettled record is delivered again after the ack timeout, up to the
// delivery limit. The broker hands a consumer at most MaxAckPending unsettled records (default 1), so
// a record's ack timeout starts when the application is ready for it. Records that retention removes
// before they are settled are skipped, held ones included (their acks are ignored): the queue moves on
// to the oldest retained record, and the broker counts them in sluice_queue_records_expired_total.
//
// Request/reply (Client.Request, Client.Reply) runs over a reply inbox topic per client, routed by the
// HeaderReplyTo and HeaderCorrelationID headers. Request and Reply set those themselves, replacing any
// the record carries, so a service may copy a request's headers into its own requests and replies
// (trace propagation) and every answer still reaches the call it belongs to.
//
// # Delivery contract: at least once
//
// Producing. A record whose Result carries no error is stored (at DurabilityWritten it survives a
// broker crash, at DurabilityFsync a power loss too; DurabilityNone reports success when the record
// is handed to the connection, and a failure only in the client's log). Records of one partition are
// stored in the order Produce accepted them, also across reconnects and broker crashes: the offsets
// a producer's Results report increase in Produce order. When the connection fails, nothing goes out
// on the next connection until every batch in flight on the failed one has failed; those are then
// sent again first, in their original order, up to WithRetries times each. A batch the broker had
// stored before the connection failed is then stored twice, the first copy ahead of the
// acknowledged one. So a record is stored at least once and, after a reconnect, possibly twice; a
// record whose Result carries an error may still have been stored (the error says the outcome is
// unknown when it matches ErrConnectionLost).
//
// With WithIdempotence the broker recognises a resent batch by its producer id, epoch and sequence
// and answers it with the offsets it was first stored at, so resends after a lost connection store
// nothing twice (also across a broker restart, within the last 200,000 records of the partition),
// and the ordered resends never break the sequence. A resend of a batch older than the broker's
// last 16 for the producer (more in flight than that) succeeds with Offset -1: stored, offset
// unknown. A batch given up on (retries exhausted) starts a new producer epoch; batches sent behind
// it under the old epoch fail with an out-of-order sequence when the broker never stored it.
//
// Consuming without a group. The consumer tracks, per partition, the offset after the last record
// Next handed out. After a reconnect (a broker restart included) it resubscribes each partition at
// that offset and drops what was queued from the old connection: every stored offset is handed out
// once, in order, as long as the Consumer lives. Nothing is stored on the broker: a new Consumer
// starts where its options say.
//
// Consuming in a group. The committed offset is the only durable position. After a consumer crash,
// the partition's next owner starts at the committed offset and so receives again every record
// processed since the last commit (at most one AutoCommit interval of records, plus whatever was
// processed after it). After a rebalance, a partition the member keeps continues where it was; a
// partition it loses is handed back to the broker, which gives it to its new owner only then: with
// automatic commits on, by committing what was processed of it (so the new owner receives none of
// those records, only, possibly, the one Next returned last), else leaving the committed offset as
// the application left it. A partition it gains starts at the group's committed offset. After a
// reconnect, the member commits what it has
// processed (with automatic commits on) and rejoins, starting from the committed offsets: records
// processed before the connection failed are not delivered again, but the record Next returned last
// and not yet counted as processed is (it may have been processed only halfway). Nothing committed is
// ever lost: a restart of the broker in the middle of a stream loses no record.
//
// Work queues. A record is delivered until it is acked (or dead-lettered after its delivery limit).
// Message.Ack is sent without an answer: an ack lost with its connection, a consumer that crashes
// before acking, an ack that arrives after the ack timeout, or a broker crash in the few milliseconds
// before the broker writes the ack, means the record is delivered again. Message.AckSync waits for the
// broker to confirm that the ack is on disk. An ack the broker has written survives restarts and
// crashes: its record is not delivered again.
//
// Applications that need effectively-once processing make their handling idempotent, keyed by
// (topic, partition, offset), or store their own progress with their results.
package client
