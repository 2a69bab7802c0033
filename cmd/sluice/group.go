package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

func init() {
	register(command{name: "group list", summary: "list the consumer groups", run: runGroupList})
	register(command{name: "group describe", summary: "show a group's members, offsets and lag", run: runGroupDescribe})
	register(command{name: "group delete", summary: "delete a consumer group without members", run: runGroupDelete})
	register(command{name: "group seek", summary: "move a group's committed offset on a topic to an offset", run: runGroupSeek})
	register(command{name: "group reset", summary: "move a group's committed offsets on a topic to the start or end", run: runGroupReset})
}

func runGroupSeek(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("group seek", "GROUP TOPIC OFFSET",
		"Set GROUP's committed offset (the next offset it reads) on TOPIC to OFFSET, on every\n"+
			"partition or on --partition P only. OFFSET is clamped to each partition's retained\n"+
			"records. The group must have no members: stop its consumers first (members would keep\n"+
			"their own positions and commit over it).", stdout, stderr)
	partition := f.Int("partition", -1, "move partition `P` only (default: all)")
	return f.call(ctx, args, 3, 3, func(rctx context.Context, c *client.Client, ops []string) error {
		off, err := strconv.ParseInt(ops[2], 10, 64)
		if err != nil || off < 0 {
			return f.usageError("OFFSET %q is not an offset", ops[2])
		}
		return moveGroup(rctx, c, stdout, ops[0], ops[1], int32(*partition), func(p wire.PartitionInfo) int64 {
			return min(max(off, p.StartOffset), p.EndOffset)
		})
	})
}

func runGroupReset(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("group reset", "GROUP TOPIC",
		"Set GROUP's committed offsets on TOPIC to each partition's oldest retained record (--to\n"+
			"earliest, the default: the group reads everything again) or to its end (--to latest: the\n"+
			"group skips what is there). The group must have no members.", stdout, stderr)
	to := f.String("to", "earliest", "`WHERE`: earliest or latest")
	partition := f.Int("partition", -1, "move partition `P` only (default: all)")
	return f.call(ctx, args, 2, 2, func(rctx context.Context, c *client.Client, ops []string) error {
		var pick func(wire.PartitionInfo) int64
		switch *to {
		case "earliest":
			pick = func(p wire.PartitionInfo) int64 { return p.StartOffset }
		case "latest":
			pick = func(p wire.PartitionInfo) int64 { return p.EndOffset }
		default:
			return f.usageError("--to %q: want earliest or latest", *to)
		}
		return moveGroup(rctx, c, stdout, ops[0], ops[1], int32(*partition), pick)
	})
}

// moveGroup commits group's offset on each partition of topic (or only) at pick's offset, after
// checking that the group has no members, and prints one line a partition.
func moveGroup(ctx context.Context, c *client.Client, stdout io.Writer, group, topic string, only int32, pick func(wire.PartitionInfo) int64) error {
	gi, err := c.DescribeGroup(ctx, group)
	if err != nil && !errors.Is(err, wire.CodeUnknownGroup) {
		return err
	}
	if n := len(gi.Members); n > 0 {
		return fmt.Errorf("group %s has %d %s: stop its consumers first", group, n, plural(n, "member"))
	}
	info, err := c.DescribeTopic(ctx, topic)
	if err != nil {
		return err
	}
	found := false
	for _, p := range info.Partitions {
		if only >= 0 && p.Partition != only {
			continue
		}
		found = true
		off := pick(p)
		if err := c.CommitOffset(ctx, group, topic, p.Partition, off); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "group %s: %s partition %d now at offset %d\n", group, topic, p.Partition, off)
	}
	if !found {
		return fmt.Errorf("topic %s has no partition %d", topic, only)
	}
	return nil
}

func runGroupDelete(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("group delete", "GROUP",
		"Delete a consumer group and its committed offsets. The broker refuses a group that still has\n"+
			"members.", stdout, stderr)
	return f.call(ctx, args, 1, 1, func(rctx context.Context, c *client.Client, ops []string) error {
		if err := c.DeleteGroup(rctx, ops[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted group %s\n", ops[0])
		return nil
	})
}

func runGroupList(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("group list", "", "List the consumer groups that have members or committed offsets, one a line.", stdout, stderr)
	return f.call(ctx, args, 0, 0, func(rctx context.Context, c *client.Client, _ []string) error {
		groups, err := c.ListGroups(rctx)
		if err != nil {
			return err
		}
		slices.Sort(groups)
		for _, g := range groups {
			fmt.Fprintln(stdout, g)
		}
		return nil
	})
}

func runGroupDescribe(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("group describe", "GROUP",
		"Show a consumer group: its generation, each member with the partitions it holds, and per\n"+
			"partition the committed offset (the next the group reads), the partition's end and the lag\n"+
			"between them.", stdout, stderr)
	return f.call(ctx, args, 1, 1, func(rctx context.Context, c *client.Client, ops []string) error {
		gi, err := c.DescribeGroup(rctx, ops[0])
		if err != nil {
			return err
		}
		writeGroup(stdout, &gi)
		return nil
	})
}

func writeGroup(w io.Writer, gi *client.GroupInfo) {
	fmt.Fprintf(w, "group:       %s\ngeneration:  %d\n", gi.Name, gi.Generation)

	members := slices.Clone(gi.Members)
	slices.SortFunc(members, func(a, b wire.GroupMember) int {
		return cmp.Or(strings.Compare(a.Topic, b.Topic), strings.Compare(a.Member, b.Member))
	})
	fmt.Fprintf(w, "\n%d %s\n", len(members), plural(len(members), "member"))
	if len(members) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "MEMBER\tTOPIC\tPARTITIONS\tCLIENT\tADDRESS")
		for _, m := range members {
			parts := slices.Clone(m.Partitions)
			slices.Sort(parts)
			s := make([]string, len(parts))
			for i, p := range parts {
				s[i] = fmt.Sprint(p)
			}
			list := strings.Join(s, ",")
			if list == "" {
				list = "-"
			}
			// A broker of protocol version 1 names no client: "-".
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Member, m.Topic, list, cmp.Or(m.ClientID, "-"), cmp.Or(m.Addr, "-"))
		}
		tw.Flush()
	}

	offsets := slices.Clone(gi.Offsets)
	slices.SortFunc(offsets, func(a, b wire.GroupOffset) int {
		return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	fmt.Fprintln(w)
	if len(offsets) == 0 {
		fmt.Fprintln(w, "no committed offsets")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\t")
	var total int64
	for _, o := range offsets {
		if o.End < 0 { // the partition is gone (its topic deleted): no end, no lag
			fmt.Fprintf(tw, "%s\t%d\t%d\t-\t-\t\n", o.Topic, o.Partition, o.Committed)
			continue
		}
		if o.Committed > o.End { // stored before commits were checked: a joining member resets it
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\tout of range\t\n", o.Topic, o.Partition, o.Committed, o.End)
			continue
		}
		lag := o.End - o.Committed
		total += lag
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", o.Topic, o.Partition, o.Committed, o.End, lag)
	}
	fmt.Fprintf(tw, "total\t\t\t\t%d\t\n", total)
	tw.Flush()
}
