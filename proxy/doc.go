// Package proxy is sclgate's SMTP front end: a before-queue content filter.
//
// The flow of one transaction:
//
//	MAIL  open the downstream transaction (MAIL, on a connection kept from
//	      an earlier transaction or a new one) so that its answers reach
//	      the client while the client is still connected
//	RCPT  check the domain is ours (or the client trusted), then pass the
//	      RCPT through: the client sees the downstream's own answer
//	DATA  read the message, parse and score it once, then act:
//	        SCL >= gateway threshold: archive, delete, reject or relay
//	        otherwise: relay, stamped with X-SCL and X-SCL-Report
//	      and answer the client only once the outcome is settled.
//
// sclgate keeps no queue, so "nothing accepted is ever lost" rests on one
// rule: 250 goes to the client only after the downstream said 250, the
// archive file is on disk (fsync'd), or the message was deliberately
// deleted. Every other outcome is a 4xx (try again) or the downstream's own
// refusal, passed on as is.
//
// LMTP downstreams answer per recipient after DATA, but SMTP gives the client
// one answer for the whole message. Rather than say 250 for a recipient that
// did not get the message, or 451 for one that did (a duplicate), sclgate
// takes one recipient per transaction when the downstream speaks LMTP: a
// further RCPT gets "452 4.5.3", which every SMTP client handles by sending
// the rest in another transaction (RFC 5321 section 4.5.3.1.10).
package proxy
