package server

import "github.com/sluicemq/sluice/wire"

// endTxn serves EndTxn: it commits or aborts a producer's open transaction. A commit waits on
// fdatasyncs (the batches, the decision, the markers), so it runs off the loop and answers with
// AsyncWrite. The producer's batches were authorized when produced; EndTxn needs the producer id
// they carry (a 63-bit random number the producer chose), and is refused (CodeNotAuthorized) to any
// principal but the one whose produce opened the transaction (engine.EndTxnAs). A commit of a
// transaction the engine's transaction timeout aborted is refused with CodeTxnAborted.
func (ss *session) endTxn(f wire.Frame) {
	var m wire.EndTxn
	if !ss.decode(f, &m) {
		return
	}
	if ss.srv.stopping.Load() {
		ss.fail(f, wire.CodeShuttingDown)
		return
	}
	e, principal := ss.srv.e, ss.principal // the loop's: read here, not in the closure
	ss.async(f, func() error { return e.EndTxnAs(principal, m.ProducerID, m.Epoch, m.Commit) }, nil)
}
