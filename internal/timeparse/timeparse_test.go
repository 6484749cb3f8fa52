package timeparse

import (
	"errors"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 30, 0, 0, time.UTC)
	utc := func(y int, mo time.Month, d, h, mi, s, ns int) time.Time {
		return time.Date(y, mo, d, h, mi, s, ns, time.UTC)
	}
	plus1 := time.FixedZone("", 3600)
	tests := []struct {
		name  string
		input string
		want  time.Time
	}{
		{"now is now", "now", now},
		{"seconds count back from now", "90s", now.Add(-90 * time.Second)},
		{"minutes count back from now", "5m", now.Add(-5 * time.Minute)},
		{"hours count back from now", "3h", now.Add(-3 * time.Hour)},
		{"days are 24 hours", "2d", now.Add(-48 * time.Hour)},
		{"weeks are 7 days", "1w", now.Add(-7 * 24 * time.Hour)},
		{"units combine", "1d12h", now.Add(-36 * time.Hour)},
		{"Hubble's example 1h43m works", "1h43m", now.Add(-103 * time.Minute)},
		{"fractions work", "1.5h", now.Add(-90 * time.Minute)},
		{"milliseconds work", "250ms", now.Add(-250 * time.Millisecond)},
		{"RFC 3339 in UTC", "2026-11-27T10:00:00Z", utc(2026, 11, 27, 10, 0, 0, 0)},
		{"RFC 3339 with fractional seconds", "2026-11-27T10:00:00.123456789Z", utc(2026, 11, 27, 10, 0, 0, 123456789)},
		{"RFC 3339 with milliseconds and an offset", "2026-11-27T10:00:00.123+01:00", time.Date(2026, 11, 27, 10, 0, 0, 123e6, plus1)},
		{"RFC 3339 without a zone is UTC", "2026-11-27T10:00:00", utc(2026, 11, 27, 10, 0, 0, 0)},
		{"RFC 3339 without seconds or zone", "2026-11-27T10:00", utc(2026, 11, 27, 10, 0, 0, 0)},
		{"a plain date is midnight UTC", "2026-11-27", utc(2026, 11, 27, 0, 0, 0, 0)},
		{"a date and minutes", "2026-11-27 10:00", utc(2026, 11, 27, 10, 0, 0, 0)},
		{"a date and seconds", "2026-11-27 10:00:05", utc(2026, 11, 27, 10, 0, 5, 0)},
		{"a date and seconds with a zone", "2026-11-27 10:00:05+01:00", time.Date(2026, 11, 27, 10, 0, 5, 0, plus1)},
		{"Hubble's YearMonthDayHour", "2026-11-27T10Z", utc(2026, 11, 27, 10, 0, 0, 0)},
		{"Hubble's YearMonthDayHourMinute", "2026-11-27T10:15+01:00", time.Date(2026, 11, 27, 10, 15, 0, 0, plus1)},
		{"RFC 1123 with a numeric zone", "Fri, 27 Nov 2026 10:00:00 +0000", utc(2026, 11, 27, 10, 0, 0, 0)},
		{"Hubble's StampMilli takes this year", "Nov 27 09:59:58.250", utc(2026, 11, 27, 9, 59, 58, 250e6)},
		{"a stamp from late December read in January is last year", "Dec 31 23:00:00", utc(2025, 12, 31, 23, 0, 0, 0)},
		{"surrounding spaces are ignored", "  3h ", now.Add(-3 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := now
			if tt.name == "a stamp from late December read in January is last year" {
				n = utc(2026, 1, 2, 0, 0, 0, 0)
			}
			got, err := Parse(tt.input, n)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.input, err)
			}
			if !got.Equal(tt.want) {
				t.Fatalf("Parse(%q) = %s, want %s", tt.input, got, tt.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 30, 0, 0, time.UTC)
	for _, input := range []string{"", "yesterday", "3x", "5", "-5m", "2026-13-01", "2026-11-27 25:00", "1h-", "h"} {
		t.Run(input, func(t *testing.T) {
			_, err := Parse(input, now)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want an error", input)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalid", input, err)
			}
		})
	}
}

func TestLayout(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 0, 5, 123456789, time.UTC)
	tests := []struct{ name, want string }{
		{"", "Nov 27 10:00:05.123"},
		{"StampMilli", "Nov 27 10:00:05.123"},
		{"yearmonthday", "2026-11-27"},
		{"YearMonthDayHour", "2026-11-27T10Z"},
		{"YearMonthDayHourMinute", "2026-11-27T10:00Z"},
		{"RFC3339", "2026-11-27T10:00:05Z"},
		{"RFC3339Milli", "2026-11-27T10:00:05.123Z"},
		{"RFC3339Micro", "2026-11-27T10:00:05.123456Z"},
		{"RFC3339Nano", "2026-11-27T10:00:05.123456789Z"},
		{"RFC1123Z", "Fri, 27 Nov 2026 10:00:05 +0000"},
	}
	for _, tt := range tests {
		layout, err := Layout(tt.name)
		if err != nil {
			t.Fatalf("Layout(%q): %v", tt.name, err)
		}
		if got := at.Format(layout); got != tt.want {
			t.Errorf("Layout(%q) formats as %q, want %q", tt.name, got, tt.want)
		}
	}
	if _, err := Layout("iso"); err == nil {
		t.Error("Layout(\"iso\") succeeded, want an error naming the choices")
	}
	for _, name := range FormatNames {
		if _, err := Layout(name); err != nil {
			t.Errorf("listed format %q is not accepted: %v", name, err)
		}
	}
}

func TestParsedTimesRoundTripThroughLayouts(t *testing.T) {
	// What the CLI prints with an absolute --time-format must parse back.
	now := time.Date(2026, 11, 27, 10, 30, 0, 0, time.UTC)
	at := time.Date(2026, 11, 27, 10, 0, 5, 123000000, time.UTC)
	for _, name := range []string{"RFC3339Milli", "RFC3339Nano", "StampMilli"} {
		layout, _ := Layout(name)
		s := at.Format(layout)
		got, err := Parse(s, now)
		if err != nil {
			t.Fatalf("%s: Parse(%q): %v", name, s, err)
		}
		if !got.Equal(at) {
			t.Errorf("%s: Parse(%q) = %s, want %s", name, s, got, at)
		}
	}
}
