package wire

import "testing"

// TestInboxNames: an inbox name's owner segment names exactly its principal.
func TestInboxNames(t *testing.T) {
	for _, p := range []string{"alice", "alice@corp", "a.b", "x_y", "a_2eb", "-", "ünï"} {
		name := InboxName(p, "0a")
		if !InboxOwnedBy(name, p) {
			t.Errorf("%s is not owned by %q", name, p)
		}
		for _, q := range []string{"", "alice", "alice@corp", "a.b", "a_2eb", "x_y", "a", "alice@cor"} {
			if q != p && InboxOwnedBy(name, q) {
				t.Errorf("%s (of %q) is owned by %q", name, p, q)
			}
		}
	}
	if !InboxOwnedBy(InboxName("", "0a"), "") || InboxOwnedBy("_inbox.0a", "alice") {
		t.Error("the anonymous inbox")
	}
	if InboxOwnedBy("orders", "") {
		t.Error("a topic is not an inbox")
	}
	if n := testing.AllocsPerRun(100, func() { InboxOwnedBy("_inbox.alice_40corp.0a", "alice@corp") }); n != 0 {
		t.Errorf("InboxOwnedBy allocates %v times", n)
	}
}
