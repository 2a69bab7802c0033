package engine

import (
	"fmt"
	"io"
	"time"

	"github.com/sluicemq/sluice/internal/atomicutil"
)

// counter is an atomic counter alone on its cache-line pair, so that counters bumped by different
// event loops do not bounce one line between cores (false sharing).
type counter = atomicutil.Uint64

// Metrics are the engine's cumulative counters. The network layer adds its own beside them.
type Metrics struct {
	ProducedBatches counter
	ProducedRecords counter
	ProducedBytes   counter
	DeliveredBytes  counter
	Deliveries      counter
	ColdReads       counter // deliveries deferred while their pages were read in off the loop
	// QueueRecordsExpired counts work-queue records retention removed before they were settled
	// (never dispatched, or dispatched and neither acked nor dead-lettered): the queue skipped them.
	QueueRecordsExpired counter

	// syncSeconds is the group commit's sync-round latency histogram: one counter per bucket of
	// syncBuckets (cumulative counts are summed when written), plus the total and the sum.
	syncCounts [len(syncBuckets) + 1]counter
	syncSumNs  counter
}

// syncBuckets are the histogram's upper bounds, in seconds: from a fast NVMe fdatasync to a stalled
// disk.
var syncBuckets = [...]float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1}

func (m *Metrics) produced(bytes, records int) {
	m.ProducedBatches.Add(1)
	m.ProducedRecords.Add(uint64(records))
	m.ProducedBytes.Add(uint64(bytes))
}

// synced records one sync round's duration. Called from flusher goroutines.
func (m *Metrics) synced(d time.Duration) {
	i := 0
	for i < len(syncBuckets) && d.Seconds() > syncBuckets[i] {
		i++
	}
	m.syncCounts[i].Add(1)
	m.syncSumNs.Add(uint64(d.Nanoseconds()))
}

// Delivered counts one delivery of n bytes to a consumer.
func (e *Engine) Delivered(n int) {
	e.metrics.Deliveries.Add(1)
	e.metrics.DeliveredBytes.Add(uint64(n))
}

// WriteMetrics writes the engine's metrics in the Prometheus text exposition format.
func (e *Engine) WriteMetrics(w io.Writer) {
	m := &e.metrics
	writeCounter(w, "sluice_produced_batches_total", "Record batches appended.", m.ProducedBatches.Load())
	writeCounter(w, "sluice_produced_records_total", "Records appended.", m.ProducedRecords.Load())
	writeCounter(w, "sluice_produced_bytes_total", "Record batch bytes appended.", m.ProducedBytes.Load())
	writeCounter(w, "sluice_deliveries_total", "Deliveries written to consumers.", m.Deliveries.Load())
	writeCounter(w, "sluice_cold_reads_total", "Deliveries deferred while their pages were read from disk off the event loop.", m.ColdReads.Load())
	writeCounter(w, "sluice_delivered_bytes_total", "Record batch bytes delivered to consumers.", m.DeliveredBytes.Load())
	writeCounter(w, "sluice_queue_records_expired_total", "Work-queue records removed by retention before they were settled, which the queue skipped.", m.QueueRecordsExpired.Load())

	fmt.Fprintln(w, "# HELP sluice_sync_duration_seconds Group-commit sync rounds (fdatasync of every segment with unsynced data).")
	fmt.Fprintln(w, "# TYPE sluice_sync_duration_seconds histogram")
	var cum uint64
	for i, le := range syncBuckets {
		cum += m.syncCounts[i].Load()
		fmt.Fprintf(w, "sluice_sync_duration_seconds_bucket{le=\"%g\"} %d\n", le, cum)
	}
	cum += m.syncCounts[len(syncBuckets)].Load()
	fmt.Fprintf(w, "sluice_sync_duration_seconds_bucket{le=\"+Inf\"} %d\n", cum)
	fmt.Fprintf(w, "sluice_sync_duration_seconds_sum %g\n", float64(m.syncSumNs.Load())/1e9)
	fmt.Fprintf(w, "sluice_sync_duration_seconds_count %d\n", cum)
	fmt.Fprintf(w, "# HELP sluice_topics_failed Topics that failed to open at start and are not served (the log says why).\n# TYPE sluice_topics_failed gauge\nsluice_topics_failed %d\n", len(e.FailedTopics()))

	var parts []*Partition
	for _, cfg := range e.Topics() {
		if t := e.TopicByName(cfg.Name); t != nil {
			parts = append(parts, t.parts...)
		}
	}
	writePartitionGauge(w, parts, "sluice_partition_end_offset", "The next offset of each partition.", (*Partition).NextOffset)
	writePartitionGauge(w, parts, "sluice_partition_synced_offset", "The offset below which each partition is covered by an fdatasync.", (*Partition).SyncedOffset)
	writePartitionGauge(w, parts, "sluice_partition_bytes", "Bytes retained by each partition.", func(p *Partition) int64 { return p.log.Size() })
	fmt.Fprintln(w, "# HELP sluice_consumer_group_lag Records between a group's committed offset and the partition end.")
	fmt.Fprintln(w, "# TYPE sluice_consumer_group_lag gauge")
	for _, k := range e.offsets.Keys() {
		t := e.TopicByName(k.Topic)
		if t == nil || t.Partition(k.Partition) == nil {
			continue
		}
		off, _ := e.offsets.Get(k.Group, k.Topic, k.Partition)
		lag := max(t.Partition(k.Partition).NextOffset()-off, 0)
		fmt.Fprintf(w, "sluice_consumer_group_lag{group=%q,topic=%q,partition=\"%d\"} %d\n", k.Group, k.Topic, k.Partition, lag)
	}
}

func writePartitionGauge(w io.Writer, parts []*Partition, name, help string, value func(*Partition) int64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
	for _, p := range parts {
		fmt.Fprintf(w, "%s{topic=%q,partition=\"%d\"} %d\n", name, p.topic.cfg.Name, p.id, value(p))
	}
}

func writeCounter(w io.Writer, name, help string, v uint64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
}
