// Package gnetaddr reports the address a gnet engine's listener is bound to, for every face that
// runs gnet loops.
package gnetaddr

import (
	"net"
	"strconv"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Resolve asks ge's listener socket for its address, so that port 0 reports the real port. When the
// socket cannot be asked, it falls back to the configured address fallback ("host:port"; an
// unparsable part becomes a nil IP or port 0).
func Resolve(ge gnet.Engine, fallback string) net.Addr {
	if fd, err := ge.Dup(); err == nil {
		defer unix.Close(fd)
		if sa, err := unix.Getsockname(fd); err == nil {
			switch a := sa.(type) {
			case *unix.SockaddrInet4:
				return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
			case *unix.SockaddrInet6:
				return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
			}
		}
	}
	host, port, _ := net.SplitHostPort(fallback)
	p, _ := strconv.Atoi(port)
	return &net.TCPAddr{IP: net.ParseIP(host), Port: p}
}
