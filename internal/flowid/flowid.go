// Package flowid derives, formats and parses flow ids: the one place that
// knows their layout. The agent's collector derives a record's id where it
// makes the record (so `trawl-agent --output jsonl`, ClickHouse and
// `trawl observe` show the same id), the shipper and the relay derive ids
// only for records that arrive without one, the relay's enricher derives
// policy-verdict ids from their flow's, and the store keeps ids as two
// integers.
//
// A flow id is a UUIDv8 whose first half is a hash of (node, agent boot id)
// and whose second half is a sequence and the record's index under it (the
// collector numbers every record and uses index 0; the shipper and the relay
// use the batch sequence and the index in the batch). It is therefore
// unique, the same when a batch is resent (the id travels with the record),
// and compresses well: consecutive records differ only in the low bits.
package flowid

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// MaxIndex is the largest record index within one batch that Derive keeps
// distinct (20 bits).
const MaxIndex = 1<<20 - 1

// Derive returns the id of record index of batch seq shipped by (node, boot).
func Derive(node, bootID string, seq uint64, index int) string {
	h := sha256.Sum256([]byte(node + "\x00" + bootID))
	var b [16]byte
	copy(b[:8], h[:8])
	binary.BigEndian.PutUint64(b[8:], seq<<20|uint64(index)&MaxIndex)
	b[6] = b[6]&0x0f | 0x80 // version 8: custom
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	return Format(b)
}

// Format renders 16 bytes in the canonical 8-4-4-4-12 UUID form.
func Format(b [16]byte) string {
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// FromHalves is Format of two big-endian halves.
func FromHalves(hi, lo uint64) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return Format(b)
}

// PolicyVerdict returns the id of the policy-verdict record that the relay
// derives from flow parent for one direction ("INGRESS" or "EGRESS"): a
// name-based UUIDv5, so a resent flow derives the same verdict id.
func PolicyVerdict(parent, direction string) string {
	sum := sha1.Sum([]byte(parent + "/policy-verdict/" + direction))
	sum[6] = sum[6]&0x0f | 0x50 // version 5: name-based
	sum[8] = sum[8]&0x3f | 0x80 // RFC 4122 variant
	return Format([16]byte(sum[:16]))
}
