package archive

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"
)

const (
	// fileExt is the extension of archived messages. Only files with
	// exactly this extension are part of the archive.
	fileExt = ".eml"

	// timeLayout is the time at the start of the names we give files:
	// UTC, sortable as text, no colons (Windows shares refuse them).
	timeLayout = "20060102T150405.000000Z"

	// randLen is the length of the random part of our names: 16 base32
	// characters, 80 bits, so that gateways sharing a directory never
	// pick the same name even in the same microsecond.
	randLen = 16

	// tempPrefix and tempSuffix make up the names of temporary files. The
	// leading dot and the suffix keep List from mistaking them for
	// messages.
	tempPrefix = ".sclgate-"
	tempSuffix = ".tmp"

	// maxIDLen bounds IDs, the longest file name most file systems allow.
	maxIDLen = 255
)

// ErrInvalidID is wrapped by the errors for IDs that cannot name a message
// in the archive directory.
var ErrInvalidID = errors.New("invalid archive ID")

// newID returns a fresh ID for a message archived at t.
func newID(t time.Time) string {
	// rand.Text is base32 in upper case: 26 characters, 128 bits. Lower
	// case reads better; either way only one case is used, so two IDs
	// never differ only in case.
	r := strings.ToLower(rand.Text()[:randLen])
	return t.UTC().Format(timeLayout) + "-" + r
}

// ValidateID checks that id can name a message in the archive: a plain
// file name without its ".eml", so that it cannot reach outside the
// directory. IDs come from users (the command line, a web page), so
// every method taking one checks it. Files that IMF named ({GUID}.eml,
// anything.eml) have valid IDs too.
func ValidateID(id string) error {
	if why := badName(id); why != "" {
		return fmt.Errorf("archive: %w %q: %s", ErrInvalidID, id, why)
	}
	return nil
}

// badName tells what makes name unfit to be one plain file or directory
// name in the archive directory, or "" if nothing does.
func badName(name string) string {
	switch {
	case name == "":
		return "empty"
	case len(name) > maxIDLen:
		return "too long"
	case name[0] == '.':
		// Also covers "." and "..", and our temporary files.
		return "starts with a dot"
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '/' || c == '\\':
			return "has a path separator"
		case c < 0x20 || c == 0x7f:
			// NUL cannot be in a file name; other control characters
			// could be, but an ID is printed in logs and web pages.
			return "has a control character"
		}
	}
	return ""
}

// receivedFromName returns the time at the start of a name we gave,
// and false for names we did not give (those IMF wrote, say).
func receivedFromName(id string) (time.Time, bool) {
	n := len(timeLayout)
	if len(id) <= n || id[n] != '-' {
		return time.Time{}, false
	}
	t, err := time.Parse(timeLayout, id[:n])
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}
