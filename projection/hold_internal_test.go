package projection

import (
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/profile"
)

// Held bytes that do not read back fail the decode (so the group or flush
// that needs the profile fails, and writes nothing), naming the profile and
// no value; readable ones are applied and leave nothing held.
func TestDecodeHeldEvents(t *testing.T) {
	var empty profile.State
	enc, err := empty.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	in := profile.Input{Type: trustloop.EventTrack, Event: "Order Completed", Timestamp: at, ReceivedAt: at,
		SourceID: 1, Properties: []byte(`{"revenue":5}`)}
	good := profile.AppendInput(nil, &in)
	for _, tc := range []struct {
		name  string
		pend  []byte
		npend int
		err   bool
	}{
		{"readable", good, 1, false},
		{"cut short", good[:len(good)-2], 1, true},
		{"fewer than counted", good, 2, true},
	} {
		st := &state{rec: trustloop.ProfileRecord{ID: 7}, enc: enc, pend: tc.pend, npend: tc.npend, pendCfg: &wsConfig{}}
		err := st.decode()
		if tc.err {
			if err == nil || !strings.Contains(err.Error(), "profile 7: held event") {
				t.Errorf("%s: decode = %v, want the held event's error", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if st.npend != 0 || st.pend != nil || st.st.Computed.Orders != 1 {
			t.Errorf("%s: held %d, orders %d; want 0 held, 1 order", tc.name, st.npend, st.st.Computed.Orders)
		}
	}
}
