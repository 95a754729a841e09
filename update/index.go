package update

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// IndexFile is the name of a source's index; IndexFile+".minisig" is its
// signature. A source is any directory of static files: these two plus the
// bundles and their signatures.
const IndexFile = "index.json"

// MaxIndexSize caps the index download: it lists versions, not content.
const MaxIndexSize = 1 << 20

// ErrIndex: the index is malformed.
var ErrIndex = errors.New("malformed index")

// Index lists the definitions a source offers, newest first.
type Index struct {
	Format    int       `json:"format"`
	Generated time.Time `json:"generated"`
	Versions  []Offer   `json:"versions"`
}

// Offer is one version in an index.
type Offer struct {
	Version    string    `json:"version"`
	File       string    `json:"file"` // bundle file name, relative to the source
	Size       int64     `json:"size"`
	SHA256     string    `json:"sha256"`
	Created    time.Time `json:"created"`
	MinSclgate string    `json:"min_sclgate,omitempty"`
}

// ParseIndex decodes and checks an index. Versions come back newest first
// whatever order the file had.
func ParseIndex(b []byte) (*Index, error) {
	var ix Index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIndex, err)
	}
	if ix.Format != 1 {
		return nil, fmt.Errorf("%w: format %d (this sclgate reads format 1)", ErrIndex, ix.Format)
	}
	seen := map[string]bool{}
	for _, o := range ix.Versions {
		if !ValidVersion(o.Version) || seen[o.Version] {
			return nil, fmt.Errorf("%w: bad or repeated version %q", ErrIndex, o.Version)
		}
		seen[o.Version] = true
		if !validFileName(o.File) || o.Size <= 0 || len(o.SHA256) != 64 {
			return nil, fmt.Errorf("%w: version %s: bad file, size or sha256", ErrIndex, o.Version)
		}
	}
	slices.SortStableFunc(ix.Versions, func(a, b Offer) int { return CompareVersions(b.Version, a.Version) })
	return &ix, nil
}

// Find returns the offer of version v.
func (ix *Index) Find(v string) (Offer, bool) {
	for _, o := range ix.Versions {
		if o.Version == v {
			return o, true
		}
	}
	return Offer{}, false
}

// validFileName accepts a plain file name: the index must not be able to
// make the client fetch (or write) anything but a sibling file.
func validFileName(s string) bool {
	if s == "" || len(s) > 200 || s[0] == '.' {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '.' || r == '-' || r == '_' || r == '+') {
			return false
		}
	}
	return true
}
