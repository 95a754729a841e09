package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
)

// proxyListener wraps l so that the PROXY protocol (v1 or v2) is honoured
// from the listed load balancers only. They must send the header (a
// balancer that forgets it would make every client look like the
// balancer); anyone else's connection is taken as it is, so a PROXY line
// from them is just an unknown SMTP command.
func proxyListener(l net.Listener, from []netip.Prefix) net.Listener {
	if len(from) == 0 {
		return l
	}
	ranges := make([]string, len(from))
	for i, p := range from {
		ranges[i] = p.String()
	}
	// Ranges come from a validated config; an error here is a bug.
	policy, err := proxyproto.PolicyFromRanges(ranges, proxyproto.REQUIRE, proxyproto.SKIP)
	if err != nil {
		panic("proxy: PROXY protocol ranges: " + err.Error())
	}
	return &proxyproto.Listener{Listener: l, ConnPolicy: policy, ReadHeaderTimeout: 5 * time.Second}
}

// limitListener caps connections in total and per client address. A
// connection over a cap is told "421 4.7.0" and closed at once, before any
// SMTP state exists (go-smtp has no such limit of its own).
//
// Finding the client's address can mean reading a PROXY header, which a
// slow balancer could stall; so each new connection is resolved in its own
// goroutine and Accept hands out only connections that passed.
type limitListener struct {
	net.Listener
	total, perIP int
	greeting     string // the 421 line, with our host name
	shutting     string // the 421 line for connections that come during a shutdown
	tooMany      string // the 421 line for a connection past limits.max_errors
	hooks        limitHooks

	mu     sync.Mutex
	n      int
	byAddr map[netip.Addr]int
	conns  map[*limitConn]struct{} // handed out by Accept and not closed
	shut   bool                    // shutting down: admit nothing more

	ready chan net.Conn
	errc  chan error
	once  sync.Once
	done  chan struct{}
}

// limitHooks report what the listener did, for logs and metrics. All are
// set before the listener starts; none may be nil.
type limitHooks struct {
	acceptError func(error) // accept failed (EMFILE...), retrying; nil: it works again
	http        func()      // a client spoke HTTP
	cutCommand  func()      // a command line was cut by the command timeout
	opened      func()      // a connection was admitted (handed to go-smtp)
	closed      func()      // ...and is closed now
	// refused: a connection over a cap, limit "max_connections" (client
	// unknown: the zero Addr) or "max_connections_per_ip".
	refused func(client netip.Addr, limit string)
	// protocolError counts an error reply go-smtp gave on its own (see
	// limitConn.Write; reply is its last line, without CRLF) toward
	// limits.max_errors, and reports whether the connection is now over
	// the limit.
	protocolError func(lc *limitConn, reply []byte) bool
}

func newLimitListener(l net.Listener, total, perIP int, hostname string, hooks limitHooks) *limitListener {
	ll := &limitListener{
		Listener: l, total: total, perIP: perIP,
		greeting: "421 4.7.0 " + hostname + " Too many connections, try again later\r\n",
		shutting: "421 4.3.2 " + hostname + " Service shutting down, try again later\r\n",
		tooMany:  "421 4.7.0 " + hostname + " " + errTooManyErrors.Message + "\r\n",
		hooks:    hooks,
		byAddr:   map[netip.Addr]int{},
		conns:    map[*limitConn]struct{}{},
		ready:    make(chan net.Conn),
		errc:     make(chan error, 1),
		done:     make(chan struct{}),
	}
	go ll.acceptLoop()
	return ll
}

func (l *limitListener) acceptLoop() {
	failing := false
	for {
		c, err := l.Listener.Accept()
		if failing && err == nil {
			l.hooks.acceptError(nil)
			failing = false
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.errc <- err
				return
			}
			// EMFILE, ENFILE, ECONNABORTED...: out of descriptors now is
			// not out of descriptors for good. Back off, don't spin, and
			// never stop accepting while the process lives.
			l.hooks.acceptError(err)
			failing = true
			time.Sleep(50 * time.Millisecond)
			// accept4 takes a descriptor before it looks at the queue:
			// when descriptors are free again but no client is waiting,
			// Accept just blocks, and the recovery would be told only
			// at the next client. A descriptor that can be had now says
			// it at once.
			if !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) {
				continue // not about descriptors: told when Accept works
			}
			if f, err := os.Open(os.DevNull); err == nil {
				f.Close()
				l.hooks.acceptError(nil)
				failing = false
			}
			continue
		}
		l.mu.Lock()
		over := l.n >= l.total
		if !over {
			l.n++
		}
		l.mu.Unlock()
		if over {
			// No address: asking for it would wait for a PROXY header
			// here, in the accept loop; and the cap is not one client's.
			l.refuse(c, netip.Addr{}, "max_connections")
			continue
		}
		go l.admit(c)
	}
}

func (l *limitListener) admit(c net.Conn) {
	addr := addrOf(c.RemoteAddr()) // may read a PROXY header
	l.mu.Lock()
	// A client without an address (a balancer's PROXY header naming a
	// unix socket) has only the total cap: release counts per address
	// only what has one, and a count kept for the zero address would
	// never come down.
	over := addr.IsValid() && l.byAddr[addr] >= l.perIP
	if !over && addr.IsValid() {
		l.byAddr[addr]++
	}
	l.mu.Unlock()
	if over {
		l.release(netip.Addr{})
		l.refuse(c, addr, "max_connections_per_ip")
		return
	}
	lc := &limitConn{Conn: c, l: l, addr: addr}
	l.mu.Lock()
	shut := l.shut
	if !shut {
		l.conns[lc] = struct{}{}
		lc.admitted = true
	}
	l.mu.Unlock()
	if !shut {
		// A session from the 220 on (go-smtp makes its own only at
		// EHLO): the gauge counts what max_connections counts.
		l.hooks.opened()
	}
	if shut {
		// Shutting down: told so, as a 421 says, rather than refused
		// by the kernel.
		lc.SetWriteDeadline(time.Now().Add(time.Second))
		lc.Write([]byte(l.shutting))
		lc.Close()
		return
	}
	select {
	case l.ready <- lc:
	case <-l.done:
		lc.Close()
	}
}

func (l *limitListener) refuse(c net.Conn, client netip.Addr, limit string) {
	l.hooks.refused(client, limit)
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write([]byte(l.greeting))
	c.Close()
}

// shutdown admits no more connections and closes every connection for
// which keep returns false, after bye (which may be nil) has had its
// chance to say goodbye on it. The goodbyes are said in parallel, so a
// client that reads nothing delays the rest by its write deadline at most.
func (l *limitListener) shutdown(keep func(net.Conn) bool, bye func(*limitConn)) {
	l.mu.Lock()
	l.shut = true
	var idle []*limitConn
	for c := range l.conns {
		if !keep(c) {
			idle = append(idle, c)
		}
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range idle {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if bye != nil {
				bye(c)
			}
			c.Close()
		}()
	}
	wg.Wait()
}

func (l *limitListener) release(addr netip.Addr) {
	l.mu.Lock()
	l.n--
	if addr.IsValid() {
		if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
			delete(l.byAddr, addr)
		}
	}
	l.mu.Unlock()
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case err := <-l.errc:
		l.errc <- err // every later Accept fails the same way
		return nil, err
	}
}

// Close stops handing out connections. During a shutdown (see shutdown)
// the socket stays open, and every connection that comes meanwhile is
// answered 421 4.3.2 and closed, until closeSocket; otherwise it closes
// the socket too.
func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	l.mu.Lock()
	shut := l.shut
	l.mu.Unlock()
	if shut {
		return nil
	}
	return l.Listener.Close()
}

// closeSocket closes the listening socket, at the end of a shutdown.
func (l *limitListener) closeSocket() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	l        *limitListener
	addr     netip.Addr
	once     sync.Once
	admitted bool // counted as open (under l.mu)

	// The client's first line, until it is known not to be HTTP.
	first   []byte
	firstOK bool
	// lineStart is the start (up to 16 bytes) of the line Read handed
	// out last, for Write to tell an HTTP method go-smtp refused as a
	// command (its reply names no command: "501 5.5.2 Bad command").
	lineMu    sync.Mutex
	lineStart []byte
	// replied: go-smtp wrote a reply since the last Read, so the next
	// byte it reads starts a command line, whatever the last bytes read
	// were (a BDAT chunk need not end with a line end).
	replied atomic.Bool

	// Read hands go-smtp the client's bytes one line at a time, from buf
	// (read from the connection into rbuf, handed out from off), so that
	// go-smtp's own buffer never holds more than the line it is reading:
	// pos, the number of bytes handed out, is then exactly where go-smtp
	// is in the stream, and a DATA message is the bytes handed out between
	// its start and its end. dotCRAt is the position just past the line in
	// which the last "\n.\r" followed by anything but "\n" was handed out
	// (a dot line with a bare CR: go-smtp's dot-unstuffing drops that CR,
	// so the session could not see it in the data it gets); tail holds the
	// last bytes handed out, for the pattern across lines.
	rbuf    [4096]byte
	buf     []byte
	off     int
	pos     atomic.Int64
	dotCRAt atomic.Int64
	tail    [3]byte

	// forced is set by a BDAT transaction whose data clock ran out: it
	// moves the read deadline to now, and the read that then fails (go-smtp
	// copying a chunk) returns errDataTimeout, which go-smtp answers as it
	// is (451 4.4.2), instead of the timeout, which it would answer with
	// a permanent 554 and the socket error's text.
	forced atomic.Bool
	// inChunks: a BDAT transfer is open (from its data's start to Reset):
	// a read cut by any deadline, go-smtp's command_timeout included, is
	// a data timeout (451), not go-smtp's permanent 554. It is changed
	// only under chunkMu: chunks counts the transfers whose Data began
	// since the last Reset (chunkEpoch counts the Resets), so that a stale
	// transfer's Data (go-smtp starts each in a goroutine, which may run
	// after the transfer was reset, and after a newer one began) takes
	// back only its own count.
	inChunks   atomic.Bool
	chunkMu    sync.Mutex
	chunks     int
	chunkEpoch uint64

	// partial: the bytes read so far end inside a line. When the command
	// timeout cuts such a line, bufio hands go-smtp the part as a whole
	// line, and go-smtp runs it (a client trickling a command would be
	// answered piece by piece and hold the session for several timeouts):
	// the connection is closed instead. Not inside DATA (inData), whose
	// deadlines the session keeps and answers, nor under TLS (noGuard),
	// where these bytes are ciphertext.
	partial bool
	inData  atomic.Bool
	noGuard atomic.Bool
	// helo: the client's latest greeting was HELO, not EHLO (seen in
	// plaintext, where a greeting is: TLS needs EHLO), for the Received
	// field's protocol, SMTP rather than ESMTP (RFC 5321 section 4.4).
	helo atomic.Bool

	// hangUp: the next write (the reply to the command in progress) is the
	// last; the connection is closed right after it, before go-smtp can
	// read another command from what the client sent.
	hangUp atomic.Bool

	// go-smtp answers some commands without asking the session (RCPT
	// before MAIL, a bad MAIL argument, DATA without recipients, unknown
	// commands...): those error replies are counted here, as they are
	// written, toward limits.max_errors, as Postfix counts every error.
	// ownReply is set by the session when it answers a command itself
	// (and counts its own refusals); sess is the session, once there is
	// one (errs counts before it).
	ownReply atomic.Bool
	sess     atomic.Pointer[session]
	errs     int
}

// Write writes what go-smtp sends, and looks at it when it is a reply (in
// plaintext; under TLS these bytes are ciphertext).
func (c *limitConn) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("220 ")) && bytes.Contains(p, []byte("Ready to start TLS")) {
		// go-smtp starts TLS next: what the client sent after STARTTLS
		// is dropped, as RFC 3207 asks (the handshake reads from here),
		// as go-smtp's own buffer of it would be; and from now on the
		// bytes are TLS, unless a plaintext reply says the handshake
		// failed.
		c.off = len(c.buf)
		c.noGuard.Store(true)
		n, err := c.Conn.Write(p)
		return n, err
	}
	if len(p) > 0 && isDigit(p[0]) {
		c.replied.Store(true)
	}
	if len(p) > 0 && isDigit(p[0]) && c.noGuard.Load() {
		// A plaintext reply where TLS was starting: the handshake failed
		// (go-smtp answers it so, and goes on in plaintext). A TLS
		// record never starts with a digit.
		c.noGuard.Store(false)
		c.partial = false // it described handshake bytes, not a command
	}
	if !c.noGuard.Load() && !c.hangUp.Load() && c.httpCommandReply(p) {
		// go-smtp took an HTTP method for a command later in the
		// session, or a bare one on the first line (the check in Read
		// takes the first line's "GET /..."): the client is dropped as
		// there, as Postfix's smtpd_forbidden_commands drops it, with
		// its 221 instead of go-smtp's 500.
		c.l.hooks.http()
		c.hangUp.Store(true)
		io.WriteString(c.Conn, "221 2.7.0 Error: an HTTP command is no SMTP; closing connection\r\n")
		c.Close()
		return len(p), nil
	}
	if len(p) > 0 && isDigit(p[0]) {
		// The line this reply answered is done with: the next reply
		// answers a line Read has yet to hand out (or one left in
		// go-smtp's buffer behind a BDAT chunk, which is never HTTP).
		c.lineMu.Lock()
		c.lineStart = c.lineStart[:0]
		c.lineMu.Unlock()
	}
	over := false
	if !c.noGuard.Load() && !c.hangUp.Load() {
		if reply := c.errorReply(p); reply != nil {
			over = c.l.hooks.protocolError(c, reply)
		}
	}
	n, err := c.Conn.Write(p)
	if over {
		c.hangUp.Store(true)
		if err == nil {
			io.WriteString(c.Conn, c.l.tooMany)
		}
	}
	if c.hangUp.Load() {
		c.Close()
	}
	return n, err
}

// errorReply returns the last line of p if p ends a reply that go-smtp
// gave on its own with a 4xx or 5xx code (not 421, which ends a session
// anyway), else nil. go-smtp writes a reply's lines at once, and each
// reply on its own.
func (c *limitConn) errorReply(p []byte) []byte {
	line := bytes.TrimSuffix(p, []byte("\r\n"))
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if len(line) < 4 || line[3] != ' ' || !isDigit(line[0]) || !isDigit(line[1]) || !isDigit(line[2]) {
		return nil // not the end of a reply
	}
	if c.ownReply.Swap(false) {
		return nil // the session's: counted there
	}
	if (line[0] == '4' || line[0] == '5') && !bytes.HasPrefix(line, []byte("421")) {
		return line
	}
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// httpMethods are first lines of HTTP, not SMTP: a browser pointed at port
// 25, or a cross-protocol attack that smuggles SMTP commands inside an
// HTTP request. Postfix drops such clients (smtpd_forbidden_commands);
// so does sclgate, before go-smtp answers any of the lines that follow.
var httpMethods = [][]byte{[]byte("GET "), []byte("POST "), []byte("CONNECT "), []byte("HEAD "), []byte("PUT "), []byte("OPTIONS ")}

// httpCommandReply reports whether p is go-smtp's refusal of a command
// line that starts with an HTTP method ("GET / HTTP/1.0", a bare "GET",
// "POST /x": "501 5.5.2 Bad command" for the ones that are not four
// letters, "500 5.5.2 Syntax errors, POST command unrecognized" for the
// others). go-smtp's parser, not a look at the bytes, decided the line
// was a command, so a message's text (a body line "GET READY") never
// counts; the line it refused is the one Read handed out since the last
// reply, as Read hands out one line at a time and go-smtp answers each
// before it reads the next. (A BDAT chunk that ends inside a line leaves
// the rest of that line in go-smtp's buffer, where Read does not see it
// start: such a command is never taken for HTTP, only answered 500/501.)
func (c *limitConn) httpCommandReply(p []byte) bool {
	if !bytes.HasPrefix(p, []byte("501 5.5.2 Bad command\r\n")) && !bytes.HasPrefix(p, []byte("500 5.5.2 Syntax errors, ")) {
		return false
	}
	c.lineMu.Lock()
	line := bytes.TrimRight(c.lineStart, "\r\n")
	c.lineMu.Unlock()
	for _, m := range httpMethods {
		verb := m[:len(m)-1]
		if len(line) >= len(verb) && bytes.EqualFold(line[:len(verb)], verb) && (len(line) == len(verb) || line[len(verb)] == ' ') {
			return true
		}
	}
	return false
}

func (c *limitConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.replied.Swap(false) {
		c.partial = false
	}
	if c.hangUp.Load() {
		return 0, net.ErrClosed // the session is ending: nothing more is read
	}
	if c.off == len(c.buf) {
		n, err := c.Conn.Read(c.rbuf[:])
		if n == 0 {
			if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
				if c.partial && !c.inData.Load() && !c.noGuard.Load() {
					c.l.hooks.cutCommand()
					// RFC 5321 section 3.8: a server that gives up on a
					// session says so with 421, as go-smtp does to an
					// idle client.
					// (go-smtp's deadline ran out for writing too.)
					c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
					io.WriteString(c.Conn, "421 4.4.2 Command not finished in time, closing connection\r\n")
					c.Close()
					return 0, net.ErrClosed
				}
				// Whatever was being read — a command line, a message, a
				// BDAT chunk or one go-smtp discards — the reply go-smtp
				// gives this failed read is the session's last: where the
				// client is in its stream is not known, and what it sends
				// next, read as commands, could be the rest of a message
				// (SMTP smuggling). go-smtp closes after an idle command
				// read anyway.
				c.hangUp.Store(true)
				if c.forced.CompareAndSwap(true, false) || c.inChunks.Load() {
					// A BDAT transfer's clock ran out (see forced), or a
					// deadline cut a chunk: a 451, not go-smtp's permanent
					// 554 for a read error.
					return 0, errDataTimeout
				}
			}
			return 0, err
		}
		// A read error with data comes again at the next read.
		c.buf, c.off = c.rbuf[:n], 0
	}
	line := c.buf[c.off:]
	if i := bytes.IndexByte(line, '\n'); i >= 0 && !c.noGuard.Load() {
		line = line[:i+1] // under TLS these are records, not lines
	}
	n := copy(p, line)
	c.off += n
	b := p[:n]
	// A greeting with a name: go-smtp refuses one without.
	if !c.partial && !c.noGuard.Load() && !c.inData.Load() && !c.inChunks.Load() && len(b) > 5 && b[4] == ' ' && len(bytes.TrimSpace(b[5:])) > 0 {
		if g := b[:4]; bytes.EqualFold(g, []byte("HELO")) {
			c.helo.Store(true)
		} else if bytes.EqualFold(g, []byte("EHLO")) {
			c.helo.Store(false)
		}
	}
	if !c.noGuard.Load() {
		c.lineMu.Lock()
		if !c.partial {
			c.lineStart = c.lineStart[:0]
		}
		if room := 16 - len(c.lineStart); room > 0 {
			c.lineStart = append(c.lineStart, b[:min(n, room)]...)
		}
		c.lineMu.Unlock()
	}
	c.partial = b[n-1] != '\n'
	if !c.noGuard.Load() && c.dotCR(b) {
		c.dotCRAt.Store(c.pos.Load() + int64(n))
	}
	c.pos.Add(int64(n))
	if c.firstOK {
		return n, nil
	}
	c.first = append(c.first, b[:min(n, 16-len(c.first))]...)
	for _, m := range httpMethods {
		if len(c.first) >= len(m) && bytes.EqualFold(c.first[:len(m)], m) {
			c.l.hooks.http()
			c.Close()
			return 0, io.EOF
		}
	}
	if len(c.first) >= 16 || bytes.IndexByte(b, '\n') >= 0 {
		c.firstOK, c.first = true, nil
	}
	return n, nil
}

// beginChunks marks a BDAT transfer open, and returns the epoch it
// began in, for staleChunks.
func (c *limitConn) beginChunks() (epoch uint64) {
	c.chunkMu.Lock()
	defer c.chunkMu.Unlock()
	c.chunks++
	c.inChunks.Store(true)
	return c.chunkEpoch
}

// staleChunks takes back beginChunks for a transfer that turned out to
// have been reset before it ran, unless a Reset came since (which took
// it back already).
func (c *limitConn) staleChunks(epoch uint64) {
	c.chunkMu.Lock()
	defer c.chunkMu.Unlock()
	if c.chunkEpoch == epoch && c.chunks > 0 {
		c.chunks--
		c.inChunks.Store(c.chunks > 0)
	}
}

// endChunks marks no BDAT transfer open (Reset, or a DATA message).
func (c *limitConn) endChunks() {
	c.chunkMu.Lock()
	defer c.chunkMu.Unlock()
	c.chunks = 0
	c.chunkEpoch++
	c.inChunks.Store(false)
}

func (c *limitConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		admitted := c.admitted
		c.l.mu.Unlock()
		c.l.release(c.addr)
		if admitted {
			c.l.hooks.closed()
		}
	})
	return c.Conn.Close()
}

// dotCR reports whether b, handed out after the bytes in tail, completes
// "\n.\r" followed by anything but "\n", and updates tail. It runs on
// every byte a plaintext client sends, so it jumps from one "\n.\r" to the
// next (bytes.Index) rather than look at each byte.
func (c *limitConn) dotCR(b []byte) bool {
	// A sequence across the previous line's end: the saved tail and the
	// first bytes of this one.
	var edge [6]byte
	n := copy(edge[:], c.tail[:])
	n += copy(edge[n:], b)
	found := hasDotCR(edge[:n]) || hasDotCR(b)
	if len(b) >= 3 {
		copy(c.tail[:], b[len(b)-3:])
	} else {
		copy(c.tail[:], edge[n-3:n])
	}
	return found
}

var nlDotCR = []byte("\n.\r")

// hasDotCR reports whether b holds "\n.\r" and a fourth byte that is not
// "\n"; a "\n.\r" at the very end is left to the next line.
func hasDotCR(b []byte) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], nlDotCR)
		if j < 0 {
			return false
		}
		k := i + j + 3
		if k < len(b) && b[k] != '\n' {
			return true
		}
		i += j + 1
	}
}

// addrOf returns the IP of a net.Addr, unmapped from IPv4-in-IPv6.
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
