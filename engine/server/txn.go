package server

import "github.com/sluicemq/sluice/wire"

// endTxn serves EndTxn: it commits or aborts a producer's open transaction. A commit waits on
// fdatasyncs (the batches, the decision, the markers), so it runs off the loop and answers with
// AsyncWrite. The producer's batches were authorized when produced; EndTxn needs only the producer
// id they carry (a 63-bit random number the producer chose).
func (ss *session) endTxn(f wire.Frame) {
	var m wire.EndTxn
	if !ss.decode(f, &m) {
		return
	}
	if ss.srv.stopping.Load() {
		ss.fail(f, wire.CodeShuttingDown)
		return
	}
	e := ss.srv.e
	ss.async(f, func() error { return e.EndTxn(m.ProducerID, m.Epoch, m.Commit) }, nil)
}
