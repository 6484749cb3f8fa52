// Package timeparse is Trawl's one parser for user-supplied points in time
// (`--since`, `--until`, top windows) and the one table of output time
// layouts (`--time-format`).
//
// Accepted input, tried in this order:
//   - "now";
//   - a duration in the past: Go's units plus d (24 h) and w (7 d), combined
//     freely ("90s", "5m", "1h30m", "2d", "1w", "1d12h");
//   - RFC 3339 with or without fractional seconds or zone
//     ("2026-11-27T10:00:00Z", "2026-11-27T10:00:00.123+01:00", "2026-11-27T10:00:00");
//   - plain dates and date-times ("2026-11-27", "2026-11-27 10:00", "2026-11-27 10:00:05");
//   - the forms Hubble accepts: YearMonthDayHour ("2026-11-27T10Z", "2026-11-27T10+01:00"),
//     YearMonthDayHourMinute ("2026-11-27T10:00Z"), RFC 1123 with numeric zone, and
//     StampMilli ("Nov 27 10:00:00.000", the year taken from now).
//
// Input without a zone is UTC, as Hubble reads it: flow times are printed in UTC too,
// so what a user copies from the output selects the same instant.
package timeparse

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Hubble's named layouts, kept under Hubble's names so `--time-format` reads the same.
const (
	YearMonthDay           = "2006-01-02"
	YearMonthDayHour       = "2006-01-02T15Z07:00"
	YearMonthDayHourMinute = "2006-01-02T15:04Z07:00"
	RFC3339Milli           = "2006-01-02T15:04:05.000Z07:00"
	RFC3339Micro           = "2006-01-02T15:04:05.000000Z07:00"
)

// absolute layouts, tried in order after durations. Layouts without a zone parse as UTC.
var absolute = []string{
	time.RFC3339Nano, // also accepts no fraction
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04",
	YearMonthDay,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04Z07:00",
	"2006-01-02 15:04",
	YearMonthDayHour,
	YearMonthDayHourMinute,
	time.RFC1123Z,
	time.RFC1123,
}

// yearless layouts take their year from now (Hubble's StampMilli and friends).
var yearless = []string{time.StampNano, time.Stamp}

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("invalid time")

// Parse turns input into an absolute time; durations count back from now.
func Parse(input string, now time.Time) (time.Time, error) {
	s := strings.TrimSpace(input)
	if s == "" {
		return time.Time{}, fmt.Errorf("%w: empty", ErrInvalid)
	}
	if strings.EqualFold(s, "now") {
		return now, nil
	}
	if d, ok, err := parseDuration(s); ok {
		if err != nil {
			return time.Time{}, fmt.Errorf("%w %q: %v", ErrInvalid, input, err)
		}
		return now.Add(-d), nil
	}
	for _, layout := range absolute {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	for _, layout := range yearless {
		if t, err := time.Parse(layout, s); err == nil {
			t = t.AddDate(now.UTC().Year(), 0, 0)
			// "Dec 31 23:59" read on Jan 1 means last year.
			if t.After(now.Add(48 * time.Hour)) {
				t = t.AddDate(-1, 0, 0)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w %q: want a duration like 90s, 3h, 2d, 1w, an RFC 3339 time or a date like 2026-11-27 10:00", ErrInvalid, input)
}

var units = map[string]time.Duration{
	"ns": time.Nanosecond,
	"us": time.Microsecond,
	"µs": time.Microsecond,
	"ms": time.Millisecond,
	"s":  time.Second,
	"m":  time.Minute,
	"h":  time.Hour,
	"d":  24 * time.Hour,
	"w":  7 * 24 * time.Hour,
}

// parseDuration reads a sequence of number+unit pairs. ok reports whether s
// looks like a duration at all (starts with a digit or '.', and has no date
// separators), so that a malformed duration gets a duration error while a
// date falls through to the layouts.
func parseDuration(s string) (d time.Duration, ok bool, err error) {
	if s[0] == '-' {
		return 0, true, errors.New("durations count back from now and must not be negative")
	}
	if s[0] == '+' {
		s = s[1:]
	}
	if s == "" || !(s[0] >= '0' && s[0] <= '9' || s[0] == '.') || strings.ContainsAny(s, "-:/ ,T") {
		return 0, false, nil
	}
	var total float64
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, true, fmt.Errorf("expected a number at %q", rest)
		}
		n, perr := strconv.ParseFloat(rest[:i], 64)
		if perr != nil {
			return 0, true, fmt.Errorf("bad number %q", rest[:i])
		}
		rest = rest[i:]
		j := 0
		for j < len(rest) && !(rest[j] >= '0' && rest[j] <= '9' || rest[j] == '.') {
			j++
		}
		if j == 0 {
			return 0, true, fmt.Errorf("missing unit after %s (use ns, us, ms, s, m, h, d or w)", strconv.FormatFloat(n, 'f', -1, 64))
		}
		unit, known := units[rest[:j]]
		if !known {
			return 0, true, fmt.Errorf("unknown unit %q (use ns, us, ms, s, m, h, d or w)", rest[:j])
		}
		rest = rest[j:]
		total += n * float64(unit)
		if total > math.MaxInt64 {
			return 0, true, errors.New("duration too long")
		}
	}
	return time.Duration(total), true, nil
}

// FormatNames lists the names `--time-format` accepts, Hubble's set.
var FormatNames = []string{
	"StampMilli",
	"YearMonthDay",
	"YearMonthDayHour",
	"YearMonthDayHourMinute",
	"RFC3339",
	"RFC3339Milli",
	"RFC3339Micro",
	"RFC3339Nano",
	"RFC1123Z",
}

// Layout returns the time layout for a `--time-format` name (case-insensitive).
func Layout(name string) (string, error) {
	switch strings.ToLower(name) {
	case "", "stampmilli":
		return time.StampMilli, nil
	case "yearmonthday":
		return YearMonthDay, nil
	case "yearmonthdayhour":
		return YearMonthDayHour, nil
	case "yearmonthdayhourminute":
		return YearMonthDayHourMinute, nil
	case "rfc3339":
		return time.RFC3339, nil
	case "rfc3339milli":
		return RFC3339Milli, nil
	case "rfc3339micro":
		return RFC3339Micro, nil
	case "rfc3339nano":
		return time.RFC3339Nano, nil
	case "rfc1123z":
		return time.RFC1123Z, nil
	}
	return "", fmt.Errorf("unknown time format %q (one of %s)", name, strings.Join(FormatNames, ", "))
}
