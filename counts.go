package trustloop

import (
	"context"
	"time"
)

// Names of daily counters.
const (
	// CountEventsCollected counts events stored in the log (repeats of a
	// stored messageId left out), by the UTC day of their timestamp.
	CountEventsCollected = "events_collected"
	// CountEventsDropped counts events the consent stage refused (no purpose
	// allowed them), by the UTC day of their timestamp.
	CountEventsDropped = "events_dropped_no_consent"
)

// DailyCount is one counter of one workspace on one UTC day: what the trust
// dashboard charts. Counters hold numbers only, never anything of a customer.
type DailyCount struct {
	WorkspaceID int64
	// Day is the UTC midnight starting the day (UTCDay).
	Day  time.Time
	Name string
	N    int64
}

// ConsentDay is how many consent records of one purpose and state a workspace
// took on one UTC day (of the record's time At).
type ConsentDay struct {
	Day     time.Time
	Purpose string
	State   string
	N       int64
}

// UTCDay returns the UTC midnight starting t's UTC day.
func UTCDay(t time.Time) time.Time {
	// Truncate works on absolute time, counted from a UTC midnight (year 1),
	// so whole days from there are UTC days whatever t's location.
	return t.Truncate(24 * time.Hour).UTC()
}

// CountStore keeps the trust dashboard's daily numbers.
type CountStore interface {
	// AddDailyCounts adds each count's N to what is stored for its (workspace,
	// day, name), creating the row if needed, all in one transaction: counts
	// are sums, so callers may add the same key more than once. Days are
	// taken as their UTCDay. Returns EINVALID for a count without a workspace
	// or name or with a negative N; nothing is written then.
	AddDailyCounts(ctx context.Context, counts []DailyCount) error

	// DailyCounts returns the workspace's counts of the days from since's UTC
	// day on, ordered by day, then name.
	DailyCounts(ctx context.Context, workspaceID int64, since time.Time) ([]DailyCount, error)

	// ConsentDaily returns the number of the workspace's consent records per
	// UTC day of their time At, purpose and state, from since's UTC day on,
	// ordered by day, purpose, state.
	ConsentDaily(ctx context.Context, workspaceID int64, since time.Time) ([]ConsentDay, error)
}

// ValidateDailyCounts checks counts before they are stored. Returns EINVALID.
func ValidateDailyCounts(counts []DailyCount) error {
	for i, c := range counts {
		switch {
		case c.WorkspaceID <= 0:
			return Errorf(EINVALID, "Daily count %d: no workspace.", i).WithHint("Set the count's workspace id.")
		case !word(c.Name, 64):
			return Errorf(EINVALID, "Daily count %d: the name is not a counter name.", i).WithHint("A lower-case word such as " + CountEventsCollected + ".")
		case c.N < 0:
			return Errorf(EINVALID, "Daily count %d: counts only grow.", i).WithHint("Add a count of zero or more.")
		}
	}
	return nil
}
