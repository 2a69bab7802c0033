package mqtt

import (
	"bytes"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestWriteMetrics: the listener's counters parse as Prometheus text and count what happened.
func TestWriteMetrics(t *testing.T) {
	b := startBroker(t, nil, nil)
	c := b.mustDial("c", nil)
	c.sub(t, "m", 1)
	c.pub(t, "m", 1, "hello")
	c.next(t)
	var buf bytes.Buffer
	b.srv.WriteMetrics(&buf)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for name, atLeast := range map[string]float64{
		"sluice_mqtt_connections": 1, "sluice_mqtt_connects_total": 1, "sluice_mqtt_published_in_total": 1,
		"sluice_mqtt_published_out_total": 1, "sluice_mqtt_published_in_bytes_total": 5, "sluice_mqtt_subscriptions": 1,
	} {
		f := fams[name]
		if f == nil || len(f.Metric) != 1 {
			t.Errorf("%s missing", name)
			continue
		}
		v := f.Metric[0].GetGauge().GetValue() + f.Metric[0].GetCounter().GetValue()
		if v < atLeast {
			t.Errorf("%s = %v, want >= %v", name, v, atLeast)
		}
	}
	if f := fams["sluice_mqtt_packets_total"]; f == nil || len(f.Metric) != 30 {
		t.Errorf("sluice_mqtt_packets_total: %v", f)
	}
}
