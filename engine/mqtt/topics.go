package mqtt

import (
	"errors"
	"strings"
)

// Topic mapping (docs/mqtt.md). An MQTT topic's levels, separated by '/', become a Sluice topic's
// tokens, separated by '.':
//
//	MQTT                 Sluice
//	sensors/eu/temp      sensors.eu.temp
//	a.b/c                a_2Eb.c         ('.' cannot be inside a token)
//	$SYS/x               _24SYS.x        ('$' is outside the topic alphabet)
//	a//b                 a._00.b         (an empty level)
//	_inbox/x             _5Finbox.x      (a first '_' is always escaped: no MQTT topic is a reply inbox)
//	a/deleted            a._64eleted     (no topic name may end in ".deleted")
//
// Within a level, bytes of [A-Za-z0-9-] stay as they are; every other byte is written "_XX" (two
// upper-case hex digits). A '_' stays itself unless it is the name's first byte or is followed by
// two upper-case hex digits, where it is written "_5F"; an empty level is "_00" (MQTT forbids
// U+0000 in topics, so no level decodes to a NUL). Decoding reads "_XX" with upper-case hex digits
// as the byte XX and any other '_' as itself, so every MQTT topic maps to one Sluice name and back.
// A Sluice name that no MQTT topic maps to (a native topic "a_4" or "a_41") decodes by the same
// rule: "a_4" and "a_41" become MQTT "a_4" and "aA".
//
// Filters map level by level the same way, '+' onto the engine's '*' and a last '#' onto '>'.

// maxTopicName is the engine's limit on a topic name, in bytes (engine.validTopicName).
const maxTopicName = 249

var (
	// ErrTopicInvalid is an MQTT topic name that cannot be mapped: empty, holding a wildcard or a
	// NUL, or longer than a Sluice topic name once mapped.
	ErrTopicInvalid = errors.New("mqtt: topic name invalid")
	// ErrFilterInvalid is an MQTT topic filter that is not well formed ('#' not last or not a whole
	// level, '+' not a whole level, empty) or too long once mapped.
	ErrFilterInvalid = errors.New("mqtt: topic filter invalid")
)

// isHex reports whether c is an upper-case hex digit, the only ones an escape uses.
func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

const hexDigits = "0123456789ABCDEF"

// appendLevel appends one MQTT level, escaped as a Sluice token, to dst. first says the level is
// the topic's first (its leading '_' is escaped); last that it is the topic's last.
func appendLevel(dst []byte, level string, first, last bool) []byte {
	if level == "" {
		return append(dst, "_00"...)
	}
	if last && level == "deleted" {
		return append(dst, "_64eleted"...)
	}
	for i := 0; i < len(level); i++ {
		c := level[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-':
			dst = append(dst, c)
		case c == '_' && !(first && i == 0) && !(i+2 < len(level) && isHex(level[i+1]) && isHex(level[i+2])):
			dst = append(dst, c)
		default:
			dst = append(dst, '_', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	return dst
}

// SluiceTopic maps an MQTT topic name onto the Sluice topic name it is stored in. It fails with
// ErrTopicInvalid for a name that is empty, holds '+', '#' or NUL, or maps to more than 249 bytes.
func SluiceTopic(topic string) (string, error) {
	var buf [maxTopicName + 3]byte
	dst, err := appendSluiceTopic(buf[:0], topic)
	if err != nil {
		return "", err
	}
	return string(dst), nil
}

// appendSluiceTopic is SluiceTopic appending to dst; it allocates nothing when dst has room for
// maxTopicName+3 bytes.
func appendSluiceTopic(dst []byte, topic string) ([]byte, error) {
	if topic == "" || strings.ContainsAny(topic, "+#\x00") {
		return dst, ErrTopicInvalid
	}
	start := len(dst)
	for i, rest := 0, topic; ; i++ {
		level, more, found := strings.Cut(rest, "/")
		if i > 0 {
			dst = append(dst, '.')
		}
		dst = appendLevel(dst, level, i == 0, !found)
		if len(dst)-start > maxTopicName {
			return dst, ErrTopicInvalid
		}
		if !found {
			return dst, nil
		}
		rest = more
	}
}

// MQTTTopic maps a Sluice topic name back onto the MQTT topic name SluiceTopic maps to it.
func MQTTTopic(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	for i, rest := 0, name; ; i++ {
		tok, more, found := strings.Cut(rest, ".")
		if i > 0 {
			b.WriteByte('/')
		}
		if tok != "_00" {
			for j := 0; j < len(tok); j++ {
				if tok[j] == '_' && j+2 < len(tok) && isHex(tok[j+1]) && isHex(tok[j+2]) {
					b.WriteByte(unhex(tok[j+1])<<4 | unhex(tok[j+2]))
					j += 2
					continue
				}
				b.WriteByte(tok[j])
			}
		}
		if !found {
			return b.String()
		}
		rest = more
	}
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}

// filterMapping is how one MQTT filter is subscribed in the engine: one or two Sluice topics or
// patterns ("a/#" is both "a" and "a.>").
type filterMapping struct {
	names []string
	// wildFirst: the filter's first level is '+' or '#', which must not match topics beginning
	// with '$' (MQTT 4.7.2): deliveries of such topics are skipped.
	wildFirst bool
}

// mapFilter maps an MQTT topic filter (without any $share prefix) onto engine subscriptions.
func mapFilter(filter string) (filterMapping, error) {
	var m filterMapping
	if filter == "" || strings.IndexByte(filter, 0) >= 0 {
		return m, ErrFilterInvalid
	}
	var dst []byte
	multi := false
	for i, rest := 0, filter; ; i++ {
		level, more, found := strings.Cut(rest, "/")
		switch {
		case level == "#":
			if found {
				return m, ErrFilterInvalid // '#' is last
			}
			multi = true
		case level == "+":
			if i > 0 {
				dst = append(dst, '.')
			}
			dst = append(dst, '*')
		case strings.ContainsAny(level, "+#"):
			return m, ErrFilterInvalid // a wildcard is a whole level
		default:
			if i > 0 {
				dst = append(dst, '.')
			}
			dst = appendLevel(dst, level, i == 0, !found)
		}
		if i == 0 && (level == "+" || level == "#") {
			m.wildFirst = true
		}
		if len(dst) > maxTopicName {
			return m, ErrFilterInvalid
		}
		if !found {
			break
		}
		rest = more
	}
	switch {
	case multi && len(dst) == 0:
		m.names = []string{">"}
	case multi:
		// "a/#" matches "a" itself as well as everything below it. Within a filter, a last level
		// "deleted" was escaped as the topic's last level would be; before '#' it is not last.
		base := string(dst)
		if p, ok := strings.CutSuffix(filter, "/#"); ok && (p == "deleted" || strings.HasSuffix(p, "/deleted")) {
			plain, err := mapFilter(p)
			if err != nil {
				return m, err
			}
			m.names = append(plain.names, base+".>")
			return m, nil
		}
		m.names = []string{base, base + ".>"}
	default:
		m.names = []string{string(dst)}
	}
	return m, nil
}

// matchFilter reports whether the MQTT topic matches the MQTT filter (levels, '+', '#'), with
// MQTT's rule that a filter starting with a wildcard does not match a topic starting with '$'.
func matchFilter(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		if !fmore {
			return !tmore
		}
		if !tmore {
			return frest == "#" // "a/#" matches "a"
		}
		filter, topic = frest, trest
	}
}
