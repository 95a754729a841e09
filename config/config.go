// Package config reads sclgate's YAML configuration.
//
// The defaults live in default.yaml, embedded in the binary, so sclgate runs
// with no file at all. A file given by the admin is decoded over them: every
// key is optional, and an unknown key is an error that names it, because a
// misspelt key silently ignored is a filter silently misconfigured.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"golang.org/x/net/idna"
	"io"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sclgate/sclgate/safeio"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"
)

//go:embed default.yaml
var defaultYAML []byte

// Default returns the embedded default configuration text.
func Default() []byte { return bytes.Clone(defaultYAML) }

// Config is the whole configuration. Field comments are in default.yaml.
type Config struct {
	Listen          string        `yaml:"listen"`
	Hostname        string        `yaml:"hostname"`
	AcceptedDomains []string      `yaml:"accepted_domains"`
	TrustedNetworks []string      `yaml:"trusted_networks"`
	Downstream      string        `yaml:"downstream"`
	DownstreamTLS   DownstreamTLS `yaml:"downstream_tls"`
	ProxyProtocol   []string      `yaml:"proxy_protocol"`
	SMTP            SMTP          `yaml:"smtp"`
	TLS             TLS           `yaml:"tls"`
	Auth            Auth          `yaml:"auth"`
	Limits          Limits        `yaml:"limits"`
	Filter          Filter        `yaml:"filter"`
	Archive         Archive       `yaml:"archive"`
	Metrics         Metrics       `yaml:"metrics"`
	Definitions     Definitions   `yaml:"definitions"`
	Updates         Updates       `yaml:"updates"`

	// Source is the file this came from ("" for the embedded defaults).
	Source string `yaml:"-"`
	// Trusted and ProxyFrom are TrustedNetworks and ProxyProtocol parsed.
	Trusted   []netip.Prefix `yaml:"-"`
	ProxyFrom []netip.Prefix `yaml:"-"`
}

type SMTP struct {
	BareLF string `yaml:"bare_lf"`
}

// What smtp.bare_lf may say.
const (
	BareLFReject    = "reject"
	BareLFNormalize = "normalize"
)

type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// DownstreamTLS is how sclgate uses STARTTLS towards an SMTP or LMTP
// downstream, with the levels of Postfix's smtp_tls_security_level.
type DownstreamTLS struct {
	Mode       string `yaml:"mode"`
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
}

// What downstream_tls.mode may say.
const (
	// TLSNone: plaintext, STARTTLS never tried.
	TLSNone = "none"
	// TLSMay: STARTTLS when the downstream offers it, its certificate
	// not checked (RFC 7435's opportunistic security); plaintext when it
	// is not offered or fails.
	TLSMay = "may"
	// TLSEncrypt: STARTTLS required, the certificate not checked.
	TLSEncrypt = "encrypt"
	// TLSVerify: STARTTLS required, the certificate checked against
	// ca_file (or the system's roots) and server_name (or the
	// downstream's host).
	TLSVerify = "verify"
)

type Auth struct {
	Users map[string]string `yaml:"users"`
}

type Limits struct {
	MaxMessageBytes     int64         `yaml:"max_message_bytes"`
	MaxRecipients       int           `yaml:"max_recipients"`
	MaxHeaderBytes      int           `yaml:"max_header_bytes"`
	MaxErrors           int           `yaml:"max_errors"`
	MaxConnections      int           `yaml:"max_connections"`
	MaxConnectionsPerIP int           `yaml:"max_connections_per_ip"`
	CommandTimeout      time.Duration `yaml:"command_timeout"`
	DataTimeout         time.Duration `yaml:"data_timeout"`
	DataBlockTimeout    time.Duration `yaml:"data_block_timeout"`
	MinDataRate         int           `yaml:"min_data_rate"`
	DownstreamTimeout   time.Duration `yaml:"downstream_timeout"`
	DownstreamIdle      time.Duration `yaml:"downstream_idle"`
	ShutdownTimeout     time.Duration `yaml:"shutdown_timeout"`
}

type Filter struct {
	Classifier          string        `yaml:"classifier"`
	ClassifierTimeout   time.Duration `yaml:"classifier_timeout"`
	ClassifierFailure   string        `yaml:"classifier_failure"`
	WeightsFile         string        `yaml:"weights_file"`
	GatewayThreshold    int           `yaml:"gateway_threshold"`
	GatewayAction       string        `yaml:"gateway_action"`
	StoreThreshold      int           `yaml:"store_threshold"`
	FilterAuthenticated bool          `yaml:"filter_authenticated"`
	ExchangeSCLHeader   bool          `yaml:"exchange_scl_header"`
}

type Archive struct {
	Dir       string `yaml:"dir"`
	StoreSCL  bool   `yaml:"store_scl"`
	Retention Days   `yaml:"retention"`
	// ReleasedRetention is retention for released/, whose messages were
	// delivered on release: 0 keeps them.
	ReleasedRetention Days       `yaml:"released_retention"`
	Web               ArchiveWeb `yaml:"web"`
}

type ArchiveWeb struct {
	Listen string            `yaml:"listen"`
	Users  map[string]string `yaml:"users"`
}

// Days is a duration that may also be written in days ("30d"), as
// retention periods are; "0" is zero.
type Days time.Duration

func (d *Days) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDays(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Days(v)
	return nil
}

// maxDays bounds an age in days: 100 years.
const maxDays = 36500

// ParseDays parses "30d", "36h", "90m" or "0".
func ParseDays(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" || s == "" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("%q is not a number of days such as 30d", s)
		}
		if days > maxDays {
			// More would overflow time.Duration, into a short age.
			return 0, fmt.Errorf("%q: at most %dd (100 years)", s, maxDays)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration such as 30d or 36h", s)
	}
	return d, nil
}

type Metrics struct {
	Listen string `yaml:"listen"`
}

type Definitions struct {
	Dir string `yaml:"dir"`
}

type Updates struct {
	Enabled     bool     `yaml:"enabled"`
	Source      string   `yaml:"source"`
	TrustedKeys []string `yaml:"trusted_keys"`
	Interval    Days     `yaml:"interval"`
}

// What filter.classifier_failure may say.
const (
	FailureFallback = "fallback"
	FailureTempfail = "tempfail"
)

// Gateway actions.
const (
	ActionArchive = "archive"
	ActionDelete  = "delete"
	ActionReject  = "reject"
	ActionNone    = "none"
)

// Load reads path over the embedded defaults and validates the result.
// An empty path means the defaults alone.
func Load(path string) (*Config, error) {
	if path == "" {
		return Parse("", nil)
	}
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// maxFileSize bounds what is read of a configuration file: a real one is
// a few KiB, and a wrong path (a log file, /dev/zero) must not eat memory.
const maxFileSize = 16 << 20

// readFile reads the configuration file. A FIFO in its place is refused
// rather than waited on: SIGHUP's reload, and the shutdown behind it,
// would hang.
func readFile(path string) ([]byte, error) { return safeio.ReadFile(path, maxFileSize) }

// Parse decodes data (named name in errors) over the embedded defaults and
// validates the result.
func Parse(name string, data []byte) (*Config, error) {
	c := &Config{Source: name}
	if err := decode(c, defaultYAML); err != nil {
		return nil, fmt.Errorf("config: embedded defaults: %w", err) // a build bug
	}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := decode(c, data); err != nil {
			return nil, fmt.Errorf("config: %s: %w", name, err)
		}
	}
	if errs := c.validate(); len(errs) > 0 {
		if name == "" {
			name = "embedded defaults"
		}
		// Each problem with the line of the key it names, when the file
		// sets that key ("line 7: filter.gateway_action: ..."); a value
		// that comes from the defaults has no line in the file.
		for i, e := range errs {
			var path []string
			var ke *keyError
			if errors.As(e, &ke) {
				path = ke.path
			} else if m := keyPathRE.FindStringSubmatch(e.Error()); m != nil {
				path = strings.Split(m[1], ".")
			}
			if n := keyLine(data, path); n > 0 {
				errs[i] = fmt.Errorf("line %d: %w", n, e)
			}
		}
		return nil, fmt.Errorf("config: %s: %w", name, errors.Join(errs...))
	}
	return c, nil
}

var keyPathRE = regexp.MustCompile(`^([a-z_]+(?:\.[^\s:]+)*)[: ]`)

// Where names the place of the key at path in the configuration file c
// was read from, for errors found after loading (a directory that cannot
// be opened): "config: FILE: line N: a.b" (no line when the file does not
// set the key: its value is a default).
func (c *Config) Where(path ...string) string {
	if c.Source == "" {
		return "config: embedded defaults: " + strings.Join(path, ".")
	}
	data, _ := readFile(c.Source)
	if n := keyLine(data, path); n > 0 {
		return fmt.Sprintf("config: %s: line %d: %s", c.Source, n, strings.Join(path, "."))
	}
	return fmt.Sprintf("config: %s: %s", c.Source, strings.Join(path, "."))
}

// keyError is a validation error about a key whose path the message
// cannot be split back into (a user name may hold dots, spaces, colons).
type keyError struct {
	path []string
	msg  string
}

func (e *keyError) Error() string { return strings.Join(e.path, ".") + ": " + e.msg }

// keyLine is the line of data where the key at path
// ("filter", "gateway_action") is set, or 0. Read from a message's
// dotted prefix, a segment may itself hold dots (a user name): at each
// level the longest run of segments that is a key there is taken.
func keyLine(data []byte, segs []string) int {
	if len(segs) == 0 || len(data) == 0 {
		return 0
	}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return 0
	}
	n := doc.Content[0]
	line := 0
walk:
	for len(segs) > 0 {
		if n.Kind != yaml.MappingNode {
			break
		}
		for k := len(segs); k >= 1; k-- {
			key := strings.Join(segs[:k], ".")
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == key {
					line = n.Content[i].Line
					n, segs = n.Content[i+1], segs[k:]
					continue walk
				}
			}
		}
		break
	}
	if len(segs) > 0 {
		return 0 // the key is not in the file: its value is a default
	}
	return line
}

func decode(c *Config, data []byte) error {
	d := yaml.NewDecoder(bytes.NewReader(data))
	d.KnownFields(true)
	err := d.Decode(c)
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err == nil {
		// A further document ("---") that sets something would be
		// ignored: what it sets would silently not apply. Empty or
		// comment-only ones (templates, concatenated files) are fine.
		for {
			var next yaml.Node
			derr := d.Decode(&next)
			if errors.Is(derr, io.EOF) {
				break
			}
			if derr != nil {
				return errors.New(strings.TrimPrefix(derr.Error(), "yaml: "))
			}
			if !emptyDocument(&next) {
				return fmt.Errorf("line %d: a further YAML document (after ---) that sets something; the configuration is one document", next.Line)
			}
		}
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		// yaml.v3 says "field X not found in type config.Filter"; say it
		// in the admin's words, one problem per line.
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = withKey(sectionNames.Replace(m), data)
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
}

// emptyDocument reports whether a YAML document node sets nothing: no
// content, a null or empty scalar ("---" alone, "--- ~", `--- ""`) or an
// empty mapping or list ("--- {}", "--- []").
func emptyDocument(n *yaml.Node) bool {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return true
		}
		n = n.Content[0]
	}
	switch n.Kind {
	case 0:
		return true
	case yaml.ScalarNode:
		return n.Tag == "!!null" || n.Value == ""
	case yaml.MappingNode, yaml.SequenceNode:
		return len(n.Content) == 0
	}
	return false
}

var lineRE = regexp.MustCompile(`^line (\d+): cannot unmarshal`)

// withKey names the key of a "line N: cannot unmarshal ..." error, which
// yaml.v3 leaves out: "line 3 (command_timeout): cannot unmarshal ...".
func withKey(msg string, data []byte) string {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	n, _ := strconv.Atoi(m[1])
	lines := strings.Split(string(data), "\n")
	if n < 1 || n > len(lines) {
		return msg
	}
	key, rest, ok := strings.Cut(strings.TrimLeft(lines[n-1], " \t-"), ":")
	if !ok || key == "" || strings.ContainsAny(key, " \t\"'{") || strings.ContainsAny(rest, "{[") {
		return msg
	}
	return strings.Replace(msg, "line "+m[1]+":", "line "+m[1]+" ("+key+"):", 1)
}

var sectionNames = strings.NewReplacer(
	"not found in type config.Config", "is not a known key",
	"not found in type config.Filter", "is not a known key in section filter",
	"not found in type config.Limits", "is not a known key in section limits",
	"not found in type config.TLS", "is not a known key in section tls",
	"not found in type config.SMTP", "is not a known key in section smtp",
	"not found in type config.Auth", "is not a known key in section auth",
	// ArchiveWeb before Archive: the first that matches is used.
	"not found in type config.ArchiveWeb", "is not a known key in section archive.web",
	"not found in type config.Archive", "is not a known key in section archive",
	"not found in type config.Metrics", "is not a known key in section metrics",
	"not found in type config.Definitions", "is not a known key in section definitions",
	"not found in type config.Updates", "is not a known key in section updates",
	"time.Duration", "a duration (such as 30s or 5m)",
)

// validate returns every problem with c, each message beginning with the
// key it is about.
func (c *Config) validate() []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if err := checkListen(c.Listen); err != nil {
		bad("listen: %q: %v", c.Listen, err)
	}
	if c.Metrics.Listen != "" {
		if err := checkListen(c.Metrics.Listen); err != nil {
			bad("metrics.listen: %q: %v", c.Metrics.Listen, err)
		}
	}
	if c.Archive.Web.Listen != "" {
		if err := checkListen(c.Archive.Web.Listen); err != nil {
			bad("archive.web.listen: %q: %v", c.Archive.Web.Listen, err)
		}
	}
	// The name goes into the greeting, EHLO to the downstream and every
	// Received field: one DNS-like token, nothing that could end a line.
	if h := c.Hostname; h != "" && !validHostname(h) {
		bad("hostname: %q is not a host name (letters, digits, '-', '.', '_')", h)
	}
	for i, d := range c.AcceptedDomains {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if d == "" || strings.ContainsAny(d, "@ \t/") {
			bad("accepted_domains: %q is not a domain", c.AcceptedDomains[i])
		}
		// An internationalised domain is kept in A-labels (xn--...),
		// the form every recipient domain is compared in: mail without
		// SMTPUTF8 spells it so, and one in U-labels is converted.
		if strings.ContainsFunc(d, func(r rune) bool { return r >= utf8.RuneSelf }) {
			if a, err := idna.Lookup.ToASCII(d); err != nil {
				bad("accepted_domains: %q is not a domain: %v", c.AcceptedDomains[i], err)
			} else {
				d = a
			}
		}
		c.AcceptedDomains[i] = d
	}
	var err error
	if c.Trusted, err = parsePrefixes(c.TrustedNetworks); err != nil {
		bad("trusted_networks: %v", err)
	}
	if c.ProxyFrom, err = parsePrefixes(c.ProxyProtocol); err != nil {
		bad("proxy_protocol: %v", err)
	}
	ds, err := ParseDownstream(c.Downstream)
	if err != nil {
		bad("downstream: %v", err)
	}
	switch t := c.DownstreamTLS; t.Mode {
	case TLSNone, TLSMay:
	case TLSEncrypt, TLSVerify:
		// Required TLS that can never happen would defer every
		// message; say so now.
		if err == nil && ds.Network != "tcp" {
			bad("downstream_tls.mode: %s needs an smtp:// or lmtp://host:port downstream (%q carries no TLS)", t.Mode, c.Downstream)
		}
	default:
		bad("downstream_tls.mode: %q is not none, may, encrypt or verify", t.Mode)
	}
	if t := c.DownstreamTLS; t.Mode != TLSVerify {
		// Set with another mode they would check nothing: an admin
		// who wrote them expects a check.
		if t.CAFile != "" {
			bad("downstream_tls.ca_file: used only with mode: verify (mode is %q)", t.Mode)
		}
		if t.ServerName != "" {
			bad("downstream_tls.server_name: used only with mode: verify (mode is %q)", t.Mode)
		}
	}
	if n := c.DownstreamTLS.ServerName; n != "" && !validHostname(n) {
		if _, err := netip.ParseAddr(n); err != nil {
			bad("downstream_tls.server_name: %q is not a host name or address", n)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls: cert_file and key_file go together")
	}
	if len(c.Auth.Users) > 0 && c.TLS.CertFile == "" {
		bad("auth.users needs tls: AUTH is only offered after STARTTLS")
	}
	for u, h := range c.Auth.Users {
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			errs = append(errs, &keyError{[]string{"auth", "users", u}, fmt.Sprintf("not a bcrypt hash: %v", err)})
		}
	}
	l := c.Limits
	if c.SMTP.BareLF != BareLFReject && c.SMTP.BareLF != BareLFNormalize {
		bad("smtp.bare_lf: %q is not reject or normalize", c.SMTP.BareLF)
	}
	for _, n := range []struct {
		key string
		v   int64
	}{{"max_message_bytes", l.MaxMessageBytes}, {"max_recipients", int64(l.MaxRecipients)}, {"max_header_bytes", int64(l.MaxHeaderBytes)},
		{"max_errors", int64(l.MaxErrors)}, {"max_connections", int64(l.MaxConnections)}, {"max_connections_per_ip", int64(l.MaxConnectionsPerIP)}} {
		if n.v <= 0 {
			bad("limits.%s: %d; must be positive", n.key, n.v)
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"command_timeout", l.CommandTimeout}, {"data_timeout", l.DataTimeout}, {"data_block_timeout", l.DataBlockTimeout},
		{"downstream_timeout", l.DownstreamTimeout}, {"shutdown_timeout", l.ShutdownTimeout}} {
		if d.v <= 0 {
			bad("limits.%s: %v; must be a positive duration such as 30s or 5m", d.key, d.v)
		}
	}
	if l.MinDataRate < 0 {
		bad("limits.min_data_rate: %d; must be 0 (off) or bytes per second", l.MinDataRate)
	}
	if l.DownstreamIdle < 0 {
		bad("limits.downstream_idle: must be 0 (no reuse) or a positive duration such as 5s")
	}
	f := c.Filter
	if f.GatewayThreshold < 1 || f.GatewayThreshold > 9 {
		bad("filter.gateway_threshold: %d is not within 1..9", f.GatewayThreshold)
	}
	if f.StoreThreshold < 0 || f.StoreThreshold > 9 {
		bad("filter.store_threshold: %d is not within 0..9", f.StoreThreshold)
	}
	switch f.GatewayAction {
	case ActionArchive, ActionDelete, ActionReject, ActionNone:
	default:
		bad("filter.gateway_action: %q is not archive, delete, reject or none", f.GatewayAction)
	}
	if f.ClassifierTimeout <= 0 {
		bad("filter.classifier_timeout: must be a positive duration")
	}
	if f.ClassifierFailure != FailureFallback && f.ClassifierFailure != FailureTempfail {
		bad("filter.classifier_failure: %q is not fallback or tempfail", f.ClassifierFailure)
	}
	if time.Duration(c.Updates.Interval) < time.Minute {
		bad("updates.interval: %v is shorter than a minute", time.Duration(c.Updates.Interval))
	}
	if scheme, _, ok := strings.Cut(c.Updates.Source, "://"); ok && !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") {
		bad("updates.source: %q: unsupported scheme %q (want https://, http:// or a directory)", c.Updates.Source, scheme)
	}
	if c.Updates.Enabled && (c.Updates.Source == "" || len(c.Updates.TrustedKeys) == 0) {
		bad("updates.enabled needs updates.source and updates.trusted_keys")
	}
	if c.Archive.Web.Listen != "" {
		// Its address was checked with the other listeners above.
		if c.Archive.Dir == "" {
			bad("archive.web.listen needs archive.dir")
		}
		if len(c.Archive.Web.Users) == 0 {
			bad("archive.web.listen needs archive.web.users: the page requires a login")
		}
	}
	for u, h := range c.Archive.Web.Users {
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			errs = append(errs, &keyError{[]string{"archive", "web", "users", u}, fmt.Sprintf("not a bcrypt hash: %v", err)})
		}
	}
	if d := c.Definitions.Dir; d != "" && f.WeightsFile != "" {
		// Updates replace what is in definitions.dir; the admin's own
		// list must never be among it.
		if inside(d, f.WeightsFile) {
			bad("filter.weights_file: %s is inside definitions.dir %s; keep the custom weight list outside it", f.WeightsFile, d)
		}
	}
	if f.GatewayAction == ActionArchive && c.Archive.Dir == "" {
		bad("archive.dir: needed when filter.gateway_action is archive")
	}
	return errs
}

// checkListen checks a host:port to listen on: the port a number from 0
// to 65535 (or a service name), which net.SplitHostPort alone does not.
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("port %q: %v", port, err)
	}
	return nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// Downstream is a parsed downstream address.
type Downstream struct {
	Scheme  string // "smtp", "lmtp" or "maildir"
	Network string // "tcp" or "unix" (smtp, lmtp)
	Address string // host:port, socket path, or Maildir directory
}

// ParseDownstream parses smtp://host:port, lmtp://host:port,
// lmtp:/path/to/socket or maildir:DIR.
func ParseDownstream(s string) (Downstream, error) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || rest == "" {
		return Downstream{}, fmt.Errorf("%q: want smtp://host:port, lmtp://host:port, lmtp:/socket or maildir:DIR", s)
	}
	switch scheme {
	case "maildir":
		return Downstream{Scheme: scheme, Address: rest}, nil
	case "smtp", "lmtp":
		if !strings.HasPrefix(rest, "//") {
			if scheme == "lmtp" && strings.HasPrefix(rest, "/") {
				return Downstream{Scheme: scheme, Network: "unix", Address: rest}, nil
			}
			return Downstream{}, fmt.Errorf("%q: want %s://host:port", s, scheme)
		}
		u, err := url.Parse(s)
		if err != nil {
			return Downstream{}, fmt.Errorf("%q: %v", s, err)
		}
		if u.Port() == "" || u.Hostname() == "" {
			return Downstream{}, fmt.Errorf("%q: host and port are required", s)
		}
		if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
			// Else every message would fail over at its first dial.
			return Downstream{}, fmt.Errorf("%q: port %q: want a number from 1 to 65535", s, u.Port())
		}
		return Downstream{Scheme: scheme, Network: "tcp", Address: u.Host}, nil
	}
	return Downstream{}, fmt.Errorf("%q: unknown scheme %q (want smtp, lmtp or maildir)", s, scheme)
}

// inside says whether file is dir or under it, comparing absolute paths
// with symbolic links resolved as far as they exist (one path may be
// relative and the other not, or reach the same place through a link).
func inside(dir, file string) bool {
	resolve := func(p string) string {
		p, err := filepath.Abs(p)
		if err != nil {
			return filepath.Clean(p)
		}
		// Resolve the longest existing prefix: the file itself may not
		// exist yet.
		rest := ""
		for q := p; ; {
			if r, err := filepath.EvalSymlinks(q); err == nil {
				return filepath.Join(r, rest)
			}
			parent := filepath.Dir(q)
			if parent == q {
				return p
			}
			rest = filepath.Join(filepath.Base(q), rest)
			q = parent
		}
	}
	rel, err := filepath.Rel(resolve(dir), resolve(file))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
