package mqtt

import (
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/server/servertest"
	"github.com/sluicemq/sluice/wire"
)

// TestCloseAnswersFsyncAcks: under MinDurability fsync, Close waits for the fsync a stored QoS 1
// PUBLISH's PUBACK waits for and sends the PUBACK before it closes the connection.
func TestCloseAnswersFsyncAcks(t *testing.T) {
	fs := servertest.NewGatedFS()
	b := startBroker(t, func(o *engine.Options) { o.FS = fs }, func(o *Options) { o.MinDurability = wire.DurabilityFsync })
	if _, err := b.e.AutoCreate("drain"); err != nil {
		t.Fatal(err)
	}
	nc := rawConnect(t, b, 4, 30)
	fs.Hold()
	rawWrite(t, nc, 4, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName: "drain", PacketID: 5, Payload: []byte("x")})
	p := b.e.TopicByName("drain").Partition(0)
	for deadline := time.Now().Add(10 * time.Second); p.NextOffset() < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the PUBLISH was not stored")
		}
	}
	// The PUBACK is held for the fsync before Close starts, not just the record stored.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		owing := false
		b.srv.conns.Range(func(c *conn) { owing = owing || c.waitingAcks.Load() > 0 })
		if owing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection holds a PUBACK for the fsync")
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- b.srv.Close() }()
	time.Sleep(100 * time.Millisecond) // Close is draining (before the fix: the connection is closed by now)
	fs.Release()
	if a := rawRead(t, nc, 4); a.FixedHeader.Type != packets.Puback || a.PacketID != 5 {
		t.Fatalf("PUBACK: %+v", a.FixedHeader)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// TestCloseAnswersPublishInProgress: a QoS 1 PUBLISH stored as Close begins, before its PUBACK is
// queued or held for the fsync, is still acknowledged: Close waits for the loop to finish serving
// packets (conn.reading), then for the sync. Before, Close found nothing owed and the PUBACK of a
// stored message was never sent.
func TestCloseAnswersPublishInProgress(t *testing.T) {
	fs := servertest.NewGatedFS()
	b := startBroker(t, func(o *engine.Options) { o.FS = fs }, func(o *Options) { o.MinDurability = wire.DurabilityFsync })
	if _, err := b.e.AutoCreate("drain"); err != nil {
		t.Fatal(err)
	}
	pause := servertest.NewPause()
	hook := pause.Hook
	publishHook.Store(&hook)
	defer publishHook.Store(nil)
	nc := rawConnect(t, b, 4, 30)
	fs.Hold()
	rawWrite(t, nc, 4, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName: "drain", PacketID: 6, Payload: []byte("x")})
	pause.AwaitReached(t, "the PUBLISH was not stored")
	closed := servertest.CloseWhilePaused(t, pause, fs, b.srv.Close, b.srv.conns.Stopping)
	if a := rawRead(t, nc, 4); a.FixedHeader.Type != packets.Puback || a.PacketID != 6 {
		t.Fatalf("PUBACK: %+v", a.FixedHeader)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
