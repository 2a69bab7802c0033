package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/wire"
)

func init() {
	register(command{name: "group list", summary: "list the consumer groups", run: runGroupList})
	register(command{name: "group describe", summary: "show a group's members, offsets and lag", run: runGroupDescribe})
	register(command{name: "group delete", summary: "delete a consumer group without members", run: runGroupDelete})
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
		fmt.Fprintln(tw, "MEMBER\tTOPIC\tPARTITIONS")
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
			fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Member, m.Topic, list)
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
