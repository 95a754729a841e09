// Package defs reads, writes, signs and verifies sclgate's definitions
// bundles: the built-in classifier's trained model shipped as one file,
// sclgate-defs-<version>.tar.gz, with a signature next to it in minisign's
// format (<file>.minisig), so the standard minisign tool can check it too.
//
// A bundle is a gzip-compressed tar archive of exactly two regular files, in
// this order:
//
//	manifest.json  the Manifest: format and definitions versions, creation
//	               time, what the model was trained on, the calibration
//	               table, and the sha256 of every other member
//	model.bin      the model, opaque to this package
//
// Write makes the archive deterministic: the same Bundle always gives the
// same bytes (fixed order and modes, uid/gid 0, every mtime = Created, a gzip
// header without name or time).
//
// Reading trusts nothing until it has been checked. ReadVerified and
// VerifyFile check the minisign signature over the whole file against the
// trusted public keys first; only then is the archive opened, and Read itself
// caps the size of the file, of the uncompressed archive and of every member
// (no gzip or tar bombs), accepts only the expected members as plain files
// under plain names (no absolute paths, "..", links, directories, duplicates
// or extras) and compares every member with its sha256 in the manifest.
// Errors wrap ErrFormat, ErrChecksum, ErrBadSignature or ErrUnknownKey.
//
// Installing, switching between and rolling back definitions is not part of
// this package.
package defs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sclgate/sclgate/safeio"
)

const (
	// FormatVersion is the bundle format this package reads and writes.
	FormatVersion = 1

	// ManifestName and ModelName are the bundle's members, in archive order.
	ManifestName = "manifest.json"
	ModelName    = "model.bin"

	// DefaultMaxSize is the size limit of ReadFile and VerifyFile, for the
	// bundle file and for its uncompressed archive alike.
	DefaultMaxSize = 256 << 20

	// MaxManifestSize is the largest manifest.json accepted.
	MaxManifestSize = 1 << 20

	// maxTrainingData bounds the free-text training-data description.
	maxTrainingData = 64 << 10
)

var (
	// ErrFormat: the file is not a well-formed bundle of a format this
	// package reads (not gzip/tar, truncated, over a size limit, unsafe or
	// unexpected members, a bad manifest).
	ErrFormat = errors.New("malformed bundle")

	// ErrChecksum: a member's sha256 differs from the one in the manifest.
	ErrChecksum = errors.New("checksum mismatch")
)

// FileName is the conventional file name of the bundle of a version.
func FileName(version string) string {
	return "sclgate-defs-" + version + ".tar.gz"
}

// Manifest describes a bundle. It is the archive's manifest.json.
type Manifest struct {
	// FormatVersion is the bundle format, FormatVersion. Write fills in a
	// zero value.
	FormatVersion int `json:"format_version"`

	// Version of the definitions: 1 to 64 letters, digits and ". _ + -",
	// beginning with a letter or digit (it names a directory when installed).
	Version string `json:"version"`

	// Created is when the definitions were built; it is also the mtime of
	// every archive member. Between 1970 and 2200.
	Created time.Time `json:"created"`

	// TrainingData says what the model was trained and calibrated on. Free
	// text, lines separated by "\n"; no other control characters.
	TrainingData string `json:"training_data"`

	// Calibration maps classifier scores to SCLs: at most one row per SCL
	// 1..9, in increasing SCL order.
	Calibration []CalRow `json:"calibration"`

	// Members maps each member other than the manifest to its sha256 in
	// lower-case hex. Write computes it; any value in the Bundle given to
	// Write is ignored.
	Members map[string]string `json:"members"`

	// MinSclgate is the oldest sclgate version that can use the
	// definitions; empty for any. Comparing is up to the caller.
	MinSclgate string `json:"min_sclgate,omitempty"`
}

// CalRow is one row of the calibration table: messages whose classifier
// score is at or above Cut get at least this SCL. The rates and counts are
// those of the calibration messages at or above the cut, so an admin can
// read off what a gateway threshold of SCL costs (ham wrongly acted upon)
// and gains (spam caught).
type CalRow struct {
	SCL      int     `json:"scl"`
	Cut      float64 `json:"cut"`
	HamRate  float64 `json:"ham_rate"`  // share of ham at or above Cut: the false-positive rate
	SpamRate float64 `json:"spam_rate"` // share of spam at or above Cut: the catch rate
	Ham      int     `json:"ham"`       // ham messages at or above Cut
	Spam     int     `json:"spam"`      // spam messages at or above Cut
}

// Bundle is a bundle's content.
type Bundle struct {
	Manifest Manifest
	Model    []byte
}

var versionRE = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$`)

// ValidVersion says whether v may stand as a manifest's version or
// min_sclgate: 1 to 64 letters, digits and ". _ + -", beginning with a
// letter or digit, and not "builtin", which names the built-in
// definitions in the update store's records.
func ValidVersion(v string) bool { return versionRE.MatchString(v) && !strings.EqualFold(v, "builtin") }

var (
	minCreated = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	// MaxCreated bounds a manifest's created time (tar's ustar mtime
	// ends in 2242).
	MaxCreated = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// check validates a manifest; the error does not wrap ErrFormat.
func (m *Manifest) check() error {
	if m.FormatVersion != FormatVersion {
		return fmt.Errorf("format version %d, this sclgate reads %d", m.FormatVersion, FormatVersion)
	}
	if !versionRE.MatchString(m.Version) {
		return fmt.Errorf("version %q: want 1 to 64 letters, digits and \". _ + -\", beginning with a letter or digit", m.Version)
	}
	if m.MinSclgate != "" && !versionRE.MatchString(m.MinSclgate) {
		return fmt.Errorf("min_sclgate %q: not a version", m.MinSclgate)
	}
	if m.Created.Before(minCreated) || !m.Created.Before(MaxCreated) {
		return fmt.Errorf("created %s: not between 1970 and 2200", m.Created.Format(time.RFC3339))
	}
	if len(m.TrainingData) > maxTrainingData {
		return fmt.Errorf("training_data: %d bytes, more than %d", len(m.TrainingData), maxTrainingData)
	}
	if !utf8.ValidString(m.TrainingData) {
		return errors.New("training_data: not UTF-8")
	}
	for _, r := range m.TrainingData {
		if r != '\n' && r != '\t' && unicode.IsControl(r) {
			return fmt.Errorf("training_data: control character %U", r)
		}
	}
	prev := 0
	for i, row := range m.Calibration {
		switch {
		case row.SCL < 1 || row.SCL > 9:
			return fmt.Errorf("calibration row %d: SCL %d, want 1 to 9", i+1, row.SCL)
		case row.SCL <= prev:
			return fmt.Errorf("calibration row %d: SCL %d after SCL %d, want increasing SCLs", i+1, row.SCL, prev)
		case math.IsNaN(row.Cut) || math.IsInf(row.Cut, 0):
			return fmt.Errorf("calibration row %d (SCL %d): cut is not a number", i+1, row.SCL)
		case !(row.HamRate >= 0 && row.HamRate <= 1) || !(row.SpamRate >= 0 && row.SpamRate <= 1):
			return fmt.Errorf("calibration row %d (SCL %d): rates must be between 0 and 1", i+1, row.SCL)
		case row.Ham < 0 || row.Spam < 0:
			return fmt.Errorf("calibration row %d (SCL %d): negative count", i+1, row.SCL)
		}
		prev = row.SCL
	}
	if len(m.Members) != 1 || m.Members[ModelName] == "" {
		names := make([]string, 0, len(m.Members))
		for name := range m.Members {
			names = append(names, fmt.Sprintf("%q", name))
		}
		return fmt.Errorf("members [%s]: want exactly %q", strings.Join(names, ", "), ModelName)
	}
	if h := m.Members[ModelName]; len(h) != 2*sha256.Size || strings.ToLower(h) != h || !isHex(h) {
		return fmt.Errorf("members: sha256 of %q is %q, want %d lower-case hex digits", ModelName, h, 2*sha256.Size)
	}
	return nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// Write writes b as a bundle. The output depends only on b: the manifest's
// Members are computed from the content, Created is written in UTC, and a
// zero FormatVersion means FormatVersion. It fails without writing anything
// when the manifest is not one Read accepts or the bundle would be larger
// than DefaultMaxSize.
func Write(w io.Writer, b *Bundle) error {
	m := b.Manifest
	if m.FormatVersion == 0 {
		m.FormatVersion = FormatVersion
	}
	m.Created = m.Created.UTC()
	sum := sha256.Sum256(b.Model)
	m.Members = map[string]string{ModelName: hex.EncodeToString(sum[:])}
	if err := m.check(); err != nil {
		return fmt.Errorf("defs: cannot write bundle: manifest: %w", err)
	}
	mj, err := json.MarshalIndent(&m, "", "  ")
	if err != nil {
		return fmt.Errorf("defs: cannot write bundle: manifest: %w", err)
	}
	mj = append(mj, '\n')
	if len(mj) > MaxManifestSize {
		return fmt.Errorf("defs: cannot write bundle: manifest is %d bytes, more than %d", len(mj), MaxManifestSize)
	}
	// Content plus tar headers and gzip's overhead on incompressible data
	// (well under 1 MiB) must stay under the limit readers apply by default.
	if n := int64(len(mj)) + int64(len(b.Model)) + 1<<20; n > DefaultMaxSize {
		return fmt.Errorf("defs: cannot write bundle: %d bytes of content, more than the %d readers accept", n, int64(DefaultMaxSize))
	}

	// Built in memory so nothing reaches w unless all of it could be made.
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression) // header: no name, mtime 0
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	mtime := m.Created.Truncate(time.Second)
	for _, member := range []struct {
		name string
		data []byte
	}{{ManifestName, mj}, {ModelName, b.Model}} {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     member.name,
			Size:     int64(len(member.data)),
			Mode:     0o644,
			ModTime:  mtime,
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("defs: writing bundle: %w", err)
		}
		if _, err := tw.Write(member.data); err != nil {
			return fmt.Errorf("defs: writing bundle: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("defs: writing bundle: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("defs: writing bundle: %w", err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// errOverLimit is what a capReader returns past its limit.
var errOverLimit = errors.New("over the size limit")

// capReader reads at most limit bytes from r and fails with errOverLimit if
// r has more.
type capReader struct {
	r     io.Reader
	left  int64
	what  string // for the error: "file" or "uncompressed archive"
	limit int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		var one [1]byte
		n, err := io.ReadFull(c.r, one[:])
		if n > 0 {
			return 0, fmt.Errorf("%w: %s larger than %d bytes", errOverLimit, c.what, c.limit)
		}
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// Read reads a bundle and checks it: format, size limits, member names and
// types, the manifest, and the sha256 of every member. It does NOT check a
// signature: use ReadVerified or VerifyFile for anything not already
// verified.
//
// maxSize (DefaultMaxSize if ≤ 0) limits both the bytes read from r and the
// uncompressed archive. Errors wrap ErrFormat or ErrChecksum and do not name
// a file.
func Read(r io.Reader, maxSize int64) (*Bundle, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	// gzip reads through br directly (it is an io.ByteReader), so what is
	// left in br afterwards is exactly what follows the gzip stream.
	br := bufio.NewReader(&capReader{r: r, left: maxSize, limit: maxSize, what: "file"})
	// RFC 1952: reserved flag bits must be zero (compress/gzip ignores them).
	if h, err := br.Peek(4); err == nil && h[0] == 0x1f && h[1] == 0x8b && h[3]&0xe0 != 0 {
		return nil, fmt.Errorf("%w: not a gzip file: reserved header flags set", ErrFormat)
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, formatErr("not a gzip file", err)
	}
	zr.Multistream(false)
	archive := &capReader{r: zr, left: maxSize, limit: maxSize, what: "uncompressed archive"}
	tr := tar.NewReader(archive)

	var (
		m     *Manifest
		b     = &Bundle{}
		seen  = map[string]bool{}
		order []string
	)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			// With GODEBUG=tarinsecurepath=0 archive/tar reports unsafe
			// names itself; say which and why as without it.
			if errors.Is(err, tar.ErrInsecurePath) && hdr != nil {
				if err := checkMember(hdr); err != nil {
					return nil, err
				}
			}
			return nil, formatErr("reading archive", err)
		}
		name := hdr.Name
		if err := checkMember(hdr); err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: member %q appears twice", ErrFormat, name)
		}
		seen[name] = true
		order = append(order, name)

		if m == nil {
			if name != ManifestName {
				return nil, fmt.Errorf("%w: first member is %q, want %q", ErrFormat, name, ManifestName)
			}
			if hdr.Size > MaxManifestSize {
				return nil, fmt.Errorf("%w: %s is %d bytes, more than %d", ErrFormat, ManifestName, hdr.Size, MaxManifestSize)
			}
			data, err := readMember(tr, hdr, archive)
			if err != nil {
				return nil, err
			}
			if m, err = parseManifest(data); err != nil {
				return nil, err
			}
			b.Manifest = *m
			continue
		}

		want, ok := m.Members[name]
		if !ok {
			return nil, fmt.Errorf("%w: unexpected member %q (not in the manifest)", ErrFormat, name)
		}
		data, err := readMember(tr, hdr, archive)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != want {
			return nil, fmt.Errorf("%w: member %q has sha256 %s, the manifest says %s", ErrChecksum, name, got, want)
		}
		if name == ModelName {
			b.Model = data
		}
	}
	if m == nil {
		return nil, fmt.Errorf("%w: empty archive (no %s)", ErrFormat, ManifestName)
	}
	if len(order) != 1+len(m.Members) {
		return nil, fmt.Errorf("%w: member %q listed in the manifest is missing", ErrFormat, ModelName)
	}

	// After the end-of-archive marker only zero padding may follow, and after
	// the gzip stream (whose checksum is verified at its end) nothing.
	if err := readZeros(archive); err != nil {
		return nil, err
	}
	if _, err := br.ReadByte(); err != io.EOF {
		if err == nil {
			return nil, fmt.Errorf("%w: data after the end of the gzip stream", ErrFormat)
		}
		return nil, formatErr("after the gzip stream", err)
	}
	return b, nil
}

// checkMember accepts a plain regular file under a plain name.
func checkMember(hdr *tar.Header) error {
	name := hdr.Name
	switch {
	case name == "":
		return fmt.Errorf("%w: member with an empty name", ErrFormat)
	case strings.HasPrefix(name, "/") || strings.HasPrefix(name, `\`) || len(name) >= 2 && name[1] == ':':
		return fmt.Errorf("%w: member %q: absolute path", ErrFormat, name)
	case strings.ContainsAny(name, `\`) || strings.ContainsFunc(name, unicode.IsControl) || !utf8.ValidString(name):
		return fmt.Errorf("%w: member %q: unsafe name", ErrFormat, name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return fmt.Errorf("%w: member %q: path traversal (\"..\")", ErrFormat, name)
		}
	}
	if name != ManifestName && name != ModelName {
		// Before the type, so a link under an unknown name is reported by name.
		if strings.Contains(name, "/") {
			return fmt.Errorf("%w: unexpected member %q (bundles have no directories)", ErrFormat, name)
		}
	}
	switch hdr.Typeflag {
	case tar.TypeReg:
	case tar.TypeSymlink, tar.TypeLink:
		return fmt.Errorf("%w: member %q is a link (to %q), not a regular file", ErrFormat, name, hdr.Linkname)
	case tar.TypeDir:
		return fmt.Errorf("%w: member %q is a directory, not a regular file", ErrFormat, name)
	default:
		return fmt.Errorf("%w: member %q has tar type %q, not a regular file", ErrFormat, name, hdr.Typeflag)
	}
	if hdr.Linkname != "" {
		return fmt.Errorf("%w: member %q has a link name", ErrFormat, name)
	}
	return nil
}

// readMember reads a member whose size was announced in its header, after
// checking that size against what is left under the limit.
func readMember(tr *tar.Reader, hdr *tar.Header, archive *capReader) ([]byte, error) {
	if hdr.Size > archive.left {
		return nil, fmt.Errorf("%w: member %q is %d bytes, over the size limit of %d", ErrFormat, hdr.Name, hdr.Size, archive.limit)
	}
	// io.ReadAll grows with the data actually there, so a header that lies
	// about its size costs no more memory than the data.
	data, err := io.ReadAll(tr)
	if err != nil {
		return nil, formatErr(fmt.Sprintf("member %q", hdr.Name), err)
	}
	return data, nil
}

// readZeros reads the rest of r and fails if it is not all zero bytes.
func readZeros(r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		for _, c := range buf[:n] {
			if c != 0 {
				return fmt.Errorf("%w: data after the end of the archive", ErrFormat)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return formatErr("after the end of the archive", err)
		}
	}
}

func formatErr(where string, err error) error {
	switch {
	case errors.Is(err, errOverLimit):
		return fmt.Errorf("%w: %s: %v", ErrFormat, where, err)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return fmt.Errorf("%w: %s: truncated file", ErrFormat, where)
	}
	return fmt.Errorf("%w: %s: %v", ErrFormat, where, err)
}

// parseManifest decodes and checks manifest.json. A newer format version
// is reported as such before its fields are looked at.
func parseManifest(data []byte) (*Manifest, error) {
	var v struct {
		FormatVersion *int `json:"format_version"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, ManifestName, err)
	}
	if v.FormatVersion == nil {
		return nil, fmt.Errorf("%w: %s: no format_version", ErrFormat, ManifestName)
	}
	if *v.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("%w: %s: format version %d, this sclgate reads %d", ErrFormat, ManifestName, *v.FormatVersion, FormatVersion)
	}
	if err := strictKeys(data); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, ManifestName, err)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, ManifestName, err)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, ManifestName, err)
	}
	return &m, nil
}

// strictKeys refuses a manifest that other JSON readers would read
// otherwise than encoding/json: a key given twice in one object (Go takes
// the last, as do Python and jq, but not every reader), or a field name
// in another case ("VERSION", which Go takes for "version" and Python and
// jq do not), so that what an admin's script reads in a signed manifest
// is what sclgate acts on. The member names under "members" are names,
// not fields: any case, but each once.
func strictKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	type object struct {
		keys    map[string]bool // lower-cased
		names   bool            // keys are names (members), not field names
		wantKey bool            // the next string token is a key
	}
	var stack []*object
	var lastKey string // the key whose value comes next, in the top object
	arrays := 0        // open arrays, above the innermost object
	var depthArrays []int
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var top *object
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				o := &object{keys: map[string]bool{}, wantKey: true}
				o.names = len(stack) == 1 && arrays == 0 && lastKey == "members"
				if top != nil && arrays == 0 {
					top.wantKey = true // this object was its value
				}
				depthArrays = append(depthArrays, arrays)
				stack = append(stack, o)
				arrays = 0
			case '}':
				stack = stack[:len(stack)-1]
				arrays = depthArrays[len(depthArrays)-1]
				depthArrays = depthArrays[:len(depthArrays)-1]
			case '[':
				arrays++
			case ']':
				arrays--
				if top != nil && arrays == 0 {
					top.wantKey = true
				}
			}
		case string:
			if top != nil && arrays == 0 && top.wantKey {
				low := strings.ToLower(t)
				switch {
				case top.keys[low] && low == t:
					return fmt.Errorf("key %q given twice", t)
				case top.keys[low]:
					return fmt.Errorf("key %q given twice, in another case", t)
				case !top.names && low != t:
					return fmt.Errorf("key %q: field names are lower case (%q)", t, low)
				case !top.names && !isASCII(t):
					// encoding/json folds "ſ" to s and the Kelvin sign to
					// k: "verſion" would be Go's version and no one else's.
					return fmt.Errorf("key %q: field names are ASCII", t)
				}
				top.keys[low] = true
				top.wantKey = false
				if len(stack) == 1 {
					lastKey = t
				}
				continue
			}
			if top != nil && arrays == 0 {
				top.wantKey = true
			}
		default:
			if top != nil && arrays == 0 {
				top.wantKey = true
			}
		}
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// ReadFile reads and checks the bundle in a file, at most DefaultMaxSize
// bytes, like Read: the signature is NOT checked (see VerifyFile). Errors
// name the file.
func ReadFile(path string) (*Bundle, error) {
	data, err := readFileMax(path, DefaultMaxSize, ErrFormat)
	if err != nil {
		return nil, err
	}
	b, err := Read(bytes.NewReader(data), DefaultMaxSize)
	if err != nil {
		return nil, fmt.Errorf("defs: %s: %w", path, err)
	}
	return b, nil
}

// readFileMax reads a whole file of at most max bytes; a larger one is an
// error wrapping tooLarge.
func readFileMax(path string, max int64, tooLarge error) ([]byte, error) {
	f, _, err := safeio.Open(path, 0)
	if err != nil {
		return nil, fmt.Errorf("defs: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("defs: %w", err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("defs: %s: %w: larger than %d bytes", path, tooLarge, max)
	}
	return data, nil
}
