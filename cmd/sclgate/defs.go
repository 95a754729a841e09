package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/sclgate/sclgate/defs"
	"github.com/sclgate/sclgate/safeio"
	"github.com/sclgate/sclgate/scorer"
	"github.com/sclgate/sclgate/update"
)

const defsUsage = `Usage:
  sclgate defs keygen -out NAME [-nopass]        write NAME.key and NAME.pub (minisign formats)
  sclgate defs sign   -key NAME.key [-nopass] BUNDLE
                                                 write BUNDLE.minisig
  sclgate defs verify -pub NAME.pub [-pub ...] [-P KEY ...] [-sig FILE] BUNDLE
                                                 check BUNDLE's signature and content
  sclgate defs info   [-json] [BUNDLE]           print the manifest and calibration table
                                                 (no BUNDLE: the built-in definitions)
  sclgate defs publish -key NAME.key [-nopass] [-replace] -dir DIR BUNDLE...
                                                 add bundles to an update source directory
  sclgate defs train  -ham DIR... -spam DIR... -o FILE [-seed N] [-version V] [-ham-weight W]
                      [-min-sclgate V] [-bits N] [-workers N]
                                                 build definitions from a corpus
  sclgate defs eval   [-defs BUNDLE] -ham DIR... -spam DIR... [-json] [-plot FILE.svg]
                                                 evaluate definitions on a corpus

The secret key's password comes from SCLGATE_KEY_PASSWORD, or is asked for
on the terminal; -nopass means none (an unencrypted key, as minisign -G -W
makes).
`

// passwordEnv holds the secret key's password for keygen and sign.
const passwordEnv = "SCLGATE_KEY_PASSWORD"

// cmdDefs implements "sclgate defs": definitions bundles.
func cmdDefs(e env, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, defsUsage)
		return 2
	}
	switch args[0] {
	case "keygen":
		return defsKeygen(e, args[1:])
	case "sign":
		return defsSign(e, args[1:])
	case "verify":
		return defsVerify(e, args[1:])
	case "info":
		return defsInfo(e, args[1:])
	case "publish":
		return defsPublish(e, args[1:])
	case "train":
		return defsTrain(e, args[1:])
	case "eval":
		return defsEval(e, args[1:])
	case "help", "-h", "-help", "--help":
		fmt.Fprint(e.stdout, defsUsage)
		return 0
	}
	fmt.Fprintf(e.stderr, "sclgate defs: unknown command %q\n\n%s", args[0], defsUsage)
	return 2
}

// defsKeygen implements "sclgate defs keygen -out NAME [-nopass]".
func defsKeygen(e env, args []string) int {
	fs := flag.NewFlagSet("defs keygen", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	out := fs.String("out", "", "write `NAME`.key (secret) and NAME.pub (public)")
	nopass := fs.Bool("nopass", false, "leave the secret key unencrypted (for automation)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: sclgate defs keygen -out NAME [-nopass]")
		fmt.Fprintf(e.stderr, "The password is taken from %s, else asked for on the terminal (twice); -nopass stores the key unencrypted.\n", passwordEnv)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err, 2)
	}
	if *out == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	// "-out publisher.key" names the pair by its secret half: the files
	// are publisher.key and publisher.pub, not publisher.key.key.
	name := strings.TrimSuffix(strings.TrimSuffix(*out, ".key"), ".pub")
	keyPath, pubPath := name+".key", name+".pub"
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			fmt.Fprintf(e.stderr, "sclgate defs keygen: %s exists: not overwriting it\n", p)
			return 1
		}
	}
	password := ""
	if *nopass && os.Getenv(passwordEnv) != "" {
		fmt.Fprintf(e.stderr, "sclgate defs keygen: -nopass: %s is ignored, the secret key is stored unencrypted\n", passwordEnv)
	}
	if !*nopass {
		var ok bool
		prompted := false
		if password, ok = os.LookupEnv(passwordEnv); !ok || password == "" {
			password, ok = promptPassword(e, "Password for the new secret key: ", true)
			prompted = true
		}
		if prompted && !ok && isTerminal(e.stdin) {
			return 1 // the two passwords differed, or none was read: said so
		}
		if !ok || password == "" {
			fmt.Fprintf(e.stderr, "sclgate defs keygen: the secret key needs a password: set %s, or use -nopass for an unencrypted key\n", passwordEnv)
			return 2
		}
	}
	pub, priv, err := defs.GenerateKey(password)
	if err != nil {
		fmt.Fprintln(e.stderr, "sclgate defs keygen:", err)
		return 1
	}
	if err := writeNewFile(keyPath, priv, 0o600); err != nil {
		fmt.Fprintln(e.stderr, "sclgate defs keygen:", err)
		return 1
	}
	if err := writeNewFile(pubPath, pub, 0o644); err != nil {
		os.Remove(keyPath)
		fmt.Fprintln(e.stderr, "sclgate defs keygen:", err)
		return 1
	}
	id, _ := defs.PublicKeyID(pub)
	kind := "encrypted"
	if password == "" {
		kind = "unencrypted"
	}
	fmt.Fprintf(e.stdout, "wrote %s (secret key, %s: keep it safe) and %s (public key %s)\n", keyPath, kind, pubPath, id)
	return 0
}

// writeNewFile creates path, which must not exist, with data.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// defsSign implements "sclgate defs sign -key NAME.key [-nopass] BUNDLE".
func defsSign(e env, args []string) int {
	fs := flag.NewFlagSet("defs sign", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	keyFile := fs.String("key", "", "minisign secret key `FILE`")
	nopass := fs.Bool("nopass", false, "the key has no password (ignore "+passwordEnv+")")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: sclgate defs sign -key NAME.key [-nopass] BUNDLE")
		fmt.Fprintf(e.stderr, "Writes BUNDLE.minisig. An encrypted key's password is taken from %s, else asked for on the terminal.\n", passwordEnv)
		fs.PrintDefaults()
	}
	if err := fs.Parse(reorderFlags(fs, args)); err != nil {
		return flagExit(err, 2)
	}
	if *keyFile == "" || fs.NArg() != 1 {
		switch {
		case *keyFile == "":
			fmt.Fprintln(e.stderr, "sclgate defs sign: -key FILE is required")
		case fs.NArg() == 0:
			fmt.Fprintln(e.stderr, "sclgate defs sign: BUNDLE is missing")
		default:
			fmt.Fprintf(e.stderr, "sclgate defs sign: one BUNDLE at a time (%d given)\n", fs.NArg())
		}
		fs.Usage()
		return 2
	}
	bundle := fs.Arg(0)
	priv, err := safeio.ReadFile(*keyFile, 64<<10)
	if err != nil {
		fmt.Fprintln(e.stderr, "sclgate defs sign:", err)
		return 1
	}
	// Sign exactly the bytes that were checked, and only a bundle that
	// every gateway will accept.
	data, err := safeio.ReadFile(bundle, defs.DefaultMaxSize)
	if err != nil {
		fmt.Fprintln(e.stderr, "sclgate defs sign:", err)
		return 1
	}
	b, err := defs.Read(bytes.NewReader(data), defs.DefaultMaxSize)
	if err != nil {
		fmt.Fprintf(e.stderr, "sclgate defs sign: %s: %v\n", bundle, err)
		return 1
	}
	if err := signable(b); err != nil {
		// Signed, it would be refused by defs verify and by every
		// gateway's install.
		fmt.Fprintf(e.stderr, "sclgate defs sign: %s: not signed: %v\n", bundle, err)
		return 1
	}
	password, ok := signingPassword(e, "sign", *keyFile, priv, *nopass)
	if !ok {
		return 1
	}
	comment := defs.TrustedComment(b.Manifest.Version, bundle, time.Now())
	sig, err := defs.Sign(priv, password, data, comment)
	if err != nil {
		fmt.Fprintf(e.stderr, "sclgate defs sign: %s: %v\n", *keyFile, err)
		if errors.Is(err, defs.ErrNoPassword) {
			fmt.Fprintf(e.stderr, "sclgate defs sign: set %s to the key's password\n", passwordEnv)
		}
		return 1
	}
	if err := writeOutput(bundle+".minisig", sig, 0o644); err != nil {
		fmt.Fprintln(e.stderr, "sclgate defs sign:", err)
		return 1
	}
	fmt.Fprintf(e.stdout, "wrote %s.minisig, trusted comment: %s\n", bundle, comment)
	return 0
}

// defsVerify implements "sclgate defs verify -pub NAME.pub BUNDLE".
func defsVerify(e env, args []string) int {
	fs := flag.NewFlagSet("defs verify", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var keys [][]byte
	var pubFiles []string
	fs.Func("pub", "trusted public key `FILE` (minisign .pub; repeat for several)", func(s string) error {
		pubFiles = append(pubFiles, s)
		return nil
	})
	fs.Func("P", "trusted public `KEY` in base64, as minisign -P takes it (repeatable)", func(s string) error {
		keys = append(keys, []byte(s))
		return nil
	})
	sigFile := fs.String("sig", "", "signature `FILE` (default: BUNDLE.minisig)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: sclgate defs verify -pub NAME.pub [-pub ...] [-P KEY ...] [-sig FILE] BUNDLE")
		fs.PrintDefaults()
	}
	if err := fs.Parse(reorderFlags(fs, args)); err != nil {
		return flagExit(err, 2)
	}
	if len(pubFiles)+len(keys) == 0 || fs.NArg() != 1 {
		switch {
		case len(pubFiles)+len(keys) == 0:
			fmt.Fprintln(e.stderr, "sclgate defs verify: -pub FILE (or -P KEY) is required")
		case fs.NArg() == 0:
			fmt.Fprintln(e.stderr, "sclgate defs verify: BUNDLE is missing")
		default:
			fmt.Fprintf(e.stderr, "sclgate defs verify: one BUNDLE at a time (%d given)\n", fs.NArg())
		}
		fs.Usage()
		return 2
	}
	for i, k := range keys {
		if _, err := defs.PublicKeyID(k); err != nil {
			fmt.Fprintf(e.stderr, "sclgate defs verify: -P key %d: not a minisign public key: %v\n", i+1, err)
			return 1
		}
	}
	for _, p := range pubFiles {
		k, err := safeio.ReadFile(p, 64<<10)
		if err != nil {
			fmt.Fprintln(e.stderr, "sclgate defs verify:", err)
			return 1
		}
		if _, err := defs.PublicKeyID(k); err != nil {
			fmt.Fprintf(e.stderr, "sclgate defs verify: %s: not a minisign public key (a .pub file): %v\n", printable(p), err)
			return 1
		}
		keys = append(keys, k)
	}
	b, id, comment, err := defs.VerifyFile(fs.Arg(0), *sigFile, keys)
	if err != nil {
		fmt.Fprintln(e.stderr, "sclgate defs verify:", err)
		return 1
	}
	// The signature is the publisher's word; the content must also be
	// usable: a model this build loads, whose calibration is the table
	// the manifest shows.
	if err := checkContent(b); err != nil {
		fmt.Fprintf(e.stderr, "sclgate defs verify: %s: signed by key %s, but %v\n", printable(fs.Arg(0)), id, err)
		return 1
	}
	fmt.Fprintf(e.stdout, "OK: signed by key %s, %s\n", id, printable(comment))
	return 0
}

// defsInfo implements "sclgate defs info [-json] [BUNDLE]".
func defsInfo(e env, args []string) int {
	fs := flag.NewFlagSet("defs info", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	asJSON := fs.Bool("json", false, "print the manifest as JSON")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: sclgate defs info [-json] [BUNDLE]   (no BUNDLE: the built-in definitions)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(reorderFlags(fs, args)); err != nil {
		return flagExit(err, 2)
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	// Without a bundle, the built-in definitions, as for eval and scan.
	path, b, err := "built in", (*defs.Bundle)(nil), error(nil)
	if fs.NArg() == 1 {
		path = fs.Arg(0)
		b, err = defs.ReadFile(path)
	} else {
		b, err = defs.Read(bytes.NewReader(defs.Builtin()), defs.DefaultMaxSize)
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "sclgate defs info:", err)
		return 1
	}
	m := b.Manifest
	// The table is the manifest's word: said plainly when it is not the
	// model's, or when this sclgate cannot use the model at all, since the
	// admin picks a threshold from it (after the output, either form).
	contentWarning := func() int {
		if fs.NArg() == 1 {
			if err := checkContent(b); err != nil {
				fmt.Fprintf(e.stderr, "sclgate defs info: %s: warning: %v\n", printable(path), err)
				return 1
			}
		}
		return 0
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		enc.Encode(m)
		return contentWarning()
	}

	w := e.stdout
	minSclgate := m.MinSclgate
	if minSclgate == "" {
		minSclgate = "any"
	}
	fmt.Fprintf(w, "bundle:         %s\n", printable(path))
	fmt.Fprintf(w, "format:         %d\n", m.FormatVersion)
	fmt.Fprintf(w, "version:        %s\n", m.Version)
	fmt.Fprintf(w, "created:        %s\n", m.Created.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "min sclgate:    %s\n", minSclgate)
	for i, line := range strings.Split(printable(m.TrainingData), "\n") {
		label := "training data:  "
		if i > 0 {
			label = strings.Repeat(" ", len(label))
		}
		fmt.Fprintf(w, "%s%s\n", label, line)
	}
	fmt.Fprintln(w, "members:")
	fmt.Fprintf(w, "  %s  %d bytes  sha256 %s\n", defs.ModelName, len(b.Model), m.Members[defs.ModelName])

	fmt.Fprintln(w, "calibration (of the calibration messages, those at or above each SCL's cut):")
	if len(m.Calibration) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  SCL\tcut\tham FP rate\tspam catch rate\tham\tspam\t")
		for _, r := range m.Calibration {
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%d\t%d\t\n", r.SCL, formatProb(r.Cut),
				percent(r.HamRate), percent(r.SpamRate), r.Ham, r.Spam)
		}
		tw.Flush()
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(w, "signature: none needed; the built-in definitions are part of the sclgate binary")
		return 0
	}
	fmt.Fprintf(w, "signature: not checked here; check it with: sclgate defs verify -pub KEY.pub %s\n", printable(path))
	return contentWarning()
}

// percent formats a rate so that a small non-zero one does not read as 0.
func percent(r float64) string {
	switch {
	case r == 0:
		return "0%"
	case r < 0.0001:
		return "<0.01%"
	}
	return strconv.FormatFloat(100*r, 'f', 2, 64) + "%"
}

// printable replaces what could upset a terminal or mislead its reader
// (control characters other than newline and tab, bidi controls, invalid
// UTF-8) with U+FFFD.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || !unicode.IsControl(r) && !unicode.Is(unicode.Bidi_Control, r) {
			return r
		}
		return unicode.ReplacementChar
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// jsonSafe writes JSON with the characters printable replaces written as
// \u escapes: encoding/json escapes the C0 controls but leaves DEL, the C1
// ones (U+009B is CSI, which a terminal acts on) and bidi controls as
// they are, and JSON of mail (an archived message's subject, a file name)
// is read on terminals too, not only by jq. Those characters occur only
// inside JSON strings, where an escape means the same. Each Write must be
// whole runes, as an Encoder's (one value per Write) is.
type jsonSafe struct{ w io.Writer }

func (j jsonSafe) Write(p []byte) (int, error) {
	var b []byte // made when needed
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRune(p[i:])
		if r == 0x7f || r >= 0x80 && (unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r)) {
			if b == nil {
				b = append(make([]byte, 0, len(p)+16), p[:i]...)
			}
			b = fmt.Appendf(b, "\\u%04x", r)
		} else if b != nil {
			b = append(b, p[i:i+size]...)
		}
		i += size
	}
	if b == nil {
		return j.w.Write(p)
	}
	if _, err := j.w.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

// signingPassword is the password of the secret key priv (read from
// keyFile) for command cmd: none with -nopass, else SCLGATE_KEY_PASSWORD,
// else asked on the terminal when the key is encrypted. ok is false (and
// said why) when -nopass was given for an encrypted key, or keyFile is a
// public key.
func signingPassword(e env, cmd, keyFile string, priv []byte, nopass bool) (password string, ok bool) {
	// The .pub beside the .key is an easy mix-up; as a secret key it
	// would be taken for an encrypted one, or fail as "invalid private
	// key", neither of which says what is wrong.
	if _, err := defs.PublicKeyID(priv); err == nil {
		fmt.Fprintf(e.stderr, "sclgate defs %s: %s is a public key: give the secret key (.key) to sign; the .pub goes in updates.trusted_keys\n", cmd, printable(keyFile))
		return "", false
	}
	if nopass {
		if keyEncrypted(priv) {
			fmt.Fprintf(e.stderr, "sclgate defs %s: %s is encrypted: leave out -nopass and give its password (%s, or at the prompt)\n", cmd, printable(keyFile), passwordEnv)
			return "", false
		}
		return "", true
	}
	password = os.Getenv(passwordEnv)
	if password == "" && keyEncrypted(priv) {
		password, _ = promptPassword(e, "Password for "+keyFile+": ", false)
	}
	return password, true
}

// promptPassword asks for a password on the terminal without echo (twice
// when confirm, as for a new key). ok is false when stdin is not a
// terminal: automation must use SCLGATE_KEY_PASSWORD or -nopass.
func promptPassword(e env, prompt string, confirm bool) (string, bool) {
	if !isTerminal(e.stdin) {
		return "", false
	}
	f := e.stdin.(*os.File)
	read := func(p string) (string, bool) {
		fmt.Fprint(e.stderr, p)
		// ReadPassword turns echo off: Ctrl-C (or a kill) while it waits
		// must turn it on again, or the admin's shell stays blind.
		if st, err := term.GetState(int(f.Fd())); err == nil {
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
			done := make(chan struct{})
			defer func() {
				signal.Stop(sig)
				close(done)
			}()
			go func() {
				select {
				case s := <-sig:
					term.Restore(int(f.Fd()), st)
					fmt.Fprintln(e.stderr, "\nsclgate defs: interrupted; nothing was written")
					os.Exit(128 + int(s.(syscall.Signal)))
				case <-done:
				}
			}()
		}
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil {
			fmt.Fprintf(e.stderr, "sclgate defs: no password read: %v; nothing was written\n", err)
		}
		return string(b), err == nil
	}
	pw, ok := read(prompt)
	if !ok || !confirm {
		return pw, ok
	}
	again, ok := read("Again: ")
	if !ok || again != pw {
		fmt.Fprintln(e.stderr, "sclgate defs: the passwords differ; nothing was written")
		return "", false
	}
	return pw, true
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// keyEncrypted reports whether a minisign secret key file needs a
// password: its key line starts "RWQAAEIy" unencrypted ("Ed", no KDF)
// and "RWRTY0Iy" when scrypt-encrypted.
func keyEncrypted(priv []byte) bool {
	return !bytes.Contains(priv, []byte("RWQAAEIy"))
}

// signable is checkContent for defs sign and defs publish, which may run
// on an older sclgate than the one a bundle is for: a model this build
// cannot load is refused only when the bundle's min_sclgate admits this
// build (it would be refused here, so it is broken).
func signable(b *defs.Bundle) error {
	if _, err := scorer.LoadModel(b.Model); err != nil && update.NewEnough(buildVersion(), b.Manifest.MinSclgate) != nil {
		return nil
	}
	return checkContent(b)
}

// checkContent checks what a signature cannot: that the model loads in this
// build and that the manifest's calibration table (what defs info shows)
// is the model's own (what scoring uses).
func checkContent(b *defs.Bundle) error {
	m, err := scorer.LoadModel(b.Model)
	if err != nil {
		if min := b.Manifest.MinSclgate; update.NewEnough(buildVersion(), min) != nil {
			return fmt.Errorf("its model does not load in this sclgate (%s): it is for sclgate %s or later, check it with that: %w", buildVersion(), min, err)
		}
		return fmt.Errorf("its model does not load: %w", err)
	}
	rows := m.Calibration().Rows
	if len(b.Manifest.Calibration) == 0 {
		return nil // the manifest shows no table: it claims nothing
	}
	if len(b.Manifest.Calibration) != len(rows) {
		return fmt.Errorf("the manifest has %d calibration rows, the model %d", len(b.Manifest.Calibration), len(rows))
	}
	for i, r := range b.Manifest.Calibration {
		if mr := rows[i]; r.SCL != mr.SCL || r.Cut != mr.Cut || r.Ham != mr.Ham || r.Spam != mr.Spam || r.HamRate != mr.HamRate || r.SpamRate != mr.SpamRate {
			return fmt.Errorf("the manifest's calibration for SCL %d (cut %v, ham rate %v, spam rate %v) is not the model's (cut %v, ham rate %v, spam rate %v): the bundle was made wrongly or altered",
				r.SCL, r.Cut, r.HamRate, r.SpamRate, mr.Cut, mr.HamRate, mr.SpamRate)
		}
	}
	return nil
}
