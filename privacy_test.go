package trustloop_test

import (
	"encoding/base32"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/trustloop/trustloop"
)

// day returns the given date at 10:30 UTC.
func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 10, 30, 0, 0, time.UTC) }

func TestRequestDeadlines(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		regime   string
		received time.Time
		ack, due time.Time
	}{
		// 10 March 2023 is a Friday: 10 business days are the two following
		// working weeks.
		{"gdpr received on a Friday", trustloop.RegimeGDPR, day(2023, 3, 10), day(2023, 3, 24), day(2023, 4, 10)},
		{"gdpr received on a Saturday", trustloop.RegimeGDPR, day(2023, 3, 11), day(2023, 3, 24), day(2023, 4, 11)},
		{"gdpr received on a Sunday", trustloop.RegimeGDPR, day(2023, 3, 12), day(2023, 3, 24), day(2023, 4, 12)},
		{"gdpr received on a Monday", trustloop.RegimeGDPR, day(2023, 3, 13), day(2023, 3, 27), day(2023, 4, 13)},
		{"gdpr across a year end", trustloop.RegimeGDPR, day(2023, 12, 22), day(2024, 1, 5), day(2024, 1, 22)},
		// 45 calendar days, weekends included.
		{"ccpa received on a Friday", trustloop.RegimeCCPA, day(2023, 3, 10), day(2023, 3, 24), day(2023, 4, 24)},
		{"ccpa received on a Saturday", trustloop.RegimeCCPA, day(2023, 3, 11), day(2023, 3, 24), day(2023, 4, 25)},
		{"ccpa across February of a leap year", trustloop.RegimeCCPA, day(2024, 1, 31), day(2024, 2, 14), day(2024, 3, 16)},
		// Anything but ccpa is the GDPR's month (Create validates the regime).
		{"unknown regime falls back to a month", "", day(2023, 3, 10), day(2023, 3, 24), day(2023, 4, 10)},
		// A month from 31 January ends on February's last day, not in March
		// (TestRequestDeadlinesMonthEnd).
		{"gdpr 31 January, non-leap year (last day of February)", trustloop.RegimeGDPR, day(2023, 1, 31), day(2023, 2, 14), day(2023, 2, 28)},
		{"gdpr 31 January, leap year (last day of February)", trustloop.RegimeGDPR, day(2024, 1, 31), day(2024, 2, 14), day(2024, 2, 29)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ack, due := trustloop.RequestDeadlines(tc.regime, tc.received)
			if !ack.Equal(tc.ack) {
				t.Errorf("ack = %s (%s), want %s (%s)", ack, ack.Weekday(), tc.ack, tc.ack.Weekday())
			}
			if !due.Equal(tc.due) {
				t.Errorf("due = %s, want %s", due, tc.due)
			}
			if wd := ack.Weekday(); wd == time.Saturday || wd == time.Sunday {
				t.Errorf("ack falls on a %s", wd)
			}
		})
	}
}

// The GDPR's "one month" (and the extension's "two further months") ends, when
// the target month has no such day, on that month's last day (Regulation
// 1182/71, Art. 3(2)(c)); time.AddDate would run over into the next month and
// make the deadline up to three days late.
func TestRequestDeadlinesMonthEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		received, due time.Time
	}{
		{day(2023, 1, 31), day(2023, 2, 28)},
		{day(2024, 1, 31), day(2024, 2, 29)},
		{day(2023, 3, 31), day(2023, 4, 30)},
		{day(2023, 5, 31), day(2023, 6, 30)},
	} {
		if _, due := trustloop.RequestDeadlines(trustloop.RegimeGDPR, tc.received); !due.Equal(tc.due) {
			t.Errorf("GDPR request received %s is due %s, after the legal deadline %s", tc.received.Format(time.DateOnly),
				due.Format(time.DateOnly), tc.due.Format(time.DateOnly))
		}
	}
	r := &trustloop.PrivacyRequest{Status: trustloop.RequestReceived, Regime: trustloop.RegimeGDPR, ReceivedAt: day(2023, 11, 30), DueAt: day(2023, 12, 30)}
	if err := trustloop.ExtendRequest(r, "complex", day(2023, 12, 1)); err != nil {
		t.Fatal(err)
	}
	if want := day(2024, 2, 29); !r.DueAt.Equal(want) {
		t.Errorf("a GDPR request received 2023-11-30 and extended is due %s, after the legal deadline %s (three months from receipt)",
			r.DueAt.Format(time.DateOnly), want.Format(time.DateOnly))
	}
}

func TestAddBusinessDays(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		from time.Time
		n    int
		want time.Time
	}{
		{day(2023, 3, 10), 0, day(2023, 3, 10)},  // Friday, nothing to add
		{day(2023, 3, 11), 0, day(2023, 3, 11)},  // a Saturday stays one with n = 0
		{day(2023, 3, 10), 1, day(2023, 3, 13)},  // Friday → Monday
		{day(2023, 3, 11), 1, day(2023, 3, 13)},  // Saturday → Monday
		{day(2023, 3, 12), 1, day(2023, 3, 13)},  // Sunday → Monday
		{day(2023, 3, 13), 5, day(2023, 3, 20)},  // Monday → next Monday
		{day(2023, 3, 10), -3, day(2023, 3, 10)}, // negative: no change
	} {
		if got := trustloop.AddBusinessDays(tc.from, tc.n); !got.Equal(tc.want) {
			t.Errorf("AddBusinessDays(%s %s, %d) = %s, want %s", tc.from.Weekday(), tc.from.Format(time.DateOnly), tc.n,
				got.Format(time.DateOnly), tc.want.Format(time.DateOnly))
		}
	}
}

func weekday(t time.Time) bool { return t.Weekday() != time.Saturday && t.Weekday() != time.Sunday }

func TestAddBusinessDaysProperty(t *testing.T) {
	t.Parallel()
	zones := []*time.Location{time.UTC, time.FixedZone("UTC+14", 14*3600), time.FixedZone("UTC-12", -12*3600)}
	rapid.Check(t, func(rt *rapid.T) {
		from := time.Unix(rapid.Int64Range(0, 4102444800).Draw(rt, "unix"), 0).
			In(zones[rapid.IntRange(0, len(zones)-1).Draw(rt, "zone")])
		n := rapid.IntRange(1, 400).Draw(rt, "n")
		got := trustloop.AddBusinessDays(from, n)
		if !weekday(got) {
			rt.Fatalf("AddBusinessDays(%s, %d) = %s, a %s", from, n, got, got.Weekday())
		}
		if !got.After(from) {
			rt.Fatalf("AddBusinessDays(%s, %d) = %s, not after", from, n, got)
		}
		if got.Hour() != from.Hour() || got.Minute() != from.Minute() || got.Location() != from.Location() {
			rt.Fatalf("AddBusinessDays(%s, %d) = %s: time of day or zone changed", from, n, got)
		}
		// Exactly n weekdays in (from, got], counted a calendar day at a time.
		weekdays := 0
		d := from
		for d.Before(got) {
			d = d.AddDate(0, 0, 1)
			if weekday(d) {
				weekdays++
			}
		}
		if !d.Equal(got) || weekdays != n {
			rt.Fatalf("AddBusinessDays(%s, %d) = %s spans %d weekdays", from, n, got, weekdays)
		}
	})
}

func TestExtendRequest(t *testing.T) {
	t.Parallel()
	now := day(2023, 3, 20)
	open := func(regime, status string) *trustloop.PrivacyRequest {
		ack, due := trustloop.RequestDeadlines(regime, day(2023, 3, 10))
		return &trustloop.PrivacyRequest{ID: trustloop.NewRequestID(), Type: trustloop.RequestAccess, Status: status,
			Regime: regime, ReceivedAt: day(2023, 3, 10), AckDueAt: ack, DueAt: due}
	}
	openAt := func(regime string, received time.Time) *trustloop.PrivacyRequest {
		ack, due := trustloop.RequestDeadlines(regime, received)
		return &trustloop.PrivacyRequest{ID: trustloop.NewRequestID(), Type: trustloop.RequestAccess, Status: trustloop.RequestVerified,
			Regime: regime, ReceivedAt: received, AckDueAt: ack, DueAt: due}
	}
	extended := func(regime string) *trustloop.PrivacyRequest {
		r := open(regime, trustloop.RequestInProgress)
		if err := trustloop.ExtendRequest(r, "many requests", day(2023, 3, 15)); err != nil {
			t.Fatal(err)
		}
		return r
	}
	long := strings.Repeat("x", 501)
	for _, tc := range []struct {
		name   string
		r      *trustloop.PrivacyRequest
		reason string
		code   string // "" for success
		due    time.Time
	}{
		{"gdpr: two more months", open(trustloop.RegimeGDPR, trustloop.RequestReceived), "  complex request  ", "", day(2023, 6, 10)},
		{"gdpr in progress", open(trustloop.RegimeGDPR, trustloop.RequestInProgress), "complex", "", day(2023, 6, 10)},
		{"ccpa: 45 more days", open(trustloop.RegimeCCPA, trustloop.RequestVerified), "complex", "", day(2023, 6, 8)},
		{"gdpr from 31 January: three months from receipt, not two from 28 February", openAt(trustloop.RegimeGDPR, day(2023, 1, 31)), "complex", "", day(2023, 4, 30)},
		{"reason of 500 characters", open(trustloop.RegimeCCPA, trustloop.RequestVerified), strings.Repeat("y", 500), "", day(2023, 6, 8)},
		{"second extension (gdpr)", extended(trustloop.RegimeGDPR), "again", trustloop.ECONFLICT, time.Time{}},
		{"second extension (ccpa)", extended(trustloop.RegimeCCPA), "again", trustloop.ECONFLICT, time.Time{}},
		{"empty reason", open(trustloop.RegimeGDPR, trustloop.RequestReceived), "", trustloop.EINVALID, time.Time{}},
		{"blank reason", open(trustloop.RegimeGDPR, trustloop.RequestReceived), " \t\n ", trustloop.EINVALID, time.Time{}},
		{"reason too long", open(trustloop.RegimeGDPR, trustloop.RequestReceived), long, trustloop.EINVALID, time.Time{}},
		{"completed", open(trustloop.RegimeGDPR, trustloop.RequestCompleted), "complex", trustloop.ECONFLICT, time.Time{}},
		{"rejected", open(trustloop.RegimeCCPA, trustloop.RequestRejected), "complex", trustloop.ECONFLICT, time.Time{}},
		{"closed with an empty reason: the status is the problem", open(trustloop.RegimeGDPR, trustloop.RequestCompleted), "", trustloop.ECONFLICT, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := *tc.r
			err := trustloop.ExtendRequest(tc.r, tc.reason, now)
			if got := trustloop.ErrorCode(err); got != tc.code {
				t.Fatalf("ExtendRequest: code %q (%v), want %q", got, err, tc.code)
			}
			if tc.code != "" {
				if !reflect.DeepEqual(*tc.r, before) {
					t.Fatalf("a refused extension changed the request:\n%+v\nwas\n%+v", *tc.r, before)
				}
				return
			}
			if !tc.r.DueAt.Equal(tc.due) {
				t.Errorf("due = %s, want %s", tc.r.DueAt, tc.due)
			}
			if !tc.r.ExtendedAt.Equal(now) || tc.r.ExtensionReason != strings.TrimSpace(tc.reason) {
				t.Errorf("extended at %s with reason %q", tc.r.ExtendedAt, tc.r.ExtensionReason)
			}
			if !tc.r.AckDueAt.Equal(before.AckDueAt) || tc.r.Status != before.Status {
				t.Errorf("the extension changed more than the due date")
			}
		})
	}
}

func TestCanMoveRequest(t *testing.T) {
	t.Parallel()
	const (
		rc = trustloop.RequestReceived
		vf = trustloop.RequestVerified
		ip = trustloop.RequestInProgress
		cp = trustloop.RequestCompleted
		rj = trustloop.RequestRejected
	)
	allowed := map[[2]string]bool{
		{rc, vf}: true,
		{vf, ip}: true,
		{ip, ip}: true, // a worker picking the request up again after a crash
		{ip, cp}: true,
		{rc, rj}: true, {vf, rj}: true, {ip, rj}: true,
	}
	statuses := []string{rc, vf, ip, cp, rj, "", "bogus"}
	for _, from := range statuses {
		for _, to := range statuses {
			if got, want := trustloop.CanMoveRequest(from, to), allowed[[2]string{from, to}]; got != want {
				t.Errorf("CanMoveRequest(%q, %q) = %v, want %v", from, to, got, want)
			}
		}
	}
	// Open agrees: exactly the statuses something can still happen to.
	for _, s := range statuses {
		r := trustloop.PrivacyRequest{Status: s}
		if want := s == rc || s == vf || s == ip; r.Open() != want {
			t.Errorf("Open() of %q = %v", s, r.Open())
		}
	}
}

func TestValidRequestID(t *testing.T) {
	t.Parallel()
	for i := 0; i < 200; i++ {
		id := trustloop.NewRequestID()
		if !trustloop.ValidRequestID(id) {
			t.Fatalf("NewRequestID() = %q is not valid", id)
		}
		b, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(id[4:]))
		if err != nil || len(b) != 16 {
			t.Fatalf("%q does not hold 16 random bytes: %v", id, err)
		}
	}
	good := "prq_" + "abcdefghijklmnopqrstuvwxyz"
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{good, true},
		{"prq_" + strings.Repeat("a", 20) + "234567", true},
		{"prx_" + good[4:], false},
		{"PRQ_" + good[4:], false},
		{"prq-" + good[4:], false},
		{"prq_" + strings.ToUpper(good[4:]), false},
		{"prq_" + "Abcdefghijklmnopqrstuvwxyz", false},
		{good[:29], false},
		{good + "a", false},
		{"prq_", false},
		{"", false},
		{"prq_" + strings.Repeat("a", 25) + "1", false},
		{"prq_" + strings.Repeat("a", 25) + "0", false},
		{"prq_" + strings.Repeat("a", 25) + "8", false},
		{"prq_" + strings.Repeat("a", 25) + "9", false},
		{"prq_" + strings.Repeat("a", 25) + "=", false},
		{"prq_" + strings.Repeat("a", 25) + "/", false},
		{"prq_" + strings.Repeat("a", 24) + "é", false}, // 30 bytes, 29 runes
		{"prq_" + strings.Repeat("a", 25) + "\x00", false},
	} {
		if got := trustloop.ValidRequestID(tc.id); got != tc.want {
			t.Errorf("ValidRequestID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}
