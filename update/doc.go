// Package update installs filter-definition updates: new classifier
// definitions (signed bundles, see package defs) into definitions.dir, and
// switches the version in use without a restart.
//
// Scope: finding what a source offers (an index of versions), downloading
// a bundle, checking its signature against the admin's trusted keys and its
// checksums before anything is unpacked or installed, installing it into
// definitions.dir/<version>/, switching the active version atomically, and
// rolling back. It never touches the admin's custom weight list, which
// lives outside definitions.dir.
//
// On disk:
//
//	definitions.dir/
//	  2026.11.23.0512/        one directory per installed version:
//	    bundle.tar.gz         the bundle as published
//	    bundle.tar.gz.minisig its signature
//	    installed.json        when and where from
//	  active -> 2026.11.23.0512   symlink: the version in use
//	  state.json              last check: when, result
//
// A version directory is built under a temporary name and renamed into
// place; the active version is switched by renaming a new symlink over
// "active". A crash at any moment leaves either the old or the new version
// active, never a mix. While no version is installed (no "active"), the
// definitions built into the binary are used.
package update
