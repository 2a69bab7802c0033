package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

func init() {
	register(command{name: "topic create", summary: "create a topic", run: runTopicCreate})
	register(command{name: "topic list", summary: "list the topics", run: runTopicList})
	register(command{name: "topic describe", summary: "show a topic's settings and partitions", run: runTopicDescribe})
	register(command{name: "topic delete", summary: "delete a topic and its records", run: runTopicDelete})
}

func runTopicCreate(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("topic create", "NAME", "Create a topic. Settings left out take the broker's defaults.", stdout, stderr)
	partitions := f.Int("partitions", 0, "the number `N` of partitions (default: the broker's)")
	var retentionBytes, segmentBytes byteSize
	var retentionAge ageFlag
	f.Var(&retentionBytes, "retention-bytes", "keep at most `B` bytes per partition, e.g. 512MiB (default: the broker's)")
	f.Var(&retentionAge, "retention-age", "keep records for `D`, e.g. 7d or 12h (default: the broker's)")
	f.Var(&segmentBytes, "segment-bytes", "size `B` of each segment file (default: the broker's)")
	memory := f.Bool("memory", false, "keep the topic in memory only: lowest latency, lost on restart")
	ops, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if *partitions > math.MaxUint32 {
		return f.usageError("--partitions %d is too large", *partitions)
	}
	if *partitions < 1 && flagGiven(f, "partitions") {
		return f.usageError("--partitions %d: a topic has at least 1 partition (leave the flag out for the broker's default)", *partitions)
	}
	cfg := client.TopicConfig{
		Name:           ops[0],
		Partitions:     uint32(*partitions),
		RetentionBytes: int64(retentionBytes),
		RetentionMs:    time.Duration(retentionAge).Milliseconds(),
		SegmentBytes:   int64(segmentBytes),
	}
	if *memory {
		cfg.Flags |= wire.TopicMemory
	}
	if err := cfg.Validate(); err != nil { // the ranges any broker accepts; it checks the rest
		var pe *wire.ProtocolError
		if errors.As(err, &pe) {
			err = errors.New(pe.Message)
		}
		return f.usageError("%v", err)
	}
	c, err := f.g.dial(ctx, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	rctx, cancel := f.g.request(ctx)
	defer cancel()
	if err := c.CreateTopic(rctx, cfg); err != nil {
		return err
	}
	ti, err := c.DescribeTopic(rctx, cfg.Name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created topic %s with %d %s\n", cfg.Name, len(ti.Partitions), plural(len(ti.Partitions), "partition"))
	return nil
}

func runTopicList(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("topic list", "", "List the topics with their settings, one a line.", stdout, stderr)
	return f.call(ctx, args, 0, 0, func(rctx context.Context, c *client.Client, _ []string) error {
		topics, err := c.ListTopics(rctx)
		if err != nil {
			return err
		}
		slices.SortFunc(topics, func(a, b client.TopicConfig) int { return strings.Compare(a.Name, b.Name) })
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tPARTITIONS\tRETENTION-BYTES\tRETENTION-AGE\tSEGMENT-BYTES\tSTORAGE")
		for _, t := range topics {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", t.Name, t.Partitions,
				unlimited(t.RetentionBytes, formatBytes), unlimited(t.RetentionMs, formatMs),
				unlimited(t.SegmentBytes, formatBytes), storage(t.Flags))
		}
		return tw.Flush()
	})
}

func runTopicDescribe(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("topic describe", "NAME",
		"Show a topic's settings and, per partition, its oldest retained offset (START), the next offset\n"+
			"to be written (END), the records between them and the bytes retained.", stdout, stderr)
	return f.call(ctx, args, 1, 1, func(rctx context.Context, c *client.Client, ops []string) error {
		ti, err := c.DescribeTopic(rctx, ops[0])
		if err != nil {
			return err
		}
		cfg := ti.Config
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "topic:\t%s\n", cfg.Name)
		fmt.Fprintf(tw, "partitions:\t%d\n", len(ti.Partitions))
		fmt.Fprintf(tw, "retention-bytes:\t%s\n", unlimited(cfg.RetentionBytes, formatBytes))
		fmt.Fprintf(tw, "retention-age:\t%s\n", unlimited(cfg.RetentionMs, formatMs))
		fmt.Fprintf(tw, "segment-bytes:\t%s\n", unlimited(cfg.SegmentBytes, formatBytes))
		fmt.Fprintf(tw, "storage:\t%s\n", storage(cfg.Flags))
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(stdout)
		parts := slices.Clone(ti.Partitions)
		slices.SortFunc(parts, func(a, b client.PartitionInfo) int { return int(a.Partition) - int(b.Partition) })
		tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "PARTITION\tSTART\tEND\tRECORDS\tBYTES\t")
		var records, bytes int64
		for _, p := range parts {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t\n", p.Partition, p.StartOffset, p.EndOffset, p.EndOffset-p.StartOffset, p.Bytes)
			records += p.EndOffset - p.StartOffset
			bytes += p.Bytes
		}
		fmt.Fprintf(tw, "total\t\t\t%d\t%d\t\n", records, bytes)
		return tw.Flush()
	})
}

func runTopicDelete(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("topic delete", "NAME", "Delete a topic and every record in it. There is no undo.", stdout, stderr)
	return f.call(ctx, args, 1, 1, func(rctx context.Context, c *client.Client, ops []string) error {
		if err := c.DeleteTopic(rctx, ops[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted topic %s\n", ops[0])
		return nil
	})
}

// unlimited formats a retention or size setting, where 0 means none (or the broker's default).
func unlimited(v int64, format func(int64) string) string {
	if v <= 0 {
		return "-"
	}
	return format(v)
}

func storage(flags wire.TopicFlags) string {
	if flags&wire.TopicMemory != 0 {
		return "memory"
	}
	return "disk"
}

// formatBytes writes n exactly, in the largest binary unit that divides it: 1024 is "1KiB",
// 1500 is "1500".
func formatBytes(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return fmt.Sprint(n)
}

// formatMs writes a duration in milliseconds in days when whole, else as Go writes durations.
func formatMs(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	if day := 24 * time.Hour; d >= day && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}
