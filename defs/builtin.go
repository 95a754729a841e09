package defs

import _ "embed"

// builtin is the definitions bundle compiled into sclgate: trained on the
// TRAIN split of the SpamAssassin public corpus (see README, "The built-in
// classifier"; rebuild with scripts/build-defs.sh). It is in use while no
// version is installed in definitions.dir, so a fresh install scores well
// with no download. Its integrity rests on the binary's; its members are
// still checked against the manifest's checksums when it is read.
//
//go:embed builtin/sclgate-defs.tar.gz
var builtin []byte

// Builtin returns the built-in bundle's bytes (shared: do not modify).
func Builtin() []byte { return builtin }
