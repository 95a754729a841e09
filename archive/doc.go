// Package archive keeps the messages the gateway decided not to deliver,
// so that an administrator can look at them later and release the ones
// that were not spam after all. It is sclgate's version of the ArchiveDir
// (and ArchiveSCL) of Exchange 2003's Intelligent Message Filter, and it
// reads the files IMF and Exchange wrote, so a site can carry its old
// archive over.
//
// # Files
//
// Every message is one file directly in the archive directory, named
//
//	<UTC time>-<random>.eml     e.g. 20261123T051012.123456Z-k3j4h5g6f7d2m2qa.eml
//
// The name without ".eml" is the message's ID. The time sorts as text and
// has no colons, so the names also work on Windows shares; the random part
// comes from crypto/rand and keeps two gateways that share one directory
// (over NFS, say) from ever choosing the same name. It uses one letter case
// only, so names cannot collide on case-insensitive file systems either.
//
// A file starts with a head that holds the SMTP envelope, in the format of
// the Exchange pickup and replay directories, followed by the message
// exactly as it was given to Write, byte for byte (the gateway gives it as
// received, under its own Received field, as Exchange's files have
// Exchange's):
//
//	X-Sender: <alice@example.com>
//	X-Receiver: <bob@example.org>
//	X-Receiver: <carol@example.org>
//	X-SCL: 7
//	X-SCL-Report: scl=7 classifier=builtin score=0.9991 classifier_scl=7 defs=...
//	Received: from mx.example.com ...
//	...
//
// We write one X-Sender line ("X-Sender: <>" for the null reverse path of a
// bounce), one X-Receiver line per recipient and, when Options.StoreSCL is
// set (IMF's ArchiveSCL), an X-SCL line and, right after it, the
// X-SCL-Report line WriteReport is given (the explanation of the SCL when
// the message came: one line, at most 4 KiB); addresses go inside angle
// brackets and lines end in CRLF.
//
// # Reading
//
// ReadHead is lenient, because files Exchange wrote must be readable: the
// names are case-insensitive, the lines may come in any order and end in
// LF, CRLF or "\r\r\n" (converted to CRLF twice), the file may start with
// a UTF-8 byte order mark (saved from Notepad), addresses may or may not
// be in angle brackets and may be followed by parameters ("X-Receiver:
// <a@b> SMTP"), and X-SCL is optional. The head is the run of X-Sender,
// X-Receiver and X-SCL lines at the start of the file, with an
// X-SCL-Report line right after the X-SCL line; the message starts at the
// first line that is none of these. A second X-Sender or X-SCL line also ends the head, since a
// head has at most one of each: that lets messages whose own first header
// is X-Sender (some mail programs add one) read back intact.
//
// Other messages whose first line would read as part of the head are
// refused by Write with ErrAmbiguous rather than stored in a file that
// would read back with an envelope the message itself chose.
//
// # Durability
//
// Write answers only once the message is safely on disk, since the
// gateway acknowledges the message to the client (and so takes over
// responsibility for it) as soon as Write returns. It writes to a
// temporary file in the same directory, fsyncs it, renames it to its final
// name and fsyncs the directory, as chasquid's safeio does: a crash leaves
// either no file or a whole one under the final name, never half of one.
// Temporary files are named ".sclgate-*.tmp"; List ignores them, and
// CleanTemp removes the ones a crash left behind.
//
// A Store has no state but its options, so any number of goroutines and
// processes may use one directory at the same time.
package archive
