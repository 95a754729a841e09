// Package weights reads Exchange custom weight lists and finds which of
// their entries a message matches.
//
// Exchange's Intelligent Message Filter (IMF v2) let admins adjust a
// message's Spam Confidence Level with their own phrases, kept in
// MSExchange.UceContentFilter.xml:
//
//	<?xml version="1.0" encoding="UTF-16"?>
//	<CustomWeightEntries xmlns="http://schemas.microsoft.com/2005/CustomWeight">
//	  <CustomWeightEntry Type="BODY" Change="5" Text="special offer"/>
//	  <CustomWeightEntry Type="SUBJECT" Change="MIN" Text="EDIT:"/>
//	  <CustomWeightEntry Type="BOTH" Change="MAX" Text="Offre spéciale"/>
//	</CustomWeightEntries>
//
// sclgate reads those files as they are, so a site can carry its list over
// unchanged. This package parses a list (Parse, Load), keeps it current as
// the file is edited (Watcher), and reports which entries a message's
// subject and body match (List.Match). Turning matches into an SCL is the
// scorer package's job.
//
// A phrase matches when it occurs in the text ignoring case (Unicode full
// case folding, after NFKC normalisation of both sides, so that accents
// match however they are encoded), treating any run of white space as one
// space, and on word boundaries: "free" matches "FREE money" and "free!" but
// not "freedom". A boundary is only required at an end of the phrase that is
// a word character (letter, digit, mark or '_'), so "EDIT:" also matches
// "re:EDIT:".
//
// Lists with tens of thousands of entries are fine: all phrases are looked
// for in a single pass over the text.
package weights

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"

	"github.com/sclgate/sclgate/safeio"
)

// Type says which part of a message an entry is matched against.
type Type int

const (
	Body    Type = iota + 1 // the decoded body text
	Subject                 // the decoded subject
	Both                    // either; an entry matching both counts once
)

func (t Type) String() string {
	switch t {
	case Body:
		return "BODY"
	case Subject:
		return "SUBJECT"
	case Both:
		return "BOTH"
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Kind says what an entry's Change is.
type Kind int

const (
	Delta Kind = iota // add Change to the SCL
	Min               // set the SCL to its minimum
	Max               // set the SCL to its maximum
)

func (k Kind) String() string {
	switch k {
	case Delta:
		return "Delta"
	case Min:
		return "Min"
	case Max:
		return "Max"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Entry is one CustomWeightEntry.
type Entry struct {
	Type   Type
	Kind   Kind   // Delta, Min or Max
	Change int    // the integer for Delta; 0 for Min/Max
	Text   string // the phrase as written in the file (not normalised)
	Line   int    // line in the file, for reports
}

// ChangeString returns the Change as the file would have it: "5", "-9",
// "MIN" or "MAX".
func (e Entry) ChangeString() string {
	switch e.Kind {
	case Min:
		return "MIN"
	case Max:
		return "MAX"
	}
	return strconv.Itoa(e.Change)
}

// List is an immutable, compiled weight list, safe for concurrent use. A nil
// *List has no entries and matches nothing.
type List struct {
	source  string
	entries []Entry
	m       *matcher // nil when there are no entries
	ignored []string
}

// Ignored says which child elements of the root other than entries the
// file holds ("line 4: element <CustomWeigthEntry> is not
// <CustomWeightEntry>; it is ignored"): a later version of the format may
// add elements, so they are no error, but a misspelt entry is a rule
// lost, which "weights check" and serve's log show.
func (l *List) Ignored() []string {
	if l == nil {
		return nil
	}
	return slices.Clone(l.ignored)
}

// Len returns the number of entries.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(l.entries)
}

// Entries returns the entries in file order. The slice is a copy.
func (l *List) Entries() []Entry {
	if l == nil {
		return nil
	}
	return slices.Clone(l.entries)
}

// Source returns the name of the file the list came from, as given to Parse
// or Load.
func (l *List) Source() string {
	if l == nil {
		return ""
	}
	return l.source
}

// Match returns the entries whose phrase occurs in subject (SUBJECT and BOTH
// entries) or in one of the body texts (BODY and BOTH entries), each at
// most once, in file order. A message's body comes as its text parts, so
// that no phrase is made of the end of one part and the start of the
// next. All are decoded UTF-8 text; Match normalises them. It returns nil
// when nothing matches.
func (l *List) Match(subject string, body ...string) []Entry {
	return l.MatchSubjects([]string{subject}, body...)
}

// MatchSubjects is Match for a message with several Subject fields: a
// SUBJECT or BOTH phrase matches when it occurs in any of them (each on its
// own), as Postfix's header_checks and SpamAssassin's rules look at every
// copy of a field. RFC 5322 allows one, so a second is what a sender who
// wants to hide one from the filter adds, and clients differ in which they
// show.
func (l *List) MatchSubjects(subjects []string, body ...string) []Entry {
	if l == nil || l.m == nil {
		return nil
	}
	return l.m.match(l.entries, subjects, body)
}

// maxFileSize bounds what Parse reads: a real list is a few MiB at most, and
// a bound keeps a wrong path (a log file, /dev/zero) from eating memory.
const maxFileSize = 64 << 20

// Load reads and compiles the weight list in the file at path.
func Load(path string) (*List, error) {
	f, _, err := open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(path, f)
}

// open opens the weight list file at path for reading, refusing what is
// not a regular file or is too large; Load and the Watcher both read
// through it. A refused file's FileInfo is returned with the error (the
// Watcher compares it, so that a FIFO left in place is not refused, and
// logged, again at every change in its directory).
func open(path string) (*os.File, fs.FileInfo, error) {
	f, fi, err := safeio.Open(path, 0)
	var nr *safeio.NotRegularError
	switch {
	case errors.As(err, &nr):
		return nil, fi, &ParseError{File: path, Err: errors.New(nr.Reason())}
	case err != nil:
		return nil, fi, fmt.Errorf("weights: %w", err)
	case fi.Size() > maxFileSize:
		// Before reading it: Parse would read 64 MiB to find out.
		f.Close()
		return nil, fi, &ParseError{File: path, Err: fmt.Errorf("file is larger than %d MiB", maxFileSize>>20)}
	}
	return f, fi, nil
}
