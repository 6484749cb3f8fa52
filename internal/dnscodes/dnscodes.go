// Package dnscodes names DNS response codes and record types: the one table
// the agent, the relay, the store and the CLI use, so a name means the same
// code everywhere.
//
// Two spellings of a response code exist: the RFC mnemonic ("NXDOMAIN"),
// which Trawl stores and prints, and Hubble's words ("Non-Existent Domain"),
// which Hubble's metrics and compact output use. Parse accepts both.
package dnscodes

import (
	"fmt"
	"strconv"
	"strings"
)

// Response codes Trawl names (RFC 1035, 2136, 6895).
const (
	NoError  uint32 = 0
	FormErr  uint32 = 1
	ServFail uint32 = 2
	NXDomain uint32 = 3
	NotImp   uint32 = 4
	Refused  uint32 = 5
)

var rcodes = []struct {
	code         uint32
	name, hubble string
}{
	{NoError, "NOERROR", "No Error"},
	{FormErr, "FORMERR", "Format Error"},
	{ServFail, "SERVFAIL", "Server Failure"},
	{NXDomain, "NXDOMAIN", "Non-Existent Domain"},
	{NotImp, "NOTIMP", "Not Implemented"},
	{Refused, "REFUSED", "Query Refused"},
	{6, "YXDOMAIN", "Name Exists when it should not"},
	{7, "YXRRSET", "RR Set Exists when it should not"},
	{8, "NXRRSET", "RR Set that should exist does not"},
	{9, "NOTAUTH", "Not Authorized"},
	{10, "NOTZONE", "Name not contained in zone"},
}

// RcodeName is the mnemonic of code ("NXDOMAIN"), or "RCODE<n>" for codes
// without one.
func RcodeName(code uint32) string {
	for _, r := range rcodes {
		if r.code == code {
			return r.name
		}
	}
	return "RCODE" + strconv.FormatUint(uint64(code), 10)
}

// HubbleRcode is Hubble's words for code ("Non-Existent Domain"), as in its
// metrics' rcode label and its compact output.
func HubbleRcode(code uint32) string {
	for _, r := range rcodes {
		if r.code == code {
			return r.hubble
		}
	}
	return strconv.FormatUint(uint64(code), 10)
}

// ParseRcode reads a response code written as a mnemonic (any case), in
// Hubble's words, as "RCODE<n>" or as a number.
func ParseRcode(s string) (uint32, error) {
	t := strings.TrimSpace(s)
	for _, r := range rcodes {
		if strings.EqualFold(t, r.name) || strings.EqualFold(t, r.hubble) {
			return r.code, nil
		}
	}
	u := strings.ToUpper(t)
	if n, err := strconv.ParseUint(strings.TrimPrefix(u, "RCODE"), 10, 16); err == nil && n < 1<<12 {
		return uint32(n), nil
	}
	return 0, fmt.Errorf("unknown DNS response code %q (want a name such as NXDOMAIN or SERVFAIL, or a number)", s)
}

// Record types by their IANA numbers.
var types = map[uint16]string{
	1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX",
	16: "TXT", 28: "AAAA", 33: "SRV", 35: "NAPTR", 39: "DNAME", 41: "OPT",
	43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 50: "NSEC3", 52: "TLSA",
	64: "SVCB", 65: "HTTPS", 251: "IXFR", 252: "AXFR", 255: "ANY", 257: "CAA",
}

// TypeName is the mnemonic of a record type ("AAAA"), or "TYPE<n>" (RFC
// 3597) for types without one.
func TypeName(t uint16) string {
	if n, ok := types[t]; ok {
		return n
	}
	return "TYPE" + strconv.FormatUint(uint64(t), 10)
}
