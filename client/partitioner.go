package client

import "sync/atomic"

// AnyPartition, returned by a Partitioner, lets the producer choose: it keeps sending keyless records
// to one partition until that partition's batch is sealed, then moves to the next (round-robin by
// batch, so keyless records still form large batches).
const AnyPartition int32 = -1

// Partitioner picks a record's partition. Partition returns a partition in [0, n) or AnyPartition.
// It is called with the producer's lock held: it must be quick and must not keep rec.
type Partitioner interface {
	Partition(rec *Record, n int32) int32
}

// HashPartitioner places a keyed record by the murmur2 hash of its key, exactly as Kafka's default
// partitioner does (so the same key lands on the same partition number from a Java client), and
// leaves keyless records to the producer (AnyPartition). It is the default.
func HashPartitioner() Partitioner { return hashPartitioner{} }

type hashPartitioner struct{}

func (hashPartitioner) Partition(rec *Record, n int32) int32 {
	if rec.Key == nil {
		return AnyPartition
	}
	return int32(murmur2(rec.Key)&0x7fffffff) % n
}

// RoundRobinPartitioner spreads records over the partitions one by one, keys ignored.
func RoundRobinPartitioner() Partitioner { return &roundRobin{} }

type roundRobin struct{ next atomic.Uint32 }

func (r *roundRobin) Partition(_ *Record, n int32) int32 {
	return int32((r.next.Add(1) - 1) % uint32(n))
}

// ManualPartitioner sends each record to its Record.Partition.
func ManualPartitioner() Partitioner { return manual{} }

type manual struct{}

func (manual) Partition(rec *Record, _ int32) int32 { return rec.Partition }

// murmur2 is Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), seed 0x9747b28c.
func murmur2(data []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	n := len(data)
	h := uint32(seed) ^ uint32(n)
	i := 0
	for ; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch n - i {
	case 3:
		h ^= uint32(data[i+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[i+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[i])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
