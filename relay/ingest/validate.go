package ingest

import (
	"errors"
	"fmt"
	"regexp"

	"google.golang.org/protobuf/proto"

	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
)

var (
	// A Kubernetes node name: a DNS subdomain.
	nodeNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	bootIDRE   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
)

// ValidateHello checks the first message of a stream.
func ValidateHello(h *ingestv1.Hello) error {
	if h == nil {
		return errors.New("the first message on the stream must be hello")
	}
	if !nodeNameRE.MatchString(h.GetNodeName()) {
		return fmt.Errorf("hello: node name %q is not a valid Kubernetes node name", clip(h.GetNodeName()))
	}
	if !bootIDRE.MatchString(h.GetBootId()) {
		return fmt.Errorf("hello: boot id %q must be 1-128 characters of [A-Za-z0-9._-]", clip(h.GetBootId()))
	}
	return nil
}

// ValidateBatch checks a batch received on a stream opened by hello. A batch
// that fails is rejected as a whole (Nack) and changes nothing.
func ValidateBatch(b *ingestv1.Batch, hello *ingestv1.Hello, lim Limits) error {
	return validateBatch(b, hello, lim, -1)
}

// validateBatch is ValidateBatch with the batch's encoded size when the
// caller knows it (size < 0: compute it).
func validateBatch(b *ingestv1.Batch, hello *ingestv1.Hello, lim Limits, size int) error {
	lim.setDefaults()
	if b == nil {
		return errors.New("empty batch message")
	}
	if b.GetNodeName() != hello.GetNodeName() || b.GetBootId() != hello.GetBootId() {
		return fmt.Errorf("batch names node %q boot %q but the stream said hello as node %q boot %q",
			clip(b.GetNodeName()), clip(b.GetBootId()), hello.GetNodeName(), hello.GetBootId())
	}
	if b.GetSequence() == 0 {
		return errors.New("batch sequence must start at 1")
	}
	if size < 0 {
		size = proto.Size(b)
	}
	if size > lim.MaxBatchBytes {
		return fmt.Errorf("batch %d is %d bytes, over the relay's limit of %d", b.GetSequence(), size, lim.MaxBatchBytes)
	}
	n := len(b.GetFlows()) + len(b.GetConntrack()) + len(b.GetLostEvents())
	if n == 0 {
		return fmt.Errorf("batch %d holds no records", b.GetSequence())
	}
	if n > lim.MaxBatchRecords {
		return fmt.Errorf("batch %d holds %d records, over the relay's limit of %d", b.GetSequence(), n, lim.MaxBatchRecords)
	}
	for i, f := range b.GetFlows() {
		if f == nil {
			return fmt.Errorf("batch %d flow %d: empty", b.GetSequence(), i)
		}
		if f.GetTime() == nil || f.GetTime().CheckValid() != nil {
			return fmt.Errorf("batch %d flow %d: missing or invalid time", b.GetSequence(), i)
		}
		if u := f.GetUuid(); u != "" && !isUUID(u) {
			return fmt.Errorf("batch %d flow %d: uuid %q is not a lower-case UUID", b.GetSequence(), i, clip(u))
		}
		if nn := f.GetNodeName(); nn != "" && nn != hello.GetNodeName() {
			return fmt.Errorf("batch %d flow %d: node name %q differs from the stream's node %q", b.GetSequence(), i, clip(nn), hello.GetNodeName())
		}
	}
	for i, c := range b.GetConntrack() {
		if c == nil || c.GetTime() == nil || c.GetTime().CheckValid() != nil {
			return fmt.Errorf("batch %d conntrack sample %d: missing or invalid time", b.GetSequence(), i)
		}
		if nn := c.GetNodeName(); nn != "" && nn != hello.GetNodeName() {
			return fmt.Errorf("batch %d conntrack sample %d: node name %q differs from the stream's node %q", b.GetSequence(), i, clip(nn), hello.GetNodeName())
		}
	}
	for i, l := range b.GetLostEvents() {
		if l == nil {
			return fmt.Errorf("batch %d lost event %d: empty", b.GetSequence(), i)
		}
		if l.GetTime() != nil && l.GetTime().CheckValid() != nil {
			return fmt.Errorf("batch %d lost event %d: invalid time", b.GetSequence(), i)
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// isUUID reports whether s is a lower-case canonical UUID (hand-written: it
// runs for every flow).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}
