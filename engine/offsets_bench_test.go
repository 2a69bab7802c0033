package engine

import (
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// BenchmarkCommitGroups measures the latency of one durable offset commit (CommitOffset until its
// callback) while the store holds the offsets of 1 or 50,000 groups: the cost of a commit should
// not grow with the number of groups.
//
//	go test -run '^$' -bench BenchmarkCommitGroups -benchtime 200x ./engine/
func BenchmarkCommitGroups(b *testing.B) {
	for _, groups := range []int{1, 50_000} {
		b.Run(strconv.Itoa(groups), func(b *testing.B) {
			e, err := Open(testOptions(b))
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			if _, err := e.CreateTopic(wire.TopicConfig{Name: "x", Partitions: 1}); err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			for i := range groups {
				wg.Add(1)
				e.CommitOffset(fmt.Sprintf("group-%06d", i), "x", 0, int64(i), func(error) { wg.Done() })
			}
			wg.Wait()
			done := make(chan error, 1)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.CommitOffset("group-000000", "x", 0, int64(i), func(err error) { done <- err })
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
