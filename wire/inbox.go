package wire

import "strings"

// A reply inbox is a topic whose name the broker interprets: its rights derive from its owner, not
// from rules on its name (docs/security.md). An inbox name is
//
//	_inbox.<owner>.<id>     owner: the creating principal, escaped (below); id: [0-9a-f]+
//	_inbox.<id>             an inbox of the anonymous principal "" (a broker without tokens)
//
// The owner is escaped into the topic alphabet without '.', so the segment up to the first '.'
// after the prefix names exactly one principal: the bytes [A-Za-z0-9-] stand for themselves and
// every other byte b is written "_" followed by b in two lower-case hex digits ("alice@corp" is
// "alice_40corp", "a.b" is "a_2eb", "x_y" is "x_5fy").

// InboxPrefix begins the name of every reply inbox.
const InboxPrefix = "_inbox."

// IsInbox reports whether name is a reply inbox's.
func IsInbox(name string) bool { return strings.HasPrefix(name, InboxPrefix) }

// InboxName returns the inbox name for principal's inbox id. id must be a non-empty string of
// [0-9a-f]; the result may still exceed a topic name's 249 bytes for a long principal, which the
// broker refuses at creation.
func InboxName(principal, id string) string {
	if principal == "" {
		return InboxPrefix + id
	}
	var b strings.Builder
	b.Grow(len(InboxPrefix) + 3*len(principal) + 1 + len(id))
	b.WriteString(InboxPrefix)
	for i := 0; i < len(principal); i++ {
		c := principal[i]
		if plainOwnerByte(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	b.WriteByte('.')
	b.WriteString(id)
	return b.String()
}

// InboxOwnedBy reports whether name is an inbox that principal owns. It compares the escaped
// owner segment in place and does not allocate.
func InboxOwnedBy(name, principal string) bool {
	if !IsInbox(name) {
		return false
	}
	seg, _, named := strings.Cut(name[len(InboxPrefix):], ".")
	if !named {
		return principal == ""
	}
	if principal == "" {
		return false
	}
	j := 0
	for i := 0; i < len(principal); i++ {
		c := principal[i]
		if plainOwnerByte(c) {
			if j >= len(seg) || seg[j] != c {
				return false
			}
			j++
			continue
		}
		if j+3 > len(seg) || seg[j] != '_' || seg[j+1] != hexDigits[c>>4] || seg[j+2] != hexDigits[c&15] {
			return false
		}
		j += 3
	}
	return j == len(seg)
}

func plainOwnerByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

const hexDigits = "0123456789abcdef"
