package engine

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/sluicemq/sluice/internal/atomicutil"
	"github.com/sluicemq/sluice/wire"
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
	// QueueDeadLettered counts work-queue records marked for their dead-letter topic (too many
	// deliveries, or undecodable).
	QueueDeadLettered counter

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

// WriteMetrics writes the engine's metrics in the Prometheus text exposition format (version 0.0.4),
// as Collector reports them.
func (e *Engine) WriteMetrics(w io.Writer) {
	WriteCollected(w, e.Collector())
}

// WriteCollected gathers cs in a fresh registry and writes them to w in the Prometheus text format,
// with its escaping (label values escape only \\, \" and newlines). A collector's error is written
// as a comment line.
func WriteCollected(w io.Writer, cs ...prometheus.Collector) {
	reg := prometheus.NewRegistry()
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			fmt.Fprintf(w, "# sluice: %v\n", err)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		fmt.Fprintf(w, "# sluice: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return
		}
	}
}

// Collector reports the engine's metrics to Prometheus. Each scrape reads the padded atomic counters
// and the partitions' offsets as they are: the produce and delivery paths only ever bump counters,
// never touch a Prometheus type, so they stay allocation-free and mutex-free. The collector is
// unchecked (Describe sends nothing): the label sets depend on the topics and groups of the moment.
func (e *Engine) Collector() prometheus.Collector { return engineCollector{e} }

type engineCollector struct{ e *Engine }

func (engineCollector) Describe(chan<- *prometheus.Desc) {}

// Descriptions of the engine's metrics, shared by every scrape.
var (
	descProducedBatches = prometheus.NewDesc("sluice_produced_batches_total", "Record batches appended.", nil, nil)
	descProducedRecords = prometheus.NewDesc("sluice_produced_records_total", "Records appended.", nil, nil)
	descProducedBytes   = prometheus.NewDesc("sluice_produced_bytes_total", "Record batch bytes appended.", nil, nil)
	descDeliveries      = prometheus.NewDesc("sluice_deliveries_total", "Deliveries written to consumers.", nil, nil)
	descColdReads       = prometheus.NewDesc("sluice_cold_reads_total", "Deliveries deferred while their pages were read from disk off the event loop.", nil, nil)
	descDeliveredBytes  = prometheus.NewDesc("sluice_delivered_bytes_total", "Record batch bytes delivered to consumers.", nil, nil)
	descQueueDead       = prometheus.NewDesc("sluice_queue_dead_lettered_total", "Work-queue records marked for their dead-letter topic (too many deliveries, or undecodable).", nil, nil)
	queueLabels         = []string{"group", "topic", "partition"}
	descQueueReady      = prometheus.NewDesc("sluice_queue_ready", "Work-queue records ready for a member: not yet dispatched, or due for redelivery.", queueLabels, nil)
	descQueuePending    = prometheus.NewDesc("sluice_queue_pending", "Work-queue records held by members, neither acked nor nacked yet.", queueLabels, nil)
	descQueueExpired    = prometheus.NewDesc("sluice_queue_records_expired_total", "Work-queue records removed by retention before they were settled, which the queue skipped.", nil, nil)
	descSync            = prometheus.NewDesc("sluice_sync_duration_seconds", "Group-commit sync rounds (fdatasync of every segment with unsynced data).", nil, nil)
	descTopicsFailed    = prometheus.NewDesc("sluice_topics_failed", "Topics that failed to open at start and are not served (the log says why).", nil, nil)
	partitionLabels     = []string{"topic", "partition"}
	descEndOffset       = prometheus.NewDesc("sluice_partition_end_offset", "The next offset of each partition.", partitionLabels, nil)
	descSyncedOffset    = prometheus.NewDesc("sluice_partition_synced_offset", "The offset below which each partition is covered by an fdatasync.", partitionLabels, nil)
	descPartitionBytes  = prometheus.NewDesc("sluice_partition_bytes", "Bytes retained by each partition.", partitionLabels, nil)
	descGroupLag        = prometheus.NewDesc("sluice_consumer_group_lag", "Records between a group's committed offset (the log start where it has none) and the partition end.", []string{"group", "topic", "partition"}, nil)
)

func (c engineCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.e
	m := &e.metrics
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(descProducedBatches, m.ProducedBatches.Load())
	counter(descProducedRecords, m.ProducedRecords.Load())
	counter(descProducedBytes, m.ProducedBytes.Load())
	counter(descDeliveries, m.Deliveries.Load())
	counter(descColdReads, m.ColdReads.Load())
	counter(descDeliveredBytes, m.DeliveredBytes.Load())
	counter(descQueueExpired, m.QueueRecordsExpired.Load())
	counter(descQueueDead, m.QueueDeadLettered.Load())
	e.collectQueues(ch)

	buckets := make(map[float64]uint64, len(syncBuckets))
	var cum uint64
	for i, le := range syncBuckets {
		cum += m.syncCounts[i].Load()
		buckets[le] = cum
	}
	cum += m.syncCounts[len(syncBuckets)].Load()
	ch <- prometheus.MustNewConstHistogram(descSync, cum, float64(m.syncSumNs.Load())/1e9, buckets)
	ch <- prometheus.MustNewConstMetric(descTopicsFailed, prometheus.GaugeValue, float64(len(e.FailedTopics())))

	for _, cfg := range e.Topics() {
		t := e.TopicByName(cfg.Name)
		if t == nil {
			continue
		}
		for _, p := range t.parts {
			part := strconv.Itoa(int(p.id))
			ch <- prometheus.MustNewConstMetric(descEndOffset, prometheus.GaugeValue, float64(p.NextOffset()), cfg.Name, part)
			ch <- prometheus.MustNewConstMetric(descSyncedOffset, prometheus.GaugeValue, float64(p.SyncedOffset()), cfg.Name, part)
			ch <- prometheus.MustNewConstMetric(descPartitionBytes, prometheus.GaugeValue, float64(p.log.Size()), cfg.Name, part)
		}
	}

	groups := map[string]bool{}
	for _, k := range e.offsets.Keys() {
		groups[k.Group] = true
		t := e.TopicByName(k.Topic)
		if t == nil || t.Partition(k.Partition) == nil {
			continue
		}
		off, _ := e.offsets.Get(k.Group, k.Topic, k.Partition)
		lag := max(t.Partition(k.Partition).NextOffset()-off, 0)
		ch <- prometheus.MustNewConstMetric(descGroupLag, prometheus.GaugeValue, float64(lag), k.Group, k.Topic, strconv.Itoa(int(k.Partition)))
	}
	for g := range e.memberTopics() {
		groups[g] = true
	}
	for g := range groups {
		for _, o := range e.appendUncommitted(nil, g) {
			ch <- prometheus.MustNewConstMetric(descGroupLag, prometheus.GaugeValue, float64(max(o.End-o.Committed, 0)), g, o.Topic, strconv.Itoa(int(o.Partition)))
		}
	}
}

// collectQueues reports each work queue partition's ready and pending records. It takes the queue
// table's mutex, then each partition's in turn (their lock order), for a moment each.
func (e *Engine) collectQueues(ch chan<- prometheus.Metric) {
	qt := e.queues
	qt.mu.Lock()
	defer qt.mu.Unlock()
	for k, q := range qt.queues {
		if q.dropped.Load() {
			continue
		}
		for _, qp := range q.parts {
			qp.mu.Lock()
			ready := max(qp.p.NextOffset()-qp.next, 0) + int64(len(qp.due))
			pending := len(qp.pending)
			qp.mu.Unlock()
			part := strconv.Itoa(int(qp.p.id))
			ch <- prometheus.MustNewConstMetric(descQueueReady, prometheus.GaugeValue, float64(ready), k.group, k.topic, part)
			ch <- prometheus.MustNewConstMetric(descQueuePending, prometheus.GaugeValue, float64(pending), k.group, k.topic, part)
		}
	}
}

// memberTopics maps each group with members to the topics they subscribe to.
func (e *Engine) memberTopics() map[string]map[string]bool {
	out := map[string]map[string]bool{}
	e.groups.mu.Lock()
	defer e.groups.mu.Unlock()
	for name, g := range e.groups.groups {
		for _, m := range g.members {
			if out[name] == nil {
				out[name] = map[string]bool{}
			}
			for _, t := range m.topics { // a pattern member's matching topics
				out[name][t.cfg.Name] = true
			}
		}
	}
	return out
}

// appendUncommitted appends to dst, for every partition without a committed offset of group of a
// topic the group reads (its members subscribe to it, or it has committed offsets on another of its
// partitions), an entry whose Committed is the partition's log start: a member would start there
// (unless told otherwise), so everything retained is lag.
func (e *Engine) appendUncommitted(dst []wire.GroupOffset, group string) []wire.GroupOffset {
	topics := e.memberTopics()[group]
	if topics == nil {
		topics = map[string]bool{}
	}
	committed := map[string]map[int32]bool{}
	for _, k := range e.offsets.Keys() {
		if k.Group != group {
			continue
		}
		topics[k.Topic] = true
		if committed[k.Topic] == nil {
			committed[k.Topic] = map[int32]bool{}
		}
		committed[k.Topic][k.Partition] = true
	}
	names := make([]string, 0, len(topics))
	for name := range topics {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t := e.TopicByName(name)
		if t == nil {
			continue
		}
		for _, p := range t.parts {
			if !committed[name][p.id] {
				dst = append(dst, wire.GroupOffset{Topic: name, Partition: p.id, Committed: p.StartOffset(), End: p.NextOffset()})
			}
		}
	}
	return dst
}
