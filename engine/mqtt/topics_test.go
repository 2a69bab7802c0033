package mqtt

import (
	"strings"
	"testing"
)

// TestTopicMapping: MQTT topics map onto valid Sluice names and back, reversibly, for the
// characters a Sluice name cannot hold.
func TestTopicMapping(t *testing.T) {
	for _, tc := range []struct{ mqtt, sluice string }{
		{"sensors/eu/temp", "sensors.eu.temp"},
		{"a.b/c", "a_2Eb.c"},
		{"$SYS/x", "_24SYS.x"},
		{"a//b", "a._00.b"},
		{"/a", "_00.a"},
		{"a/", "a._00"},
		{"_inbox/x", "_5Finbox.x"},
		{"a/deleted", "a._64eleted"},
		{"a/deleted/b", "a.deleted.b"},
		{"temp_sensor/x_y", "temp_sensor.x_y"},
		{"x_41", "x_5F41"},
		{"café/ü", "caf_C3_A9._C3_BC"},
		{"sp ace", "sp_20ace"},
	} {
		got, err := SluiceTopic(tc.mqtt)
		if err != nil || got != tc.sluice {
			t.Errorf("SluiceTopic(%q) = %q, %v; want %q", tc.mqtt, got, err, tc.sluice)
			continue
		}
		if back := MQTTTopic(got); back != tc.mqtt {
			t.Errorf("MQTTTopic(%q) = %q, want %q", got, back, tc.mqtt)
		}
	}
	for _, bad := range []string{"", "a/+", "a/#", "a\x00b", strings.Repeat("ab/", 100)} {
		if _, err := SluiceTopic(bad); err == nil {
			t.Errorf("SluiceTopic(%q) succeeded", bad)
		}
	}
}

// FuzzTopicMapping: every topic SluiceTopic accepts maps to a name the engine accepts and back to
// itself.
func FuzzTopicMapping(f *testing.F) {
	for _, s := range []string{"a/b", "_41/_", "$x//y", "a.b", "deleted", "x/deleted"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		name, err := SluiceTopic(topic)
		if err != nil {
			return
		}
		if err := validName(name); err != nil {
			t.Fatalf("SluiceTopic(%q) = %q: %v", topic, name, err)
		}
		if back := MQTTTopic(name); back != topic {
			t.Fatalf("MQTTTopic(SluiceTopic(%q)) = %q", topic, back)
		}
	})
}

// validName is the engine's topic-name rule (engine.validTopicName).
func validName(name string) error {
	if name == "" || len(name) > 249 || strings.HasSuffix(name, ".deleted") {
		return ErrTopicInvalid
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return ErrTopicInvalid
		}
	}
	for _, tok := range strings.Split(name, ".") {
		if tok == "" {
			return ErrTopicInvalid
		}
	}
	return nil
}

// TestFilterMapping: '+' is '*', '#' is '>', and "a/#" subscribes to "a" too.
func TestFilterMapping(t *testing.T) {
	for _, tc := range []struct {
		filter string
		names  []string
	}{
		{"a/+/c", []string{"a.*.c"}},
		{"a/#", []string{"a", "a.>"}},
		{"#", []string{">"}},
		{"+", []string{"*"}},
		{"a/deleted/#", []string{"a._64eleted", "a.deleted.>"}},
		{"a.b/+", []string{"a_2Eb.*"}},
	} {
		m, err := mapFilter(tc.filter)
		if err != nil || strings.Join(m.names, ",") != strings.Join(tc.names, ",") {
			t.Errorf("mapFilter(%q) = %v, %v; want %v", tc.filter, m.names, err, tc.names)
		}
	}
	for _, bad := range []string{"", "a/#/b", "a+/b", "a/b#"} {
		if _, err := mapFilter(bad); err == nil {
			t.Errorf("mapFilter(%q) succeeded", bad)
		}
	}
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/#", "a", true}, {"a/#", "a/b/c", true}, {"a/+", "a/b", true}, {"a/+", "a/b/c", false},
		{"#", "$SYS/x", false}, {"+/x", "$SYS/x", false}, {"$SYS/#", "$SYS/x", true}, {"a/b", "a/b", true},
	} {
		if got := matchFilter(tc.filter, tc.topic); got != tc.want {
			t.Errorf("matchFilter(%q, %q) = %v", tc.filter, tc.topic, got)
		}
	}
}
