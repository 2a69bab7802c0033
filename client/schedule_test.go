package client

import (
	"testing"
	"time"

	"github.com/sluicemq/sluice/wire"
)

func TestScheduleHeaders(t *testing.T) {
	cases := []struct {
		h         Header
		key, want string
	}{
		{TTLHeader(30 * time.Second), wire.HeaderTTL, "30000"},
		{TTLHeader(1500 * time.Microsecond), wire.HeaderTTL, "2"},
		{TTLHeader(0), wire.HeaderTTL, "1"},
		{DeliverAtHeader(time.UnixMilli(1700000000123)), wire.HeaderDeliverAt, "1700000000123"},
		{DeliverAtHeader(time.Time{}), wire.HeaderDeliverAt, "0"},
		{DeliverAtHeader(time.UnixMilli(1700000000123).Add(time.Microsecond)), wire.HeaderDeliverAt, "1700000000124"},
		{PriorityHeader(7), wire.HeaderPriority, "7"},
		{PriorityHeader(12), wire.HeaderPriority, "9"},
		{PriorityHeader(-3), wire.HeaderPriority, "0"},
	}
	for i, c := range cases {
		if string(c.h.Key) != c.key || string(c.h.Value) != c.want {
			t.Errorf("case %d: %s=%s, want %s=%s", i, c.h.Key, c.h.Value, c.key, c.want)
		}
	}
}
