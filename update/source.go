package update

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sclgate/sclgate/safeio"
)

// ErrUnreachable: the source could not be read at all.
var ErrUnreachable = errors.New("update source unreachable")

// ErrNotFound: the source was reached, but it has no such file (HTTP 404
// or 410, or no such file in a directory source). That is not a network
// problem: the address is wrong, or what was published is incomplete.
var ErrNotFound = errors.New("no such file on the source")

// notFound is ErrNotFound for one file: where it was looked for, and how
// the source said it is not there ("HTTP 404 Not Found", "no such file").
type notFound struct{ where, how string }

func (e *notFound) Error() string        { return e.where + ": " + ErrNotFound.Error() + " (" + e.how + ")" }
func (e *notFound) Is(target error) bool { return target == ErrNotFound }

// Source is where definitions are published: static files.
type Source interface {
	// Open returns the file name from offset on, and its total size (-1
	// when unknown). A source that cannot seek returns the whole file and
	// offset 0 (the caller restarts the download).
	Open(ctx context.Context, name string, offset int64) (r io.ReadCloser, gotOffset, total int64, err error)
	String() string
}

// NewSource parses an updates.source: https://..., http://..., or a local
// directory (an offline or air-gapped install: copy the files over).
func NewSource(s string) (Source, error) {
	if s == "" {
		return nil, errors.New("update: no source given (updates.source or -source)")
	}
	scheme, _, isURL := strings.Cut(s, "://")
	if isURL && !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") {
		return nil, fmt.Errorf("update: source %q: unsupported scheme %q (want https://, http:// or a directory)", s, scheme)
	}
	if isURL {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("update: source %q: %w", s, err)
		}
		// The index's own URL names its directory: an admin copies the
		// link to index.json as often as the directory's.
		if path.Base(u.Path) == IndexFile {
			u.Path = path.Dir(u.Path)
		}
		if !strings.HasSuffix(u.Path, "/") {
			u.Path += "/"
		}
		return &httpSource{base: u, client: &http.Client{
			// Per-step deadlines come from the context; this only bounds
			// connection set-up so a black-holed host fails fast.
			Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				TLSHandshakeTimeout:   15 * time.Second,
				ResponseHeaderTimeout: 30 * time.Second,
			},
		}}, nil
	}
	st, err := os.Stat(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	if !st.IsDir() && filepath.Base(s) == IndexFile {
		// The index file's path names the source, its directory.
		s = filepath.Dir(s)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("update: source %s is not a directory: a source is the directory defs publish wrote (holding %s), or that %s; a bundle file is installed with sclgate update install FILE", s, IndexFile, IndexFile)
	}
	// Absolute, as a FILE install's origin is: status shows where a
	// version came from, whatever directory the command ran in.
	if abs, err := filepath.Abs(s); err == nil {
		s = abs
	}
	return dirSource(s), nil
}

type httpSource struct {
	base   *url.URL
	client *http.Client
}

func (h *httpSource) String() string { return h.base.String() }

func (h *httpSource) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, int64, error) {
	u := h.base.ResolveReference(&url.URL{Path: name})
	req, err := http.NewRequestWithContext(ctx, "GET", u.String(), nil)
	if err != nil {
		return nil, 0, 0, err
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%w: %s: %w", ErrUnreachable, u, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Body, 0, resp.ContentLength, nil
	case http.StatusPartialContent:
		total := int64(-1)
		if cr := resp.Header.Get("Content-Range"); cr != "" {
			if i := strings.LastIndexByte(cr, '/'); i >= 0 {
				total, _ = strconv.ParseInt(cr[i+1:], 10, 64)
			}
		}
		return resp.Body, offset, total, nil
	case http.StatusRequestedRangeNotSatisfiable:
		resp.Body.Close()
		// The partial file is as long as the whole or longer: start over.
		return h.Open(ctx, name, 0)
	case http.StatusNotFound, http.StatusGone:
		resp.Body.Close()
		return nil, 0, 0, &notFound{where: u.String(), how: "HTTP " + resp.Status}
	}
	resp.Body.Close()
	return nil, 0, 0, fmt.Errorf("%w: %s: HTTP %s", ErrUnreachable, u, resp.Status)
}

type dirSource string

func (d dirSource) String() string { return string(d) }

func (d dirSource) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, int64, error) {
	p := filepath.Join(string(d), name)
	// Not waited on if a FIFO: the updater would hang, and a reload and
	// the shutdown with it.
	f, st, err := safeio.Open(p, 0)
	var nr *safeio.NotRegularError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, 0, 0, &notFound{where: p, how: "no such file"}
	case errors.As(err, &nr):
		return nil, 0, 0, fmt.Errorf("%w: a directory source holds the files defs publish writes", err)
	case err != nil:
		return nil, 0, 0, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	if offset > 0 && offset < st.Size() {
		if _, err := f.Seek(offset, io.SeekStart); err == nil {
			return f, offset, st.Size(), nil
		}
	}
	return f, 0, st.Size(), nil
}

// fetchSmall reads a whole small file (index, signature) with a size cap.
func fetchSmall(ctx context.Context, src Source, name string, max int64) ([]byte, error) {
	r, _, _, err := src.Open(ctx, name, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s from %s is larger than %d bytes: %w", name, src, max, ErrTooLarge)
	}
	return b, nil
}
