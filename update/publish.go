package update

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sclgate/sclgate/defs"
	"github.com/sclgate/sclgate/safeio"
)

// Publish adds bundles to the update source directory dir: each is checked
// (it must read as a bundle), copied in under its conventional name and
// signed with privKey; then index.json is rebuilt from every bundle in dir
// and signed too. Every file is written to a temporary name and renamed, so
// a client reading the directory meanwhile sees the old index or the new
// one, and a bundle is in place before the index names it.
func Publish(dir string, privKey []byte, password string, bundles []string) (*Index, error) {
	return publish(dir, privKey, password, bundles, false)
}

// ErrRepublished: a version already in the source with other contents.
// Gateways that have it would keep the old one under the same name, and
// the fleet would run two models labelled alike.
var ErrRepublished = errors.New("already published with other contents: publish it under a new version (or -replace)")

// PublishReplacing is Publish that may replace the contents of a version
// already published.
func PublishReplacing(dir string, privKey []byte, password string, bundles []string) (*Index, error) {
	return publish(dir, privKey, password, bundles, true)
}

func publish(dir string, privKey []byte, password string, bundles []string, replace bool) (*Index, error) {
	// What the source already offers, by version: a published version
	// keeps its contents, also when its file was since removed.
	published := map[string]string{}
	b, ixErr := safeio.ReadFile(filepath.Join(dir, IndexFile), MaxIndexSize)
	if ixErr != nil && !errors.Is(ixErr, fs.ErrNotExist) {
		// Taken for no index, it would let a published version change.
		return nil, fmt.Errorf("publish: %w (fix or remove it first)", ixErr)
	}
	if errors.Is(ixErr, fs.ErrNotExist) {
		// A symbolic link whose target is gone (a source moved to another
		// disk) is an index we cannot read, not no index.
		ixPath := filepath.Join(dir, IndexFile)
		if target, err := os.Readlink(ixPath); err == nil {
			return nil, fmt.Errorf("publish: %s is a symbolic link to %s, which does not exist (fix or remove it first)", ixPath, target)
		}
	}
	if ixErr == nil {
		old, err := ParseIndex(b)
		if err != nil {
			return nil, fmt.Errorf("publish: %s: %w (fix or remove it first)", filepath.Join(dir, IndexFile), err)
		}
		for _, o := range old.Versions {
			published[o.Version] = strings.ToLower(o.SHA256)
		}
	}
	// All checked first, then all written: nothing is published when one
	// bundle is refused.
	type item struct {
		path, name string
		data, sig  []byte
	}
	var items []item
	inRun := map[string]string{}
	for _, path := range bundles {
		data, err := safeio.ReadFile(path, defs.DefaultMaxSize)
		if err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		b, err := defs.Read(bytesReader(data), defs.DefaultMaxSize)
		if err != nil {
			return nil, fmt.Errorf("publish: %s: %w", path, err)
		}
		v := b.Manifest.Version
		name := defs.FileName(v)
		sum := sha256.Sum256(data)
		same := hex.EncodeToString(sum[:])
		if old, err := safeio.ReadFile(filepath.Join(dir, name), defs.DefaultMaxSize); err == nil && !bytes.Equal(old, data) {
			same = ""
		}
		if was, ok := published[v]; !replace && (ok && was != same || same == "") {
			return nil, fmt.Errorf("publish: %s: version %s: %w", path, v, ErrRepublished)
		}
		// Two bundles of one version in one run: which would win?
		if was, ok := inRun[v]; ok && was != hex.EncodeToString(sum[:]) {
			return nil, fmt.Errorf("publish: %s: version %s is given twice, with other contents", path, v)
		}
		inRun[v] = hex.EncodeToString(sum[:])
		sig, err := defs.Sign(privKey, password, data, defs.TrustedComment(v, name, time.Now()))
		if err != nil {
			return nil, fmt.Errorf("publish: sign %s: %w", path, err)
		}
		items = append(items, item{path, name, data, sig})
	}
	// Made only now: a refused bundle leaves no empty source behind.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	for _, it := range items {
		if err := safeio.WriteFile(filepath.Join(dir, it.name), it.data, 0o644); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		if err := safeio.WriteFile(filepath.Join(dir, it.name+".minisig"), it.sig, 0o644); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
	}

	ix := &Index{Format: 1, Generated: time.Now().UTC().Truncate(time.Second)}
	files, _ := filepath.Glob(filepath.Join(dir, "sclgate-defs-*.tar.gz"))
	for _, f := range files {
		data, err := safeio.ReadFile(f, defs.DefaultMaxSize)
		if err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		b, err := defs.Read(bytesReader(data), defs.DefaultMaxSize)
		if err != nil {
			return nil, fmt.Errorf("publish: %s: %w", f, err)
		}
		if filepath.Base(f) != defs.FileName(b.Manifest.Version) {
			continue // not ours, or renamed by hand
		}
		sum := sha256.Sum256(data)
		ix.Versions = append(ix.Versions, Offer{
			Version: b.Manifest.Version, File: filepath.Base(f), Size: int64(len(data)),
			SHA256: hex.EncodeToString(sum[:]), Created: b.Manifest.Created, MinSclgate: b.Manifest.MinSclgate,
		})
	}
	out, _ := json.MarshalIndent(ix, "", "  ")
	ix, err := ParseIndex(out) // sorts newest first, and checks what we wrote
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	out, _ = json.MarshalIndent(ix, "", "  ")
	out = append(out, '\n')
	sig, err := defs.Sign(privKey, password, out, "sclgate-index generated="+ix.Generated.Format(time.RFC3339))
	if err != nil {
		return nil, fmt.Errorf("publish: sign index: %w", err)
	}
	// Signature first: a client that reads the new index with the old
	// signature fails safe (bad signature) and retries later.
	if err := safeio.WriteFile(filepath.Join(dir, IndexFile+".minisig"), sig, 0o644); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if err := safeio.WriteFile(filepath.Join(dir, IndexFile), out, 0o644); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	return ix, nil
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
