// Package gnetrun starts the gnet event loops of a face (the native protocol, Kafka, MQTT) with the
// options they share.
package gnetrun

import (
	"log/slog"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicemq/sluice/internal/gnetlog"
)

// Config is what differs between the faces' loops.
type Config struct {
	Addr        string // "host:port" to listen on (TCP)
	Loops       int    // event loops
	ReadBuffer  int    // bytes gnet reads per connection per call (gnet.WithReadBufferCap)
	WriteBuffer int    // bytes of a connection's outbound buffer before it spills (gnet.WithWriteBufferCap)
	Log         *slog.Logger
}

// Start runs h's loops on a goroutine (multicore, a ticker, SO_REUSEADDR, TCP_NODELAY, gnet's logs
// through c.Log), which sends gnet.Run's result to done when the loops stop. It returns once h's
// OnBoot has closed booted, or with gnet.Run's error if the loops failed to start (a port in use).
// done must have room for the one result.
func Start(h gnet.EventHandler, c Config, booted <-chan struct{}, done chan error) error {
	go func() {
		done <- gnet.Run(h, "tcp://"+c.Addr,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(c.Loops),
			gnet.WithTicker(true),
			gnet.WithReuseAddr(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReadBufferCap(c.ReadBuffer),
			gnet.WithWriteBufferCap(c.WriteBuffer),
			gnet.WithLogger(gnetlog.Logger{L: c.Log}),
		)
	}()
	select {
	case <-booted:
		return nil
	case err := <-done:
		return err
	}
}
