package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/sclgate/sclgate/archive"
	"github.com/sclgate/sclgate/config"
	"github.com/sclgate/sclgate/proxy"
	"github.com/sclgate/sclgate/scorer"
	"github.com/sclgate/sclgate/weights"
)

const archiveUsage = `usage: sclgate archive COMMAND [-config FILE | -dir DIR] ...

Commands:
  list    [-json] [-since 30d|2006-01-02] [-scl N] [-from S] [-to R] [-subject TEXT]
                           archived messages, newest first
  show    ID...            envelope, headers, explanation and decoded text
  raw     ID               the message exactly as archived
  release ID... [-to ADDR] [-downstream URL] [-force]
                           resubmit downstream stamped X-SCL: -1, then move
                           the file to released/
  delete  ID...            remove messages
  purge   [-older-than 30d] [-dry-run]
                           remove messages received before then
                           (default: archive.retention)

-config FILE is the file serve uses (archive.dir, downstream, filter);
default: the embedded defaults. -dir DIR names the archive directory
instead of archive.dir.
`

// releasedDir is the subdirectory released messages are moved to.
const releasedDir = archive.ReleasedDir

// cmdArchive implements "sclgate archive": the archive manager.
func cmdArchive(e env, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, archiveUsage)
		return 2
	}
	switch args[0] {
	case "list":
		return archiveList(e, args[1:])
	case "show":
		return archiveShow(e, args[1:])
	case "raw":
		return archiveRaw(e, args[1:])
	case "release":
		return archiveRelease(e, args[1:])
	case "delete":
		return archiveDelete(e, args[1:])
	case "purge":
		return archivePurge(e, args[1:])
	case "help", "-h", "-help", "--help":
		fmt.Fprint(e.stdout, archiveUsage)
		return 0
	}
	fmt.Fprintf(e.stderr, "sclgate archive: unknown command %q\n\n%s", args[0], archiveUsage)
	return 2
}

// archiveCmd is what every archive subcommand shares: its flags, the
// configuration and the store.
type archiveCmd struct {
	e          env
	name       string
	fs         *flag.FlagSet
	configFile *string
	dir        *string
	cfg        *config.Config
	store      *archive.Store
}

func newArchiveCmd(e env, name, usage string) *archiveCmd {
	c := &archiveCmd{e: e, name: name, fs: flag.NewFlagSet("archive "+name, flag.ContinueOnError)}
	c.fs.SetOutput(e.stderr)
	c.configFile = c.fs.String("config", "", "configuration `FILE` (default: the embedded defaults)")
	c.dir = c.fs.String("dir", "", "archive `DIR` (default: archive.dir of the configuration)")
	c.fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: sclgate archive "+name+" "+usage)
		c.fs.PrintDefaults()
	}
	return c
}

// ids are the message IDs given, a file name's ".eml" taken off: an ID
// copied from ls works too. An ID that itself ends in ".eml" (an IMF file
// named x.eml.eml is listed as x.eml) is taken as it is when only it names
// a file (parse refuses it when both do).
func (c *archiveCmd) ids() []string {
	var ids []string
	for _, a := range c.fs.Args() {
		id := strings.TrimSuffix(a, ".eml")
		if id != a && !c.stored(id) && c.stored(a) {
			id = a
		}
		ids = append(ids, id)
	}
	return ids
}

// stored reports whether the archive, or its released/ folder, has a
// file for id.
func (c *archiveCmd) stored(id string) bool {
	if c.store == nil {
		return false
	}
	for _, p := range []string{c.store.File(id), c.store.ReleasedFile(id)} {
		if _, err := os.Lstat(p); err == nil {
			return true
		}
	}
	return false
}

// parse parses args leniently (flags may follow the IDs), loads the
// configuration and opens the store. It returns the exit code to end with,
// or -1 to go on.
func (c *archiveCmd) parse(args []string) int {
	if err := c.fs.Parse(reorderFlags(c.fs, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := config.Load(*c.configFile)
	if err != nil {
		fmt.Fprintln(c.e.stderr, err)
		return 2
	}
	c.cfg = cfg
	dir := cfg.Archive.Dir
	if *c.dir != "" {
		dir = *c.dir
	}
	if dir == "" {
		c.errorf("no archive directory: set archive.dir or give -dir")
		return 2
	}
	// Looking must not create: a mistyped directory is an error, not an
	// empty archive.
	if st, err := os.Stat(dir); err != nil {
		c.errorf("%v", err)
		return 1
	} else if !st.IsDir() {
		c.errorf("%s is not a directory", dir)
		return 1
	}
	if c.store, err = archive.Open(dir, archive.Options{StoreSCL: cfg.Archive.StoreSCL}); err != nil {
		c.errorf("%v", err)
		return 1
	}
	// x.eml is the file name of the message x and the ID of the file
	// x.eml.eml: with both there, acting on either could be acting on
	// the wrong one.
	for _, a := range c.fs.Args() {
		if id := strings.TrimSuffix(a, ".eml"); id != a && c.stored(id) && c.stored(a) {
			c.errorf("%s names two messages, %s (file %s.eml) and %s (file %s.eml): give %s or %s.eml; nothing was done", a, id, id, a, a, id, a)
			return 2
		}
	}
	return -1
}

// errorf reports a problem on stderr, made printable: it may name files
// (and IDs) from the archive directory, whose names anyone could choose.
func (c *archiveCmd) errorf(format string, a ...any) {
	fmt.Fprintf(c.e.stderr, "sclgate archive %s: %s\n", c.name, printable(fmt.Sprintf(format, a...)))
}

// listEntry is one message in "archive list -json".
type listEntry struct {
	ID       string    `json:"id"`
	Received time.Time `json:"received"`
	SCL      *int      `json:"scl"` // null: the file has no X-SCL
	From     string    `json:"from"`
	To       []string  `json:"to"`
	Subject  string    `json:"subject"`
	Size     int64     `json:"size"`
}

func archiveList(e env, args []string) int {
	c := newArchiveCmd(e, "list", "[-config FILE | -dir DIR] [-json] [-since 30d|2006-01-02] [-scl N] [-from S] [-to R] [-subject TEXT]")
	asJSON := c.fs.Bool("json", false, "a JSON array")
	since := c.fs.String("since", "", "only messages received within `AGE` (30d, 36h) or since a date (2006-01-02, local time)")
	minSCL := c.fs.Int("scl", -2, "only messages with an archived SCL of at least `N` (-1 to 9; -2, the default, is no filter)")
	from := c.fs.String("from", "", "only envelope senders containing `S` (any case)")
	to := c.fs.String("to", "", "only messages with a recipient containing `R` (any case)")
	subject := c.fs.String("subject", "", "only subjects containing `TEXT` (any case, decoded)")
	if code := c.parse(args); code >= 0 {
		return code
	}
	if c.fs.NArg() > 0 {
		c.fs.Usage()
		return 2
	}
	if set := flagSet(c.fs, "scl"); set && (*minSCL < -1 || *minSCL > 9) {
		// An SCL outside -1..9 matches nothing: a typo, said as one.
		c.errorf("-scl: %d is not an SCL (-1 to 9)", *minSCL)
		return 2
	}
	var cutoff time.Time
	if *since != "" {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			c.errorf("-since: %v", err)
			return 2
		}
		cutoff = t
	}

	items, err := c.store.List()
	var skipped *archive.SkippedError
	switch {
	case errors.As(err, &skipped):
		for _, err := range skipped.Errs {
			c.errorf("skipped: %v", err)
		}
	case err != nil:
		c.errorf("%v", err)
		return 1
	}
	entries := []listEntry{}
	for _, it := range items {
		if !cutoff.IsZero() && it.Received.Before(cutoff) {
			continue
		}
		if *minSCL > -2 && (!it.HasSCL || it.SCL < *minSCL) {
			continue
		}
		if !it.Envelope.SenderMatches(*from) {
			continue
		}
		if *to != "" && !anyContainsFold(it.Envelope.To, *to) {
			continue
		}
		subj, err := readSubject(c.store, it.ID)
		if errors.Is(err, fs.ErrNotExist) {
			continue // released or deleted meanwhile
		} else if err != nil {
			c.errorf("%s: %v", it.ID, err)
		}
		if *subject != "" && !archive.ContainsFold(subj, *subject) {
			continue
		}
		le := listEntry{ID: it.ID, Received: it.Received.UTC(), From: it.Envelope.From, To: it.Envelope.To, Subject: subj, Size: it.Size}
		if it.HasSCL {
			scl := it.SCL
			le.SCL = &scl
		}
		entries = append(entries, le)
	}

	if *asJSON {
		enc := json.NewEncoder(jsonSafe{e.stdout})
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		enc.Encode(entries)
		return 0
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECEIVED\tSCL\tFROM\tTO\tSIZE\tSUBJECT")
	for _, le := range entries {
		scl := "-"
		if le.SCL != nil {
			scl = strconv.Itoa(*le.SCL)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t<%s>\t%s\t%d\t%s\n", printLine(le.ID), le.Received.Format("2006-01-02 15:04:05Z"), scl,
			cell(le.From), recipientsCell(le.To), le.Size, printLine(le.Subject))
	}
	tw.Flush()
	return 0
}

// parseSince turns "30d", "36h" or "2006-01-02" (local midnight) into the
// earliest time to show.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.ParseInLocation("2006-01-02", s, time.Local); err == nil {
		return t, nil
	}
	d, err := config.ParseDays(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an age such as 30d or 36h nor a date such as 2006-01-02", s)
	}
	if d <= 0 {
		return time.Time{}, fmt.Errorf("%q would show nothing: give an age such as 30d or 36h", s)
	}
	return now.Add(-d), nil
}

func anyContainsFold(list []string, sub string) bool {
	for _, s := range list {
		if archive.ContainsFold(s, sub) {
			return true
		}
	}
	return false
}

// maxCell bounds a column of archive list (tabwriter pads every row to
// the widest cell).
const maxCell = 100

// cell is s for one column of the list: on one line, printable, at most
// maxCell characters.
func cell(s string) string {
	s = printLine(s)
	if r := []rune(s); len(r) > maxCell {
		s = string(r[:maxCell-1]) + "…"
	}
	return s
}

// recipientsCell lists at most 3 recipients and how many more there
// are, as the web page does.
func recipientsCell(to []string) string {
	if len(to) > 3 {
		return cell(strings.Join(to[:3], ",") + fmt.Sprintf(",+%d more", len(to)-3))
	}
	return cell(strings.Join(to, ","))
}

// printLine keeps what messages and envelopes say from driving the
// terminal or breaking a line of output: see printable.
func printLine(s string) string {
	return printable(strings.NewReplacer("\r", " ", "\n", " ", "\t", " ").Replace(s))
}

// maxListHeader bounds how much of a message list reads to find its
// subject.
const maxListHeader = 256 << 10

// readSubject returns the decoded subject of an archived message, reading
// only its header.
func readSubject(store *archive.Store, id string) (string, error) {
	_, body, err := store.Open(id)
	if err != nil {
		return "", err
	}
	defer body.Close()
	hdr, err := readHeader(bufio.NewReader(io.LimitReader(body, maxListHeader)))
	if err != nil {
		return "", err
	}
	return scorer.Parse(hdr).Subject, nil
}

// readHeader reads up to and including the blank line that ends a header.
func readHeader(r *bufio.Reader) ([]byte, error) {
	var b bytes.Buffer
	for {
		line, err := r.ReadBytes('\n')
		b.Write(line)
		if len(bytes.TrimRight(line, "\r\n")) == 0 && len(line) > 0 {
			return b.Bytes(), nil
		}
		if err == io.EOF {
			return b.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// readMessage reads an archived message whole.
func readMessage(store *archive.Store, id string) (archive.Item, []byte, error) {
	it, body, err := store.Open(id)
	return readAll(it, body, err)
}

// readAll reads what an Open gave, and closes it.
func readAll(it archive.Item, body io.ReadCloser, err error) (archive.Item, []byte, error) {
	if err != nil {
		return archive.Item{}, nil, err
	}
	defer body.Close()
	raw, err := io.ReadAll(body)
	if err != nil {
		return archive.Item{}, nil, fmt.Errorf("archive: %s: %w", it.Path, err)
	}
	return it, raw, nil
}

// openShown opens an archived message for show and raw: from the archive,
// or, once released, from released/, which is where an admin looking at
// a message released a moment ago will find it.
func openShown(store *archive.Store, id string) (it archive.Item, body io.ReadCloser, released bool, err error) {
	it, body, err = store.Open(id)
	if !errors.Is(err, fs.ErrNotExist) {
		return it, body, false, err
	}
	dir := filepath.Join(store.Dir(), releasedDir)
	if _, serr := os.Stat(store.ReleasedFile(id)); serr != nil {
		return it, body, false, err
	}
	rs, rerr := archive.Open(dir, archive.Options{})
	if rerr != nil {
		return it, body, false, err
	}
	it, body, err = rs.Open(id)
	return it, body, err == nil, err
}

func archiveShow(e env, args []string) int {
	c := newArchiveCmd(e, "show", "[-config FILE | -dir DIR] ID...")
	if code := c.parse(args); code >= 0 {
		return code
	}
	if c.fs.NArg() == 0 {
		c.fs.Usage()
		return 2
	}
	s, err := c.scorer()
	if err != nil {
		c.errorf("%v", err)
		return 2
	}
	code := 0
	for i, id := range c.ids() {
		if i > 0 {
			fmt.Fprintln(e.stdout, strings.Repeat("-", 72))
		}
		it, body, released, err := openShown(c.store, id)
		it, raw, err := readAll(it, body, err)
		if err != nil {
			c.errorf("%v", err)
			code = 1
			continue
		}
		m := scorer.Parse(raw)
		w := e.stdout
		fmt.Fprintf(w, "ID:          %s\n", printLine(it.ID))
		fmt.Fprintf(w, "File:        %s\n", printLine(it.Path))
		// Where the file is: the archive, or released/ (whose store
		// keeps the marks and records of releases from there).
		at := c.store
		if released {
			fmt.Fprintf(w, "Released:    yes (the file is in %s/)\n", releasedDir)
			if rs, err := archive.Open(filepath.Join(c.store.Dir(), releasedDir), archive.Options{}); err == nil {
				at = rs
			}
		}
		if note, ok := at.Unanswered(it.ID); ok {
			fmt.Fprintf(w, "Released:    maybe: a release %s (release -force sends it again; with -to, only to those who did not get it)\n", printLine(note))
		}
		for _, r := range at.Released(it.ID) {
			fmt.Fprintf(w, "Released to: %s\n", printLine(r))
		}
		fmt.Fprintf(w, "Received:    %s\n", it.Received.UTC().Format(time.RFC3339))
		fmt.Fprintf(w, "Sender:      <%s>\n", printLine(it.Envelope.From))
		for _, to := range it.Envelope.To {
			fmt.Fprintf(w, "Recipient:   <%s>\n", printLine(to))
		}
		if it.HasSCL {
			fmt.Fprintf(w, "SCL:         %d (archived)\n", it.SCL)
		} else {
			fmt.Fprintf(w, "SCL:         none in the file (archived with archive.store_scl off, or by IMF with ArchiveSCL off)\n")
		}
		fmt.Fprintf(w, "Size:        %d bytes\n", it.Size)
		fmt.Fprintf(w, "Subject:     %s\n", printLine(m.Subject))
		now := "X-SCL-Report (computed now with the current configuration; none was stored at archiving):"
		if it.Report != "" {
			fmt.Fprintf(w, "X-SCL-Report (at archiving):\n  %s\n", printLine(it.Report))
			now = "X-SCL-Report (computed now with the current configuration):"
		}
		r, err := s.Score(context.Background(), m)
		if err != nil {
			fmt.Fprintf(w, "X-SCL-Report (now): not available: %v\n", err)
		} else {
			fmt.Fprintf(w, "%s\n  %s\n", now, printLine(r.Report(0)))
			if fs := s.Explain(m, r, showFeatures); len(fs) > 0 {
				fmt.Fprintf(w, "Features that weighed most (log-odds; positive is spam):\n")
				writeFeatures(w, fs)
			}
		}
		for _, d := range m.Defects {
			fmt.Fprintf(w, "Defect:      %s\n", printLine(d))
		}
		hdr, _ := readHeader(bufio.NewReader(bytes.NewReader(raw)))
		fmt.Fprintf(w, "\nHeader:\n%s", printableText(strings.TrimRight(string(hdr), "\r\n")))
		fmt.Fprintf(w, "\n\nText:\n%s\n", printableText(strings.TrimRight(m.Text, "\r\n")))
	}
	return code
}

// showFeatures is how many of the built-in model's features archive show
// and the web page list.
const showFeatures = 10

// printableText is printable for multi-line text.
func printableText(s string) string {
	return printable(strings.ReplaceAll(s, "\r\n", "\n"))
}

// scorer builds the scorer show explains with: the configured classifier
// (with the installed definitions when there are any) and weight list.
func (c *archiveCmd) scorer() (*scorer.Scorer, error) {
	var d *definitions
	var err error
	if st, serr := os.Stat(c.cfg.Definitions.Dir); c.cfg.Definitions.Dir != "" && serr == nil && st.IsDir() {
		d, err = loadDefinitions(c.cfg)
		if d == nil {
			return nil, err
		}
		if err != nil {
			c.errorf("%v", err)
		}
	} else if d, err = builtinDefinitions(nil); err != nil {
		return nil, err
	}
	cl, defsVersion, err := classifier(c.cfg, d, func(name string, err error) {
		if c.cfg.Filter.ClassifierFailure == config.FailureTempfail {
			c.errorf("%s failed (classifier_failure: tempfail, so no report): %v", name, err)
			return
		}
		c.errorf("%s failed, scored by the built-in model: %v", name, err)
	})
	if err != nil {
		return nil, err
	}
	var list *weights.List
	if wf := c.cfg.Filter.WeightsFile; wf != "" {
		list, err = weights.Load(wf)
		if errors.Is(err, fs.ErrNotExist) {
			// As serve does: no custom weights until the file appears.
			c.errorf("warning: filter.weights_file %s does not exist: the report is made without custom weights", wf)
		} else if err != nil {
			return nil, err
		}
	}
	return &scorer.Scorer{Classifier: cl, Weights: func() *weights.List { return list }, Definitions: defsVersion}, nil
}

func archiveRaw(e env, args []string) int {
	c := newArchiveCmd(e, "raw", "[-config FILE | -dir DIR] ID")
	if code := c.parse(args); code >= 0 {
		return code
	}
	if c.fs.NArg() != 1 {
		c.fs.Usage()
		return 2
	}
	_, body, _, err := openShown(c.store, c.ids()[0])
	if err != nil {
		c.errorf("%v", err)
		return 1
	}
	defer body.Close()
	if _, err := io.Copy(e.stdout, body); err != nil {
		c.errorf("%v", err)
		return 1
	}
	return 0
}

func archiveDelete(e env, args []string) int {
	c := newArchiveCmd(e, "delete", "[-config FILE | -dir DIR] ID...")
	if code := c.parse(args); code >= 0 {
		return code
	}
	if c.fs.NArg() == 0 {
		c.fs.Usage()
		return 2
	}
	code := 0
	for _, id := range c.ids() {
		if err := c.store.Delete(id); err != nil {
			if _, serr := os.Stat(c.store.ReleasedFile(id)); errors.Is(err, fs.ErrNotExist) && serr == nil {
				err = fmt.Errorf("%s: %w; nothing deleted", id, errAlreadyReleased{})
			}
			c.errorf("%v", err)
			code = 1
			continue
		}
		fmt.Fprintf(e.stdout, "deleted %s\n", id)
	}
	return code
}

func archivePurge(e env, args []string) int {
	c := newArchiveCmd(e, "purge", "[-config FILE | -dir DIR] [-released] [-older-than 30d] [-dry-run]")
	olderThan := c.fs.String("older-than", "", "remove messages received more than `AGE` ago (30d, 36h; default: archive.retention, or archive.released_retention with -released)")
	dryRun := c.fs.Bool("dry-run", false, "only list what would be removed")
	released := c.fs.Bool("released", false, "purge released/ (messages delivered on release) instead of the archive")
	if code := c.parse(args); code >= 0 {
		return code
	}
	if c.fs.NArg() > 0 {
		c.fs.Usage()
		return 2
	}
	age := time.Duration(c.cfg.Archive.Retention)
	store := c.store
	if *released {
		age = time.Duration(c.cfg.Archive.ReleasedRetention)
		dir := filepath.Join(c.store.Dir(), releasedDir)
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(e.stdout, "nothing released yet: %s does not exist\n", printLine(dir))
			return 0
		}
		rs, err := archive.Open(dir, archive.Options{})
		if err != nil {
			c.errorf("%v", err)
			return 1
		}
		store = rs
	}
	if *olderThan != "" {
		d, err := config.ParseDays(*olderThan)
		if err != nil {
			c.errorf("-older-than: %v", err)
			return 2
		}
		if d <= 0 {
			c.errorf("-older-than %s would remove every message; give an age such as 30d (archive delete removes messages one by one)", *olderThan)
			return 2
		}
		age = d
	}
	if age <= 0 {
		setting := "archive.retention"
		if *released {
			setting = "archive.released_retention"
		}
		c.errorf("give -older-than AGE (such as 30d), or set %s for purge to use", setting)
		return 2
	}
	removed, err := purgeArchive(store, age, *dryRun, time.Now())
	verb := "deleted"
	if *dryRun {
		verb = "would delete"
	}
	for _, it := range removed {
		fmt.Fprintf(e.stdout, "%s %s (received %s)\n", verb, printLine(it.ID), it.Received.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(e.stdout, "%s %d message(s) received before %s\n", verb, len(removed), time.Now().Add(-age).UTC().Format(time.RFC3339))
	if err != nil {
		c.errorf("%v", err)
		return 1
	}
	return 0
}

// stringList is a flag that may be repeated, each value also split at
// commas.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		// An empty piece is refused: -to "$UNSET" must not fall back to
		// the original recipients, the very ones a release to the
		// postmaster is meant to spare.
		if s = strings.Trim(strings.TrimSpace(s), "<>"); s == "" {
			return fmt.Errorf("%q holds an empty address", v)
		}
		*l = append(*l, s)
	}
	return nil
}

func archiveRelease(e env, args []string) int {
	c := newArchiveCmd(e, "release", "[-config FILE | -dir DIR] [-to ADDR] [-from ADDR] [-downstream URL] [-force] ID...")
	var to stringList
	c.fs.Var(&to, "to", "deliver to `ADDR` instead of the original recipients (repeatable, or comma-separated)")
	fromFlag := c.fs.String("from", "", "send with the envelope sender `ADDR` instead of the file's (<> for the null sender)")
	dsURL := c.fs.String("downstream", "", "deliver to `URL` (smtp://host:port, lmtp://..., maildir:DIR) instead of the configured downstream")
	force := c.fs.Bool("force", false, "release even if an earlier release of it got no answer after sending it (it may have been delivered)")
	if code := c.parse(args); code >= 0 {
		return code
	}
	if c.fs.NArg() == 0 {
		c.fs.Usage()
		return 2
	}
	if filepath.Base(c.store.Dir()) == releasedDir && filepath.Clean(c.cfg.Archive.Dir) != c.store.Dir() {
		// Released from there, a message would move on to
		// released/released/, and no mark would stop a second copy.
		c.errorf("%s is an archive's %s/ folder: give the archive itself (-dir %s); release -force sends a released message again; nothing was released",
			c.store.Dir(), releasedDir, filepath.Dir(c.store.Dir()))
		return 2
	}
	set := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["dir"] && !set["config"] && !set["downstream"] {
		// The embedded defaults' downstream is a maildir under this
		// directory: right next to their archive, wrong for an archive
		// named by -dir, whose release would land there unread.
		c.errorf("-dir without -config: say where to deliver, with -config FILE (the gateway's) or -downstream URL; nothing was released")
		return 2
	}
	var from *string
	if set["from"] {
		f := strings.TrimSpace(*fromFlag)
		if f == "<>" {
			f = ""
		} else if f = strings.Trim(f, "<>"); !releasable(f) {
			c.errorf("-from: %q is not an address (<> for the null sender)", *fromFlag)
			return 2
		}
		from = &f
	}
	if *dsURL != "" {
		c.cfg.Downstream = *dsURL
	}
	ds, err := config.ParseDownstream(c.cfg.Downstream)
	if err != nil {
		c.errorf("downstream: %v", err)
		return 2
	}
	for _, a := range to {
		if !releasable(a) {
			c.errorf("-to: %q is not an address", a)
			return 2
		}
	}
	// The downstream's log says only what the release's own errors do
	// not: a may-mode STARTTLS given up for plaintext.
	do, err := downstreamOptions(c.cfg, 0, warnLog(c.e.stderr), nil)
	if err != nil {
		c.errorf("%v", err)
		return 2
	}
	down := proxy.NewDownstream(ds, do)
	// Ctrl-C or a TERM stops the release through its error paths, which
	// leave the right mark (none when nothing was sent), rather than
	// killing it wherever it is.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := 0
	for _, id := range c.ids() {
		if ctx.Err() != nil {
			c.errorf("%s: not released: interrupted", id)
			code = 1
			continue
		}
		// A message in released/ already is sent again from there (with
		// -force), and stays there.
		_, inArchive := os.Lstat(c.store.File(id))
		_, inReleased := os.Lstat(c.store.ReleasedFile(id))
		again := inArchive != nil && inReleased == nil
		warn := func(msg string) { c.errorf("warning: %s", msg) }
		rcpts, reply, err := releaseOne(ctx, c.store, c.cfg, down, id, to, from, *force, time.Now(), releaseAdvice{warn: warn})
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("interrupted: %w", err)
			}
			c.errorf("%s: %v", id, err)
			code = 1
			continue
		}
		if again {
			fmt.Fprintf(e.stdout, "released %s again to %s via %s (%s); it stays in %s/\n", id, printLine(strings.Join(rcpts, ",")), c.cfg.Downstream, printLine(reply), releasedDir)
			continue
		}
		fmt.Fprintf(e.stdout, "released %s to %s via %s (%s); moved to %s/\n", id, printLine(strings.Join(rcpts, ",")), c.cfg.Downstream, printLine(reply), releasedDir)
	}
	return code
}

// releaseAdvice says how to send a message again by hand. On the command
// line the admin is where they ran the release, with the options they
// gave (zero advice). The web page cannot force: there it names the
// command to run on the gateway, in serve's working directory (which
// relative paths in the configuration, such as a maildir downstream, are
// taken from) with serve's -config, every part quoted for a shell: the
// recipients and the ID come from the message's sender.
type releaseAdvice struct {
	web        bool
	wd, config string // serve's working directory and -config
	dir        string // the archive the page shows (archive.dir at serve's start)
	// warn, if set, is told what went wrong without stopping the
	// release (the release record could not be written).
	warn func(msg string)
}

// command is the advice to release id with -force and, when to is not
// empty, only to those recipients; it follows "with".
func (a releaseAdvice) command(id string, to []string) string {
	flags := "-force"
	if len(to) > 0 {
		flags += " -to " + shellQuote(strings.Join(to, ","))
	}
	if !a.web {
		note := " and the other options you gave this time"
		if len(to) > 0 {
			note += " (this -to in place of any you gave)"
		}
		return "\"sclgate archive release " + flags + "\"" + note
	}
	cmd := "sclgate archive release"
	if a.wd != "" {
		cmd = "cd " + shellQuote(a.wd) + " && " + cmd
	}
	if a.config != "" {
		cmd += " -config " + shellQuote(a.config)
	}
	if a.dir != "" {
		// A reload may have changed archive.dir; the page still shows
		// the one serve started with.
		cmd += " -dir " + shellQuote(a.dir)
	}
	// The file's name, not the bare ID: the command line takes one
	// ".eml" off, and an IMF ID may end in ".eml" itself.
	return "this command on the gateway: \"" + cmd + " " + flags + " -- " + shellQuote(id+".eml") + "\""
}

// shellQuote quotes s for a POSIX shell, always.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// errMaybeDelivered: an earlier release may have delivered the message
// (its unanswered mark), so this one, not forced, sends nothing.
type errMaybeDelivered struct {
	note, id string
	advice   releaseAdvice
}

func (e *errMaybeDelivered) Error() string {
	return fmt.Sprintf("not released: an earlier release (%s) may have delivered it; "+
		"look for it in the mailbox (its X-SCL-Released field names that time), then send it anyway with %s "+
		"(with -to ADDR,... only to those who did not get it), or delete it", e.note, e.advice.command(e.id, nil))
}

// HTTPStatus is the web page's answer: a conflict with the archive's
// state, not a downstream failure.
func (e *errMaybeDelivered) HTTPStatus() int { return http.StatusConflict }

// errAlreadyReleased: the message is in released/ already. It is gone
// from the archive (fs.ErrNotExist: the web page answers 404).
type errAlreadyReleased struct{}

func (errAlreadyReleased) Error() string        { return "already released (it is in " + releasedDir + "/)" }
func (errAlreadyReleased) Is(target error) bool { return target == fs.ErrNotExist }

// releaseOne delivers one archived message downstream and, once the
// downstream has taken it, moves its file to released/. When delivery
// fails, the file stays where it was.
//
// A release that sent the whole message and got no answer may have been
// delivered: the file stays, marked, and the next release of it is
// refused unless force is set, so that a timeout does not turn into a
// second copy in the mailbox each time the admin tries again.
//
// A message in released/ already is sent again with force (a help desk
// sending one of its recipients a copy after a release to another, with
// -to), and stays there; without force that is refused.
func releaseOne(ctx context.Context, store *archive.Store, cfg *config.Config, down proxy.Downstream, id string, to []string, from *string, force bool, now time.Time, advice releaseAdvice) (rcpts []string, reply string, err error) {
	return releaseFrom(ctx, store, cfg, down, id, to, from, force, now, advice, false)
}

// releaseFrom is releaseOne; again says that store is released/ and the
// message is sent again from there, not moved. from, when not nil, is the
// envelope sender in place of the file's ("" for the null sender).
func releaseFrom(ctx context.Context, store *archive.Store, cfg *config.Config, down proxy.Downstream, id string, to []string, from *string, force bool, now time.Time, advice releaseAdvice, again bool) (rcpts []string, reply string, err error) {
	// Held from before reading until the file is in released/: a second
	// release of the same message fails instead of delivering it again.
	released := store.ReleasedFile(id)
	unlock, err := store.Lock(id)
	if errors.Is(err, fs.ErrNotExist) && !again {
		if _, serr := os.Lstat(released); serr == nil {
			if advice.web {
				return nil, "", errAlreadyReleased{}
			}
			if !force {
				return nil, "", fmt.Errorf("%w; release -force sends it again (to -to ADDR, or to all its recipients)", errAlreadyReleased{})
			}
			rs, err := archive.Open(filepath.Join(store.Dir(), releasedDir), archive.Options{})
			if err != nil {
				return nil, "", err
			}
			return releaseFrom(ctx, rs, cfg, down, id, to, from, force, now, advice, true)
		}
	}
	if err != nil {
		return nil, "", err
	}
	defer unlock()
	where := "the archive"
	if again {
		where = releasedDir + "/"
	}
	if !again {
		// IMF's file names are not unique: settle that the move will
		// work before anything is delivered.
		if _, err := os.Lstat(released); err == nil {
			return nil, "", fmt.Errorf("not released, the file stays in the archive: %s/%s.eml already exists (rename or remove one of them first)", releasedDir, id)
		}
		if err := store.CheckMove(releasedDir); err != nil {
			return nil, "", fmt.Errorf("not released (nothing was delivered), the file stays in the archive: %w", err)
		}
	}
	if note, ok := store.Unanswered(id); ok && !force {
		return nil, "", &errMaybeDelivered{note: printLine(note), id: id, advice: advice}
	}
	it, raw, err := readMessage(store, id)
	if err != nil {
		return nil, "", err
	}
	rcpts = it.Envelope.To
	if len(to) > 0 {
		rcpts = to
	}
	// A file sclgate did not write (IMF's, or copied in) may hold
	// anything in its head; what goes into MAIL and RCPT commands must be
	// an address.
	for _, a := range rcpts {
		if !releasable(a) {
			where := "in the file"
			if len(to) > 0 {
				where = "given"
			}
			return nil, "", fmt.Errorf("not released (nothing was delivered): recipient %q %s is not an address; give the address to release to (release -to, or the web page's Release to field)", printLine(a), where)
		}
	}
	if from != nil {
		it.Envelope.From = *from
	}
	if f := it.Envelope.From; f != "" && !releasable(f) {
		return nil, "", fmt.Errorf("not released (nothing was delivered): sender %q in the file is not an address; give one with release -from on the command line (<> for the null sender)", printLine(f))
	}
	fields := []string{"X-SCL: -1"}
	if cfg.Filter.ExchangeSCLHeader {
		fields = append(fields, "X-MS-Exchange-Organization-SCL: -1")
	}
	// As every message the gateway relays, a released one says why its
	// X-SCL is what it is.
	why := "released from the archive"
	if it.HasSCL {
		why += "; archived at SCL " + strconv.Itoa(it.SCL)
	}
	fields = append(fields, "X-SCL-Report: "+why, "X-SCL-Released: "+now.Format(time.RFC1123Z))
	// SMTP wants CRLF: files IMF wrote may end lines in LF alone, which a
	// downstream may refuse (sclgate's own gateway does) or take apart.
	msg := stampRelease(crlf(raw), fields)

	timeout := cfg.Limits.DownstreamTimeout
	ctx, cancel := context.WithTimeout(ctx, 3*timeout)
	defer cancel()
	opts := &smtp.MailOptions{}
	if has8bit(msg) {
		opts.Body = smtp.Body8BitMIME
	}
	// An address in UTF-8 asks for SMTPUTF8 (RFC 6531), as its sender
	// did: the downstream gets it if it offers the extension, else the
	// address in A-labels if only its domain is UTF-8, else a refusal
	// (553 5.6.7, see proxy's downstreamAddr).
	// A UTF-8 header asks for it too (RFC 6532); mailOptions sends it
	// only to a downstream that offers it, and the header goes unchanged
	// either way.
	if !isASCII(it.Envelope.From) || slices.ContainsFunc(rcpts, func(a string) bool { return !isASCII(a) }) || utf8Header(msg) {
		opts.UTF8 = true
	}
	// LMTP takes one recipient per transaction (see package proxy).
	groups := [][]string{rcpts}
	if down.OneRecipient() {
		groups = nil
		for _, r := range rcpts {
			groups = append(groups, []string{r})
		}
	}
	var done []string
	prevNote, hadMark := store.Unanswered(id)
	stamp := now.Format(time.RFC1123Z)
	// After a clear failure (a refusal, no connection) this release
	// delivered nothing more: an earlier release's mark stays, and
	// recipients this one already reached (LMTP) are marked, so that the
	// next release does not send them a second copy unasked.
	// Every mark this release writes keeps an earlier release's note: a
	// forced release that in turn gets no clear answer must not lose who
	// the earlier one may have reached.
	withPrev := func(note string) string {
		if hadMark {
			note += "; before that, a release " + prevNote
		}
		return note
	}
	partial := func() string {
		return withPrev(fmt.Sprintf("at %s: delivered to %s, not to %s (refused, or the release stopped before them)",
			stamp, strings.Join(done, ","), strings.Join(rcpts[len(done):], ",")))
	}
	cleared := func() error {
		switch {
		case len(done) > 0:
			return store.MarkUnanswered(id, partial())
		case hadMark:
			return store.MarkUnanswered(id, prevNote)
		default:
			store.ClearUnanswered(id)
			return nil
		}
	}
	for _, g := range groups {
		// Marked once the recipients are accepted, before the message
		// goes out, and the mark taken back only on a clear answer: a
		// release killed or crashed while it sends the message or
		// waits for the answer leaves the mark.
		sending := func() error {
			note := fmt.Sprintf("at %s to %s: stopped while sending the message or waiting for the answer", stamp, strings.Join(g, ","))
			if len(done) > 0 {
				note += " (already delivered to " + strings.Join(done, ",") + ")"
			}
			return store.MarkUnanswered(id, withPrev(note))
		}
		r, err := deliver(ctx, down, it.Envelope.From, opts, g, msg, sending)
		if err != nil && errors.Is(err, proxy.ErrNoReply) {
			mark := fmt.Sprintf("at %s to %s: the whole message was sent and no answer came", stamp, strings.Join(g, ","))
			if len(done) > 0 {
				mark += " (already delivered to " + strings.Join(done, ",") + ")"
			}
			if merr := store.MarkUnanswered(id, withPrev(mark)); merr != nil {
				err = fmt.Errorf("%w (and it could not be marked so: %v)", err, merr)
			}
			if len(done) > 0 {
				err = fmt.Errorf("%w (already delivered to %s)", err, strings.Join(done, ","))
			}
			return nil, "", fmt.Errorf("not released, the file stays in %s, but it may have been delivered: %w; "+
				"look for it in the mailbox before releasing it again (that needs -force now)", where, err)
		}
		if err != nil {
			merr := cleared()
			if rr := (*rcptsRefused)(nil); errors.As(err, &rr) && len(rr.accepted) > 0 {
				err = fmt.Errorf("%w (the others would take it: to send it to them alone, use %s)", err, advice.command(id, rr.accepted))
			}
			if len(done) > 0 {
				err = fmt.Errorf("%w (already delivered to %s; the file stays in %s, marked; the others did not get it: send it to them with %s, leaving out any refused for good)",
					err, strings.Join(done, ","), where, advice.command(id, rcpts[len(done):]))
			}
			if merr != nil {
				err = fmt.Errorf("%w (and the mark could not be written: %v)", err, merr)
			}
			return nil, "", fmt.Errorf("not released, the file stays in %s: %w", where, err)
		}
		done = append(done, g...)
		// Recorded as soon as it is known: show lists it, also when a
		// later recipient is refused or the file stays (LMTP).
		if err := store.RecordRelease(id, g, stamp); err != nil && advice.warn != nil {
			// The message went; only archive show's "Released to:" line
			// will miss it.
			advice.warn(fmt.Sprintf("%s: delivered to %s, but the release record could not be written or given to the archive's owner, so archive show may not list it: %v", id, strings.Join(g, ","), err))
		}
		reply = r
		if len(done) < len(rcpts) {
			// Until the next recipient's mark: what a kill between
			// two LMTP transactions leaves. If it cannot be written,
			// this transaction's mark (a "maybe") stays, which blocks
			// a second copy as well.
			store.MarkUnanswered(id, partial())
		}
	}
	if again {
		store.ClearUnanswered(id)
		return rcpts, reply, nil
	}
	if err := store.Move(id, releasedDir); err != nil {
		store.MarkUnanswered(id, withPrev(fmt.Sprintf("at %s to %s: delivered (%s), but the file could not be moved to %s/", stamp, strings.Join(done, ","), printLine(reply), releasedDir)))
		return nil, "", fmt.Errorf("delivered downstream, but the file could not be moved to %s/ (it is marked, so a release needs -force; remove it by hand): %w", releasedDir, err)
	}
	return rcpts, reply, nil
}

// deliver sends msg to rcpts in one transaction; sending runs once the
// recipients are accepted, before the message goes out, and its error
// stops the transaction with nothing sent.
func deliver(ctx context.Context, down proxy.Downstream, from string, opts *smtp.MailOptions, rcpts []string, msg []byte, sending func() error) (string, error) {
	txn, err := down.Begin(ctx, from, opts)
	if err != nil {
		return "", err
	}
	// Every recipient is asked, so that one refusal names them all, and
	// the accepted ones, for a release to those alone.
	var refused rcptsRefused
	for _, r := range rcpts {
		err := txn.Rcpt(ctx, r, nil)
		var se *smtp.SMTPError
		switch {
		case err == nil:
			refused.accepted = append(refused.accepted, r)
		case errors.As(err, &se):
			refused.errs = append(refused.errs, fmt.Errorf("<%s>: %w", r, err))
		default: // no answer: the connection is gone
			txn.Abort()
			return "", fmt.Errorf("<%s>: %w", r, err)
		}
	}
	if len(refused.errs) > 0 {
		txn.Abort()
		return "", &refused
	}
	if err := sending(); err != nil {
		txn.Abort()
		return "", fmt.Errorf("cannot mark the release in progress (nothing was sent): %w", err)
	}
	return txn.Data(ctx, bytes.NewReader(msg))
}

// rcptsRefused: the downstream refused some recipients of a release, so
// nothing was sent; accepted are those it took.
type rcptsRefused struct {
	errs     []error
	accepted []string
}

func (e *rcptsRefused) Error() string {
	msgs := make([]string, len(e.errs))
	for i, err := range e.errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}
func (e *rcptsRefused) Unwrap() []error { return e.errs }

func isASCII(s string) bool { return !has8bit([]byte(s)) }

// utf8Header says whether msg's header section holds UTF-8 (RFC 6532):
// 8-bit bytes, and valid UTF-8 (a Latin-1 subject is not).
func utf8Header(msg []byte) bool {
	h := msg
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		h = msg[:i]
	}
	return has8bit(h) && utf8.Valid(h)
}

// releasable says whether a can be written into a MAIL or RCPT command:
// it has an "@" and no white space, angle brackets or control characters,
// and no character the gateway refuses in an address (invisible or
// bidirectional format characters, invalid UTF-8); its domain is the
// downstream's to judge.
func releasable(a string) bool {
	if !strings.Contains(a, "@") {
		return false
	}
	for _, r := range a {
		if r < 0x20 || r == 0x7f || r == ' ' || r == '<' || r == '>' || r >= 0x80 && !proxy.AddressRune(r) {
			return false
		}
	}
	return true
}

func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// crlf returns b with every line end made a CRLF (b itself when all are),
// and a final line end when the last line has none: a bare LF, a CR alone
// (each one line end), and a run of CRs before an LF (one line end, as
// CRLF text converted twice has "\r\r\n"). Bare CRs too: the gateway refuses them as SMTP
// smuggling ("\r.\r" ends a message for some servers), but a file IMF
// archived, or one copied in, may hold them; as CRLF, a "." line among
// them is dot-stuffed on the way out like any other.
func crlf(b []byte) []byte {
	bare := 0
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') || c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			bare++
		}
	}
	// (Each counted character becomes at most two bytes.)
	end := len(b) > 0 && b[len(b)-1] != '\n' && b[len(b)-1] != '\r'
	if bare == 0 && !end {
		return b
	}
	out := make([]byte, 0, len(b)+bare+2)
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '\r':
			// CRs before an LF are one line end with it (CRLF text
			// converted twice has "\r\r\n"); CRs alone are each one.
			j := i
			for j < len(b) && b[j] == '\r' {
				j++
			}
			if j < len(b) && b[j] == '\n' {
				out = append(out, '\r', '\n')
				i = j
				continue
			}
			out = append(out, '\r', '\n')
		case c == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	if end {
		out = append(out, '\r', '\n')
	}
	return out
}

// stampRelease returns raw with fields ("Name: value", no line end) on top
// and every verdict field removed from its header (those the gateway
// removes, an earlier X-SCL-Released among them), folded
// lines included; all other bytes are kept. The new fields end their lines
// as the message's first line does (files IMF wrote may use bare LF).
func stampRelease(raw []byte, fields []string) []byte {
	eol := "\r\n"
	if i := bytes.IndexByte(raw, '\n'); i >= 0 && (i == 0 || raw[i-1] != '\r') {
		eol = "\n"
	}
	var out bytes.Buffer
	out.Grow(len(raw) + 128)
	// Reading from memory into memory cannot fail.
	out.ReadFrom(proxy.Restamp(raw, fields, eol, proxy.IsVerdictField))
	return out.Bytes()
}
