// Package testnet holds what tests need of the network that the standard
// library does not give: an address where a connection is surely refused.
package testnet

import (
	"strconv"
	"syscall"
	"testing"
)

// RefusingAddr returns a loopback address ("127.0.0.1:port") where
// nothing listens and, for the test's life, nothing else can: a socket
// bound to the port but not listening holds it, so a connection is
// refused. (A port found free and let go may meanwhile be taken by a
// parallel test's server, which then answers the connection that was to
// be refused.)
func RefusingAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
}
