package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
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
	refused     func()      // over a connection cap
	acceptError func(error) // accept failed (EMFILE...), retrying
	http        func()      // a client spoke HTTP
	cutCommand  func()      // a command line was cut by the command timeout
	// protocolError counts an error reply go-smtp gave on its own (see
	// limitConn.Write) toward limits.max_errors, and reports whether the
	// connection is now over the limit.
	protocolError func(*limitConn) bool
}

func newLimitListener(l net.Listener, total, perIP int, hostname string, hooks limitHooks) *limitListener {
	ll := &limitListener{
		Listener: l, total: total, perIP: perIP,
		greeting: "421 4.7.0 " + hostname + " Too many connections, try again later\r\n",
		shutting: "421 4.3.2 " + hostname + " Service shutting down, try again later\r\n",
		tooMany:  "421 4.7.0 " + hostname + " Too many errors, closing connection\r\n",
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
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.errc <- err
				return
			}
			// EMFILE, ENFILE, ECONNABORTED...: out of descriptors now is
			// not out of descriptors for good. Back off, don't spin, and
			// never stop accepting while the process lives.
			l.hooks.acceptError(err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		l.mu.Lock()
		over := l.n >= l.total
		if !over {
			l.n++
		}
		l.mu.Unlock()
		if over {
			l.refuse(c)
			continue
		}
		go l.admit(c)
	}
}

func (l *limitListener) admit(c net.Conn) {
	addr := addrOf(c.RemoteAddr()) // may read a PROXY header
	l.mu.Lock()
	over := l.byAddr[addr] >= l.perIP
	if !over {
		l.byAddr[addr]++
	}
	l.mu.Unlock()
	if over {
		l.release(netip.Addr{})
		l.refuse(c)
		return
	}
	lc := &limitConn{Conn: c, l: l, addr: addr}
	l.mu.Lock()
	shut := l.shut
	if !shut {
		l.conns[lc] = struct{}{}
	}
	l.mu.Unlock()
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

func (l *limitListener) refuse(c net.Conn) {
	l.hooks.refused()
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
	l    *limitListener
	addr netip.Addr
	once sync.Once

	// The client's first line, until it is known not to be HTTP.
	first   []byte
	firstOK bool

	// dots finds, in the raw stream, lines that start with "." and a bare
	// CR: go-smtp's dot-unstuffing drops that CR, so the session could
	// not see it in the data it gets.
	dots dotScanner

	// forced is set by a BDAT transaction whose data clock ran out: it
	// moves the read deadline to now, and the read that then fails (go-smtp
	// copying a chunk) returns errDataTimeout, which go-smtp answers as it
	// is (451 4.4.2), instead of the timeout, which it would answer with
	// a permanent 554 and the socket error's text.
	forced atomic.Bool

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
	over := false
	if !c.noGuard.Load() && !c.hangUp.Load() && c.errorReply(p) {
		over = c.l.hooks.protocolError(c)
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

// errorReply reports whether p ends a reply that go-smtp gave on its own
// with a 4xx or 5xx code (not 421, which ends a session anyway). go-smtp
// writes a reply's lines at once, and each reply on its own.
func (c *limitConn) errorReply(p []byte) bool {
	line := bytes.TrimSuffix(p, []byte("\r\n"))
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if len(line) < 4 || line[3] != ' ' || !isDigit(line[0]) || !isDigit(line[1]) || !isDigit(line[2]) {
		return false // not the end of a reply
	}
	if c.ownReply.Swap(false) {
		return false // the session's: counted there
	}
	return (line[0] == '4' || line[0] == '5') && !bytes.HasPrefix(line, []byte("421"))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// httpMethods are first lines of HTTP, not SMTP: a browser pointed at port
// 25, or a cross-protocol attack that smuggles SMTP commands inside an
// HTTP request. Postfix drops such clients (smtpd_forbidden_commands);
// so does sclgate, before go-smtp answers any of the lines that follow.
var httpMethods = [][]byte{[]byte("GET "), []byte("POST "), []byte("CONNECT "), []byte("HEAD "), []byte("PUT "), []byte("OPTIONS ")}

func (c *limitConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.partial = p[n-1] != '\n'
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		if c.forced.CompareAndSwap(true, false) {
			// A BDAT transfer's clock ran out (see forced): go-smtp's
			// answer to this failed read is the session's last, written
			// from this goroutine; what the client sends after it is not
			// commands.
			c.hangUp.Store(true)
			return n, errDataTimeout
		}
		if c.partial && !c.inData.Load() && !c.noGuard.Load() {
			c.l.hooks.cutCommand()
			c.Close()
			return n, net.ErrClosed
		}
	}
	if n > 0 {
		c.dots.scan(p[:n])
	}
	if c.firstOK || n == 0 {
		return n, err
	}
	c.first = append(c.first, p[:min(n, 16-len(c.first))]...)
	for _, m := range httpMethods {
		if len(c.first) >= len(m) && bytes.EqualFold(c.first[:len(m)], m) {
			c.l.hooks.http()
			c.Close()
			return 0, io.EOF
		}
	}
	if len(c.first) >= 16 || bytes.IndexByte(p[:n], '\n') >= 0 {
		c.firstOK, c.first = true, nil
	}
	return n, err
}

func (c *limitConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		c.l.release(c.addr)
	})
	return c.Conn.Close()
}

// dotScanner finds, in a client's raw byte stream, "\n.\r" followed by
// anything but "\n" (a dot line with a bare CR) inside DATA messages, and
// where each message ends ("\r\n.\r\n"). It follows the stream as go-smtp
// reads it: command lines, a DATA message from the line after "DATA" to
// its end, and the n bytes of each "BDAT n" chunk, which are skipped
// (they are not dot-unstuffed: the session's line-end filter sees their
// bare CRs itself), so that neither a command line "." nor a chunk holding
// "\r\n.\r\n" passes for a message end. Inside a message it jumps from
// one "\n.\r" to the next (bytes.Index) rather than look at each byte.
//
// Reads run ahead of the session: a client may pipeline the next
// transaction, its message included, behind the end of this one (RFC
// 2920), so one read can hold the end of one message and the start of
// the next. So the findings are kept per message: done holds, for each
// message end seen, whether a bare-CR dot line came before it (and after
// the previous end), oldest first; open is the same for the message not
// ended yet.
//
// The findings stay in step with the session's messages as long as each
// DATA message that ends is taken (take); when a transaction ends without
// (a BDAT transfer, a message refused, DATA refused by go-smtp), they may
// not, and the next transaction starts afresh (markStale, then startTxn).
type dotScanner struct {
	mu    sync.Mutex
	mode  int
	skip  int64    // modeChunk: chunk bytes still to come
	line  [24]byte // modeCommand: the start of the current line
	n     int      // its length so far (at most len(line))
	tail  [4]byte  // modeData: the last bytes scanned, for patterns across reads
	done  []bool
	open  bool
	stale bool
}

const (
	modeCommand = iota
	modeData
	modeChunk
)

// maxDone bounds the message ends kept: a client pipelining more
// messages than this in one go loses the oldest findings.
const maxDone = 64

var nlDotCR = []byte("\n.\r")

func (d *dotScanner) scan(b []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(b) > 0 {
		switch d.mode {
		case modeCommand:
			i := bytes.IndexByte(b, '\n')
			part := b
			if i >= 0 {
				part = b[:i+1]
			}
			d.n += copy(d.line[d.n:], part)
			b = b[len(part):]
			if i >= 0 {
				d.command()
			}
		case modeChunk:
			k := min(d.skip, int64(len(b)))
			d.skip -= k
			b = b[k:]
			if d.skip == 0 {
				d.mode, d.n = modeCommand, 0
			}
		default:
			b = d.data(b)
		}
	}
}

// command looks at a command line that has ended: DATA starts a message,
// BDAT n a chunk.
func (d *dotScanner) command() {
	line := bytes.TrimRight(d.line[:d.n], " \t\r\n")
	d.n = 0
	switch {
	case asciiEqualFold(line, "DATA"):
		// The DATA line's CRLF starts the message's first line.
		d.mode, d.tail = modeData, [4]byte{0, 0, '\r', '\n'}
	case len(line) > 5 && asciiEqualFold(line[:5], "BDAT "):
		size, _, _ := bytes.Cut(bytes.TrimLeft(line[5:], " "), []byte(" "))
		if n, err := strconv.ParseInt(string(size), 10, 64); err == nil && n > 0 {
			d.mode, d.skip = modeChunk, n
		}
	}
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// data scans message bytes, and returns what follows the message's end
// if b holds it.
func (d *dotScanner) data(b []byte) []byte {
	// Sequences that start in the tail: their fourth byte is in b.
	var edge [7]byte
	copy(edge[:4], d.tail[:])
	e := edge[:4+copy(edge[4:], b)]
	for i := 1; i <= 3 && i+3 < len(e); i++ {
		if e[i] == '\n' && e[i+1] == '.' && e[i+2] == '\r' && d.found(e[i+3], e[i-1]) {
			return b[i:] // e[i+3], the end's last byte, is b[i-1]
		}
	}
	// Sequences that start in b and end in it; one that ends past it is
	// found by the next scan, from the tail.
	for i := 0; ; {
		j := bytes.Index(b[i:], nlDotCR)
		if j < 0 {
			break
		}
		k := i + j
		if k+3 >= len(b) {
			break
		}
		before := d.tail[3]
		if k > 0 {
			before = b[k-1]
		}
		if d.found(b[k+3], before) {
			return b[k+4:]
		}
		i = k + 1
	}
	if len(b) >= 4 {
		copy(d.tail[:], b[len(b)-4:])
	} else {
		copy(d.tail[:], e[len(e)-4:])
	}
	return nil
}

// found records a "\n.\r" followed by next and preceded by before, and
// reports whether it ended the message (then the commands follow).
func (d *dotScanner) found(next, before byte) bool {
	switch {
	case next != '\n':
		d.open = true
	case before == '\r': // "\r\n.\r\n": the message ends
		if len(d.done) == maxDone {
			d.done = d.done[1:]
		}
		d.done = append(d.done, d.open)
		d.open = false
		d.mode, d.n = modeCommand, 0
		return true
	}
	return false
}

// markStale says the findings may be out of step with the messages.
func (d *dotScanner) markStale() {
	d.mu.Lock()
	d.stale = true
	d.mu.Unlock()
}

// startTxn is called at MAIL: if the findings may be out of step, they are
// forgotten. Otherwise they are kept, since a pipelining client may have
// sent this transaction's message already.
func (d *dotScanner) startTxn() {
	d.mu.Lock()
	if d.stale {
		d.open, d.done, d.stale = false, nil, false
	}
	d.mu.Unlock()
}

// take reports whether the DATA message that has just ended had a dot
// line with a bare CR, and forgets it.
func (d *dotScanner) take() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.done) == 0 { // its end was not seen (not through here)
		found := d.open
		d.open = false
		return found
	}
	found := d.done[0]
	d.done = d.done[1:]
	return found
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
