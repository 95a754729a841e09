package defs

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"aead.dev/minisign"
)

var (
	// ErrBadSignature: the signature file is malformed, or it does not
	// match the bundle or its own trusted comment, or its trusted comment
	// names another version than the bundle's manifest.
	ErrBadSignature = errors.New("bad signature")

	// ErrUnknownKey: the signature was made with a key that is none of the
	// trusted keys. The error names its key id and the trusted ones.
	ErrUnknownKey = errors.New("unknown signing key")

	// ErrWrongPassword: an encrypted secret key could not be decrypted with
	// the password given.
	ErrWrongPassword = errors.New("wrong password for the secret key")
	// ErrNoPassword: the secret key is encrypted, and no password was
	// given.
	ErrNoPassword = errors.New("the secret key is encrypted, and no password was given")
)

const (
	// maxSigSize bounds a .minisig file.
	maxSigSize = 16 << 10
	// maxTrustedComment bounds a trusted comment (minisign's own limit is
	// 8 KiB for the whole line).
	maxTrustedComment = 4 << 10
	// trustedPrefix begins the trusted comments TrustedComment makes.
	trustedPrefix = "sclgate-defs "
)

// keyIDString formats a key id as minisign prints it.
func keyIDString(id uint64) string {
	return fmt.Sprintf("%016X", id)
}

// GenerateKey makes a new Ed25519 key pair and returns the public key file
// and the secret key file in minisign's formats (minisign -G). With an empty
// password the secret key is stored unencrypted, as minisign -G -W does;
// otherwise it is encrypted with scrypt at minisign's own cost (about 1 GiB
// of memory and a few seconds, again when it is used).
func GenerateKey(password string) (pub, priv []byte, err error) {
	pk, sk, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("defs: generating key: %w", err)
	}
	pub = fmt.Appendf(nil, "untrusted comment: minisign public key %s\n%s\n", keyIDString(pk.ID()), pk.String())
	if password == "" {
		priv, err = sk.MarshalText()
	} else {
		priv, err = minisign.EncryptKey(password, sk)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("defs: encoding secret key: %w", err)
	}
	return pub, append(priv, '\n'), nil
}

// PublicKeyID checks a public key, given as a minisign .pub file or just its
// base64 line, and returns its key id as minisign prints it.
func PublicKeyID(pub []byte) (string, error) {
	k, err := parsePublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("defs: %w", err)
	}
	return keyIDString(k.ID()), nil
}

func parsePublicKey(pub []byte) (minisign.PublicKey, error) {
	var k minisign.PublicKey
	if err := k.UnmarshalText(bytes.TrimSpace(pub)); err != nil {
		return k, fmt.Errorf("public key: %v", err)
	}
	return k, nil
}

// parsePrivateKey reads a minisign secret key file, decrypting it with
// password if it is encrypted.
func parsePrivateKey(priv []byte, password string) (minisign.PrivateKey, error) {
	text := bytes.TrimSpace(priv)
	if minisign.IsEncrypted(text) {
		if password == "" {
			return minisign.PrivateKey{}, fmt.Errorf("defs: %w", ErrNoPassword)
		}
		sk, err := minisign.DecryptKey(password, text)
		if err != nil {
			return minisign.PrivateKey{}, fmt.Errorf("defs: %w (or the key file is damaged)", ErrWrongPassword)
		}
		return sk, nil
	}
	var sk minisign.PrivateKey
	if err := sk.UnmarshalText(text); err != nil {
		return sk, fmt.Errorf("defs: secret key: %v", err)
	}
	return sk, nil
}

// Sign signs data with a minisign secret key file (decrypted with password
// if it is encrypted) and returns the .minisig file: a prehashed Ed25519
// signature (what minisign -S makes) whose trusted comment, itself signed,
// is trustedComment (one line; see TrustedComment).
func Sign(privKey []byte, password string, data []byte, trustedComment string) ([]byte, error) {
	if len(trustedComment) > maxTrustedComment {
		return nil, fmt.Errorf("defs: trusted comment: %d bytes, more than %d", len(trustedComment), maxTrustedComment)
	}
	if !utf8.ValidString(trustedComment) || strings.ContainsFunc(trustedComment, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) {
		return nil, errors.New("defs: trusted comment: must be one line of text without control characters other than tabs")
	}
	sk, err := parsePrivateKey(privKey, password)
	if err != nil {
		return nil, err
	}
	r := minisign.NewReader(bytes.NewReader(data))
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, err
	}
	sig := r.SignWithComments(sk, trustedComment, "signature from sclgate defs key "+keyIDString(sk.ID()))
	// A key whose public half does not belong to its secret half makes
	// signatures nobody can verify: find out now, not at every gateway.
	if pk, ok := sk.Public().(minisign.PublicKey); !ok || !minisign.Verify(pk, data, sig) {
		return nil, errors.New("defs: secret key is damaged: its signature does not verify")
	}
	return sig, nil
}

// Verify checks a minisign signature file (sig) over data against the
// trusted public keys, each a minisign .pub file or just its base64 line.
// Both the signature and the trusted comment's signature are checked; it
// returns the signing key's id and the trusted comment.
//
// Errors wrap ErrUnknownKey when the signature's key id is none of the
// trusted keys' (keyID is then the signature's), or ErrBadSignature. A
// trusted key that cannot be parsed is an error of its own.
func Verify(pubKeys [][]byte, data, sig []byte) (keyID string, trustedComment string, err error) {
	if len(pubKeys) == 0 {
		return "", "", errors.New("defs: no trusted public keys")
	}
	keys := make([]minisign.PublicKey, len(pubKeys))
	for i, pub := range pubKeys {
		if keys[i], err = parsePublicKey(pub); err != nil {
			return "", "", fmt.Errorf("defs: trusted key %d: %w", i+1, err)
		}
	}
	if len(sig) > maxSigSize {
		return "", "", fmt.Errorf("%w: signature file larger than %d bytes", ErrBadSignature, maxSigSize)
	}
	sig = signatureLines(sig)
	var s minisign.Signature
	if err := s.UnmarshalText(sig); err != nil {
		return "", "", fmt.Errorf("%w: malformed signature file: %v", ErrBadSignature, err)
	}
	keyID = keyIDString(s.KeyID)
	var trusted []string
	matched := false
	for _, k := range keys {
		if k.ID() != s.KeyID {
			trusted = append(trusted, keyIDString(k.ID()))
			continue
		}
		matched = true
		if minisign.Verify(k, data, sig) {
			return keyID, s.TrustedComment, nil
		}
	}
	if !matched {
		return keyID, "", fmt.Errorf("%w: signed by key %s, which is not a trusted key (trusted: %s)", ErrUnknownKey, keyID, strings.Join(trusted, ", "))
	}
	return keyID, "", fmt.Errorf("%w: key %s: the signature does not match the file or its trusted comment", ErrBadSignature, keyID)
}

// TrustedComment makes the trusted comment sclgate signs a bundle with:
// "sclgate-defs version=V file=NAME timestamp=UNIX". NAME is the file's base
// name with anything but letters, digits and "._+-" replaced by "_".
func TrustedComment(version, file string, t time.Time) string {
	if i := strings.LastIndexAny(file, `/\`); i >= 0 {
		file = file[i+1:]
	}
	return fmt.Sprintf("%sversion=%s file=%s timestamp=%d", trustedPrefix, field(version), field(file), t.Unix())
}

func field(s string) string {
	return strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf && (r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune("._+-", r)) {
			return r
		}
		return '_'
	}, s)
}

// ParseTrustedComment returns the key=value fields of a trusted comment
// made by TrustedComment; ok is false for any other comment (one made by
// minisign -S itself, say).
func ParseTrustedComment(s string) (fields map[string]string, ok bool) {
	rest, ok := strings.CutPrefix(s, trustedPrefix)
	if !ok {
		return nil, false
	}
	fields = map[string]string{}
	for _, kv := range strings.Fields(rest) {
		k, v, found := strings.Cut(kv, "=")
		if !found || k == "" {
			return nil, false
		}
		if _, dup := fields[k]; dup {
			return nil, false
		}
		fields[k] = v
	}
	return fields, true
}

// ReadVerified checks sig, a minisign signature of data by one of pubKeys,
// and only then reads data as a bundle (Read, with maxSize; DefaultMaxSize
// if ≤ 0). If the trusted comment is one TrustedComment made, its version
// must be the manifest's. It returns the bundle, the signing key's id and
// the trusted comment.
func ReadVerified(data, sig []byte, pubKeys [][]byte, maxSize int64) (b *Bundle, keyID, trustedComment string, err error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if int64(len(data)) > maxSize {
		return nil, "", "", fmt.Errorf("%w: larger than %d bytes", ErrFormat, maxSize)
	}
	keyID, trustedComment, err = Verify(pubKeys, data, sig)
	if err != nil {
		return nil, keyID, "", err
	}
	b, err = Read(bytes.NewReader(data), maxSize)
	if err != nil {
		return nil, keyID, trustedComment, err
	}
	if f, ok := ParseTrustedComment(trustedComment); ok {
		if v, ok := f["version"]; ok && v != b.Manifest.Version {
			return nil, keyID, trustedComment, fmt.Errorf("%w: the signature is for version %s, the bundle is version %s", ErrBadSignature, strconv.Quote(v), strconv.Quote(b.Manifest.Version))
		}
	}
	return b, keyID, trustedComment, nil
}

// VerifyFile is ReadVerified for the bundle in path and its signature in
// sigPath (path + ".minisig" if empty). Errors name the file.
func VerifyFile(path, sigPath string, pubKeys [][]byte) (b *Bundle, keyID, trustedComment string, err error) {
	if sigPath == "" {
		sigPath = path + ".minisig"
	}
	data, err := readFileMax(path, DefaultMaxSize, ErrFormat)
	if err != nil {
		return nil, "", "", err
	}
	sig, err := readFileMax(sigPath, maxSigSize, ErrBadSignature)
	if err != nil {
		return nil, "", "", err
	}
	// A signature file that is not one is that file's fault, not the
	// bundle's: name it.
	if err := new(minisign.Signature).UnmarshalText(signatureLines(sig)); err != nil {
		return nil, "", "", fmt.Errorf("defs: %s: %w: malformed signature file: %v", sigPath, ErrBadSignature, err)
	}
	b, keyID, trustedComment, err = ReadVerified(data, sig, pubKeys, DefaultMaxSize)
	if err != nil {
		return nil, keyID, trustedComment, fmt.Errorf("defs: %s: %w", path, err)
	}
	return b, keyID, trustedComment, nil
}

// signatureLines is a .minisig's four lines (untrusted comment,
// signature, trusted comment, global signature) without what follows
// them, which minisign itself ignores (a note appended by hand, a
// mailer's footer) and aead.dev/minisign refuses as bad base64.
func signatureLines(sig []byte) []byte {
	n, i := 0, 0
	for i < len(sig) {
		j := bytes.IndexByte(sig[i:], '\n')
		if j < 0 {
			return sig
		}
		i += j + 1
		if n++; n == 4 {
			return sig[:i]
		}
	}
	return sig
}
