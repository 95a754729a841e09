package web

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"github.com/sclgate/sclgate/archive"
	"github.com/sclgate/sclgate/scorer"
)

// maxHeaderRead bounds how much of a message the list reads to find its
// Subject and From header: a header longer than this shows no subject.
const maxHeaderRead = 64 << 10

// headerInfo is what the list shows from a message's own header.
type headerInfo struct {
	Subject string
	From    string
}

// headerCache remembers headerInfo by file: by ID, size and time (its
// name's, or for a file sclgate did not name, its modification time), so
// that the list reads each header once, and a name used again (IMF's
// names are not unique; "archive delete" and a new file copied in, which
// this process does not see) is read again.
type headerCache struct {
	mu sync.Mutex
	m  map[string]headerInfo
}

func (c *headerCache) get(id string) (headerInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[id]
	return h, ok
}

// maxCachedHeaders bounds the cache (a few hundred bytes an entry: the
// subject and sender are cut to 200 and 120 characters). Past it, headers
// not cached are read each time they are needed, and the cached ones
// stay: emptying the cache when full made every subject search of a
// larger archive read every message again, page after page.
const maxCachedHeaders = 200000

func (c *headerCache) put(id string, h headerInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) < maxCachedHeaders {
		c.m[id] = h
	}
}

// keep drops the entries of files no longer in items (released, deleted,
// purged, or replaced under their name), so that the cache holds at most
// the archive as it is.
func (c *headerCache) keep(items []archive.Item) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) <= len(items) && len(c.m) < maxCachedHeaders {
		// No more entries than files: stale ones (if any) are at most
		// as many as the files, and go once there are more, or when
		// the cache is full. Checking them all at every page load
		// would cost a map lookup per file.
		return
	}
	live := make(map[string]bool, len(items))
	for _, it := range items {
		live[cacheKey(it)] = true
	}
	for k := range c.m {
		if !live[k] {
			delete(c.m, k)
		}
	}
}

// cacheKey names one file under its ID.
func cacheKey(it archive.Item) string {
	return it.ID + "\x00" + strconv.FormatInt(it.Size, 10) + "\x00" + strconv.FormatInt(it.Received.UnixNano(), 10)
}

func (s *Server) headerOf(it archive.Item) headerInfo {
	key := cacheKey(it)
	if h, ok := s.headers.get(key); ok {
		return h
	}
	_, rc, err := s.store.Open(it.ID)
	if err != nil {
		return headerInfo{}
	}
	defer rc.Close()
	h := readHeaderInfo(io.LimitReader(rc, maxHeaderRead))
	s.headers.put(key, h)
	return h
}

func readHeaderInfo(r io.Reader) headerInfo {
	br := bufio.NewReader(r)
	// go-message's header reader, like scorer.Parse, for the same subject.
	hdr, err := readHeader(br)
	if err != nil && hdr.Len() == 0 {
		return headerInfo{}
	}
	mh := mail.Header{Header: hdr}
	// The subject as scorer.Parse decodes it (raw 8-bit text read in the
	// charset it most likely is), as "sclgate archive list" and the
	// message view show it.
	subj := scorer.Parse(headerBytes(hdr)).Subject
	from := hdr.Get("From")
	if addrs, err := mh.AddressList("From"); err == nil && len(addrs) > 0 {
		from = addrs[0].String()
		if addrs[0].Name != "" {
			from = addrs[0].Name + " <" + addrs[0].Address + ">"
		}
	}
	return headerInfo{Subject: clean(subj, 200), From: clean(from, 120)}
}

// headerBytes is hdr written out again, followed by the blank line.
func headerBytes(hdr message.Header) []byte {
	var b bytes.Buffer
	fields := hdr.Fields()
	for fields.Next() {
		raw, err := fields.Raw()
		if err != nil {
			continue
		}
		b.Write(raw)
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

func readHeader(br *bufio.Reader) (message.Header, error) {
	e, err := message.Read(br)
	if e == nil {
		return message.Header{}, err
	}
	return e.Header, err
}

// clean makes untrusted header text fit for one table cell: valid UTF-8,
// no control or bidirectional-override characters (which could make a
// row read as something else), at most max runes. Escaping is left to
// html/template.
func clean(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	n := 0
	for _, r := range s {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			r = ' '
		case unicode.IsControl(r), unicode.Is(unicode.Bidi_Control, r), r == '\u200b', r == '\ufeff':
			continue
		}
		if n == max {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}

// filter is the list's query.
// noSCLFilter is filter.minSCL when no SCL was asked for.
const noSCLFilter = -2

type filter struct {
	SCL     string // minimum SCL, "" for any
	From    string
	To      string
	Subject string
	Since   string // YYYY-MM-DD, inclusive
	Until   string // YYYY-MM-DD, inclusive

	minSCL       int
	since, until time.Time
}

const dateLayout = "2006-01-02"

func parseFilter(q map[string][]string) (filter, []string) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return strings.TrimSpace(clean(v[0], 200))
		}
		return ""
	}
	f := filter{SCL: get("scl"), From: get("from"), To: get("to"), Subject: get("subject"), Since: get("since"), Until: get("until"), minSCL: noSCLFilter}
	var problems []string
	if f.SCL != "" {
		n, err := strconv.Atoi(f.SCL)
		if err != nil || n < -1 || n > 9 {
			// -1 as "archive list -scl" takes it: the SCL of trusted mail.
			problems = append(problems, "SCL must be a number from -1 to 9; ignored.")
			f.SCL = ""
		} else {
			f.minSCL = n
		}
	}
	if f.Since != "" {
		t, err := time.Parse(dateLayout, f.Since)
		if err != nil {
			problems = append(problems, "“Since” must be a date like 2026-11-23; ignored.")
			f.Since = ""
		}
		f.since = t
	}
	if f.Until != "" {
		t, err := time.Parse(dateLayout, f.Until)
		if err != nil {
			problems = append(problems, "“Until” must be a date like 2026-11-23; ignored.")
			f.Until = ""
		} else {
			f.until = t.AddDate(0, 0, 1)
		}
	}
	return f, problems
}

// matchEnvelope applies the filters that need only the archive head.
func (f *filter) matchEnvelope(it archive.Item) bool {
	if f.minSCL != noSCLFilter && (!it.HasSCL || it.SCL < f.minSCL) {
		return false
	}
	if !f.since.IsZero() && it.Received.Before(f.since) {
		return false
	}
	if !f.until.IsZero() && !it.Received.Before(f.until) {
		return false
	}
	if !it.Envelope.SenderMatches(f.From) {
		return false
	}
	if f.To != "" {
		found := false
		for _, to := range it.Envelope.To {
			if archive.ContainsFold(to, f.To) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

type row struct {
	ID       string
	Received time.Time
	SCL      string
	SCLClass string
	From     string
	To       []string
	Subject  string
	Size     int64
}

type listData struct {
	page
	Filter   filter
	Problems []string
	Skipped  int
	Done     string
	DoneID   string
	Rows     []row
	Total    int // matching messages
	All      int // messages in the archive
	Chart    chart
	// Paging: Page of Pages (from 1, the newest), rows First to Last of
	// Total (from 1; 0 when none), links to the pages either side ("" at
	// the ends), and to the first and last pages.
	Page, Pages          int
	First, Last          int
	NewerURL, OlderURL   string
	NewestURL, OldestURL string // the first and the last page
	// Self is this page's query (listQuery), which the message links
	// carry so that the view and its actions lead back here.
	Self string
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	f, problems := parseFilter(q)
	items, err := s.store.List()
	s.headers.keep(items)
	skipped := 0
	var se *archive.SkippedError
	switch {
	case errors.As(err, &se):
		skipped = len(se.Errs)
		// Said when it changes, not at every page load: the page shows
		// the count, and purge removes such files in time.
		s.mu.Lock()
		changed := err.Error() != s.lastSkipped
		s.lastSkipped = err.Error()
		s.mu.Unlock()
		if changed {
			s.log.Warn("archive web: unreadable files in the archive", slog.Int("count", skipped), slog.Any("err", err))
		}
	case err != nil:
		s.log.Error("archive web: list", slog.Any("err", err))
		s.renderError(w, sess, http.StatusInternalServerError, "Cannot read the archive directory.")
		return
	default:
		s.mu.Lock()
		s.lastSkipped = "" // all readable: the next unreadable file is news
		s.mu.Unlock()
	}
	d := listData{
		page:     page{Title: "Archive", User: sess.user, CSRF: sess.csrf},
		Filter:   f,
		Problems: problems,
		Skipped:  skipped,
		All:      len(items),
	}
	if done := q.Get("done"); done == "released" || done == "deleted" {
		d.Done = done
		if id := q.Get("id"); hmac.Equal([]byte(q.Get("sig")), []byte(doneSig(done, id, sess))) {
			d.DoneID = clean(id, 255)
		}
	}
	var matched []archive.Item
	for _, it := range items {
		if !f.matchEnvelope(it) {
			continue
		}
		// The subject is in the message's header: read only when it is
		// asked for (and cached), else only for the rows shown.
		if f.Subject != "" && !archive.ContainsFold(s.headerOf(it).Subject, f.Subject) {
			continue
		}
		matched = append(matched, it)
	}
	d.Total = len(matched)
	d.Chart = buildChart(matched, s.now())

	// Pages count from the newest message, PageSize rows each.
	size := s.PageSize
	if size <= 0 {
		size = MaxRows
	}
	d.Pages = max(1, (d.Total+size-1)/size)
	n, ok := parsePage(q.Get("page"))
	switch {
	case !ok:
		d.Problems = append(d.Problems, "Page must be a number from 1; showing the first.")
		d.Page = 1
	case n > d.Pages:
		// Back from a release or delete that emptied the last page,
		// or with nothing matching, the last page is simply where
		// one is; asked for by hand, it is worth a word.
		if d.Done == "" && d.Total > 0 {
			d.Problems = append(d.Problems, fmt.Sprintf("Page %s is past the end (%d page(s)); showing the last.", clean(strings.TrimSpace(q.Get("page")), 30), d.Pages))
		}
		d.Page = d.Pages
	default:
		d.Page = n
	}
	start := (d.Page - 1) * size
	end := min(start+size, d.Total)
	for _, it := range matched[start:end] {
		d.Rows = append(d.Rows, makeRow(it, s.headerOf(it)))
	}
	if d.Total > 0 {
		d.First, d.Last = start+1, end
	}
	d.Self = f.listQuery(d.Page)
	if d.Page > 1 {
		d.NewerURL, d.NewestURL = f.pageURL(d.Page-1), f.pageURL(1)
	}
	if d.Page < d.Pages {
		d.OlderURL, d.OldestURL = f.pageURL(d.Page+1), f.pageURL(d.Pages)
	}
	s.render(w, http.StatusOK, "list.html", d)
}

// listQuery is the list's query string (without "?") for the filters f
// and page n: "" for the first page of everything.
func (f *filter) listQuery(n int) string {
	v := url.Values{}
	for _, kv := range [][2]string{{"scl", f.SCL}, {"from", f.From}, {"to", f.To}, {"subject", f.Subject}, {"since", f.Since}, {"until", f.Until}} {
		if kv[1] != "" {
			v.Set(kv[0], kv[1])
		}
	}
	if n > 1 {
		v.Set("page", strconv.Itoa(n))
	}
	return v.Encode()
}

// pageURL is the list with the filters f and page n.
func (f *filter) pageURL(n int) string {
	return listURL(f.listQuery(n))
}

// listURL is the list page for a query string from listQuery.
func listURL(query string) string {
	if query == "" {
		return "/"
	}
	return "/?" + query
}

// parsePage reads the list's page number: 1 when there is none, n when
// it is a number from 1, and ok false when it is not (a number too large
// for an int is taken as past the end, as a large one is).
func parsePage(v string) (n int, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 1, true
	}
	n, err := strconv.Atoi(v)
	if errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(v, "-") {
		return math.MaxInt, true
	}
	if err != nil || n < 1 {
		return 1, false
	}
	return n, true
}

// keepPlace turns the list query a message view was opened from (its
// "list" parameter, which the view's forms send back) into a query
// string of the list's own making: the filters that parse and the page,
// and nothing else, so that the way back can only lead to the list.
func keepPlace(list string) string {
	q, err := url.ParseQuery(list)
	if err != nil {
		return ""
	}
	f, _ := parseFilter(q)
	n, _ := parsePage(q.Get("page"))
	return f.listQuery(min(n, maxPage))
}

// maxPage bounds a page number carried in links (more than any archive
// has at 500 a page).
const maxPage = 1 << 30

func sclText(it archive.Item) (string, string) {
	if !it.HasSCL {
		return "–", "scl-none"
	}
	return strconv.Itoa(it.SCL), "scl" + strconv.Itoa(it.SCL)
}

func makeRow(it archive.Item, h headerInfo) row {
	scl, class := sclText(it)
	to := make([]string, 0, len(it.Envelope.To))
	for i, a := range it.Envelope.To {
		if i == 3 {
			to = append(to, fmt.Sprintf("+%d more", len(it.Envelope.To)-3))
			break
		}
		to = append(to, clean(a, 120))
	}
	from := clean(it.Envelope.From, 120)
	if from == "" {
		from = "<>"
	}
	return row{ID: it.ID, Received: it.Received, SCL: scl, SCLClass: class, From: from, To: to, Subject: h.Subject, Size: it.Size}
}

func fmtSize(v any) string {
	var n int64
	switch v := v.(type) {
	case int:
		n = int64(v)
	case int64:
		n = v
	}
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// ---- message view ----

type header struct{ Name, Value string }

type viewData struct {
	page
	ID         string
	Received   time.Time
	SCL        string
	SCLClass   string
	From       string
	To         []string
	Size       int64
	Headers    []header
	Report     string // an X-SCL-Report in the message: not ours (archived mail is not stamped), shown as foreign
	Archived   string // the gateway's explanation at archiving, from the archive head
	Explain    string // the scorer's explanation now
	ExplainErr string
	Defects    []string
	Parts      []scorer.Part
	Text       string
	Truncated  bool
	Partial    bool // the message was longer than the view reads
	// MaybeReleased is the note of an earlier release that may have
	// delivered the message (its unanswered mark): Release here is
	// refused until it is settled on the command line.
	MaybeReleased string
	// List is the list query the view was opened from (keepPlace), and
	// Back that list page: the actions and the link lead back there.
	List, Back string
}

func (s *Server) view(w http.ResponseWriter, r *http.Request, sess *session) {
	id := r.PathValue("id")
	if err := archive.ValidateID(id); err != nil {
		s.renderError(w, sess, http.StatusBadRequest, "Invalid message ID.")
		return
	}
	it, rc, err := s.store.Open(id)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.renderError(w, sess, http.StatusNotFound, "No such message (released or deleted meanwhile?).")
			return
		}
		s.log.Warn("archive web: open", slog.String("archive_id", id), slog.Any("err", err))
		s.renderError(w, sess, http.StatusNotFound, "Cannot read this message.")
		return
	}
	raw, err := io.ReadAll(io.LimitReader(rc, maxViewRead+1))
	rc.Close()
	if err != nil {
		s.renderError(w, sess, http.StatusInternalServerError, "Cannot read this message.")
		return
	}
	d := viewData{
		page:     page{Title: "Message", User: sess.user, CSRF: sess.csrf},
		List:     keepPlace(r.URL.Query().Get("list")),
		ID:       id,
		Received: it.Received,
		From:     clean(it.Envelope.From, 300),
		Size:     it.Size,
		Archived: clean(it.Report, 5000), // at most 4 KiB in the file
	}
	d.Back = listURL(d.List)
	d.SCL, d.SCLClass = sclText(it)
	if note, ok := s.store.Unanswered(id); ok {
		d.MaybeReleased = clean(note, 2000)
	}
	if d.From == "" {
		d.From = "<>"
	}
	for _, a := range it.Envelope.To {
		d.To = append(d.To, clean(a, 300))
	}
	if len(raw) > maxViewRead {
		raw, d.Partial = raw[:maxViewRead], true
	}
	m := scorer.Parse(raw)
	mh := mail.Header{Header: m.Header}
	for _, name := range []string{"From", "To", "Cc", "Reply-To", "Date", "Subject", "Message-Id"} {
		v := m.Header.Get(name)
		if name == "Subject" {
			v = m.Subject
		} else if t, err := mh.Text(name); err == nil && name != "Date" && name != "Message-Id" {
			v = t
		}
		if v != "" {
			d.Headers = append(d.Headers, header{name, clean(v, 1000)})
		}
	}
	d.Report = clean(m.Header.Get("X-SCL-Report"), 4000)
	if s.Explain != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		rep, err := s.Explain(ctx, m)
		cancel()
		if err != nil {
			d.ExplainErr = err.Error()
		}
		d.Explain = clean(rep, 4000)
	}
	for i, def := range m.Defects {
		if i == 20 {
			d.Defects = append(d.Defects, fmt.Sprintf("… and %d more", len(m.Defects)-20))
			break
		}
		d.Defects = append(d.Defects, clean(def, 300))
	}
	for i, p := range m.Parts {
		if i == 50 {
			break
		}
		p.ContentType, p.Filename = clean(p.ContentType, 100), clean(p.Filename, 200)
		d.Parts = append(d.Parts, p)
	}
	text := m.Text
	if len(text) > MaxViewText {
		cut := MaxViewText
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text, d.Truncated = text[:cut], true
	}
	d.Text = cleanText(text)
	s.render(w, http.StatusOK, "view.html", d)
}

// cleanText keeps line breaks and tabs but drops other control and
// bidi-override characters from the body text shown in <pre>.
func cleanText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case r == '\r':
			return -1
		case unicode.IsControl(r), unicode.Is(unicode.Bidi_Control, r):
			return -1
		}
		return r
	}, s)
}

// ---- chart ----

// chart is a stacked bar chart, rendered as inline SVG: one bar per day
// over the last chartDays days, each split by SCL.
type chart struct {
	Width, Height int
	Bars          []bar
	Labels        []label
	YTicks        []label
	Legend        []legendEntry
	Totals        []legendEntry
	Max           int
	Empty         bool
}

type bar struct {
	X, Y, W, H int
	Fill       string
	Title      string
}

type label struct {
	X, Y int
	Text string
}

type legendEntry struct {
	Name  string
	Fill  string
	Count int
	X     int
}

const chartDays = 30

// sclColors runs from green (likely ham) through yellow to red (spam);
// index 10 is for files without an X-SCL line.
var sclColors = [11]string{
	"#1a9850", "#66bd63", "#a6d96a", "#d9ef8b", "#ffffbf",
	"#fee08b", "#fdae61", "#f46d43", "#d73027", "#a50026", "#999999",
}

func sclName(i int) string {
	if i == 10 {
		return "no SCL"
	}
	return "SCL " + strconv.Itoa(i)
}

func buildChart(items []archive.Item, now time.Time) chart {
	const (
		left, top, bottom = 40, 10, 40
		barW, gap         = 22, 4
	)
	c := chart{Width: left + chartDays*(barW+gap) + 10, Height: 240}
	plotH := c.Height - top - bottom
	end := now.UTC().Truncate(24 * time.Hour) // start of today
	start := end.AddDate(0, 0, -(chartDays - 1))
	var counts [chartDays][11]int
	var totals [11]int
	for _, it := range items {
		k := 10
		if it.HasSCL {
			k = min(max(it.SCL, 0), 9)
		}
		totals[k]++
		day := int(it.Received.UTC().Sub(start) / (24 * time.Hour))
		if it.Received.Before(start) || day >= chartDays {
			continue
		}
		counts[day][k]++
	}
	for d := range counts {
		sum := 0
		for _, n := range counts[d] {
			sum += n
		}
		c.Max = max(c.Max, sum)
	}
	c.Empty = c.Max == 0
	scale := func(n int) int { return (n*plotH + c.Max - 1) / max(c.Max, 1) }
	for d := range counts {
		x := left + d*(barW+gap)
		day := start.AddDate(0, 0, d)
		cum := 0
		for k, n := range counts[d] {
			if n == 0 {
				continue
			}
			y0 := top + plotH - scale(cum+n)
			y1 := top + plotH - scale(cum)
			cum += n
			c.Bars = append(c.Bars, bar{X: x, Y: y0, W: barW, H: max(y1-y0, 1), Fill: sclColors[k],
				Title: fmt.Sprintf("%s: %d × %s", day.Format(dateLayout), n, sclName(k))})
		}
		if d%5 == 0 || d == chartDays-1 {
			c.Labels = append(c.Labels, label{X: x + barW/2, Y: c.Height - bottom + 16, Text: day.Format("01-02")})
		}
	}
	if c.Max > 0 {
		for _, v := range []int{0, c.Max / 2, c.Max} {
			c.YTicks = append(c.YTicks, label{X: left - 6, Y: top + plotH - scale(v) + 4, Text: strconv.Itoa(v)})
		}
	}
	for k := range 11 {
		e := legendEntry{Name: sclName(k), Fill: sclColors[k], Count: totals[k]}
		c.Totals = append(c.Totals, e)
		if k < 10 || totals[10] > 0 {
			e.X = left + k*62
			c.Legend = append(c.Legend, e)
		}
	}
	return c
}
