package main

import (
	"flag"
	"fmt"

	"github.com/sclgate/sclgate/defs"
	"github.com/sclgate/sclgate/safeio"
	"github.com/sclgate/sclgate/update"
)

// defsPublish implements "sclgate defs publish -key KEY -dir DIR BUNDLE...":
// copy bundles into an update source directory, sign them, and rebuild and
// sign its index.json. Serve DIR with any web server, bucket or share.
func defsPublish(e env, args []string) int {
	fs := flag.NewFlagSet("defs publish", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	keyFile := fs.String("key", "", "minisign secret key `FILE`")
	dir := fs.String("dir", "", "the update source `DIR`ectory to write")
	nopass := fs.Bool("nopass", false, "the key has no password (ignore "+passwordEnv+")")
	replace := fs.Bool("replace", false, "replace the contents of a version already published (gateways that have it keep the old one)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: sclgate defs publish -key NAME.key [-nopass] [-replace] -dir DIR BUNDLE...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(reorderFlags(fs, args)); err != nil {
		return flagExit(err, 2)
	}
	if *keyFile == "" || *dir == "" {
		fs.Usage()
		return 2
	}
	priv, err := safeio.ReadFile(*keyFile, 64<<10)
	if err != nil {
		fmt.Fprintln(e.stderr, "sclgate defs publish:", err)
		return 1
	}
	for _, path := range fs.Args() {
		// What defs sign checks: a bundle every gateway would refuse is
		// not published.
		if b, err := defs.ReadFile(path); err == nil {
			if err := signable(b); err != nil {
				fmt.Fprintf(e.stderr, "sclgate defs publish: %s: not published: %v\n", path, err)
				return 1
			}
		}
	}
	password, ok := signingPassword(e, "publish", *keyFile, priv, *nopass)
	if !ok {
		return 1
	}
	publish := update.Publish
	if *replace {
		publish = update.PublishReplacing
	}
	ix, err := publish(*dir, priv, password, fs.Args())
	if err != nil {
		fmt.Fprintln(e.stderr, "sclgate defs", err)
		return 1
	}
	fmt.Fprintf(e.stdout, "%s/index.json: %d versions\n", *dir, len(ix.Versions))
	for _, o := range ix.Versions {
		fmt.Fprintf(e.stdout, "  %-20s %s  %d bytes\n", o.Version, o.File, o.Size)
	}
	return 0
}
