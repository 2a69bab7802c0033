package tlsconn

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"

	"github.com/panjf2000/gnet/v2"
)

// Serve accepts TLS connections on ln until ln is closed, and returns then. ln must yield
// *tls.Conn (a tls.NewListener). Each connection is wrapped by New with an input bound of maxInput
// bytes and handed to admit, which returns the connection's event loop, or nil to refuse it (Serve
// then closes the connection). For an admitted connection Serve starts ReadLoop and the returned
// loop, each on its own goroutine; the loop owns the connection from then on and must Close it.
// An accept error other than net.ErrClosed is logged at Error as "<face> tls accept" and also ends
// Serve.
func Serve(ln net.Listener, log *slog.Logger, face string, maxInput int, admit func(tc *Conn) (loop func())) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Error(face+" tls accept", "err", err)
			}
			return
		}
		tc := New(nc.(*tls.Conn), maxInput)
		loop := admit(tc)
		if loop == nil {
			nc.Close()
			continue
		}
		go tc.ReadLoop()
		go loop()
	}
}

// Run is the event loop of a face whose connections do not use AsyncWrite (its Tasks are not run):
// on each Woken it runs onTraffic, the same connection code gnet's OnTraffic runs. It returns when
// Close is called, when onTraffic returns gnet.Close, or when ReadLoop has stopped and fewer than
// minFrame bytes (the face's smallest complete frame) remain buffered, so no further frame can be
// served. It does not close c: the caller releases the connection after Run returns.
func (c *Conn) Run(onTraffic func() gnet.Action, minFrame int) {
	for {
		select {
		case <-c.Woken():
		case <-c.Closed():
			return
		}
		if onTraffic() == gnet.Close {
			return
		}
		if c.ReadErr() != nil && c.InboundBuffered() < minFrame {
			return
		}
	}
}
