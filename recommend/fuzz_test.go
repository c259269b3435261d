package recommend

import (
	"bytes"
	"strings"
	"testing"

	"github.com/trustloop/trustloop"
)

// The evaluation readers take files from anywhere: whatever the bytes, they
// return ratings or an invalid-input error naming a line, never panic, and
// never echo a value in the error.
func FuzzReadRatings(f *testing.F) {
	f.Add([]byte("1\t2\t4\t881250949\n"))
	f.Add([]byte("userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n"))
	f.Add([]byte("1::1193::5::978300760\n"))
	f.Add([]byte("1\t2\tx\t3\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := ReadRatings(bytes.NewReader(b))
		if err != nil {
			checkReadError(t, err)
			return
		}
		for _, r := range rs {
			if r.User == "" || r.Item == "" {
				t.Fatalf("a rating without user or item: %+v", r)
			}
		}
	})
}

func FuzzReadEvents(f *testing.F) {
	f.Add([]byte(`{"type":"track","userId":"u1","event":"Product Viewed","properties":{"product_id":"p1"},"timestamp":"2026-01-01T00:00:00Z"}` + "\n"))
	f.Add([]byte(`{"session":0,"events":[{"aid":1,"ts":1659304800025,"type":"clicks"}]}` + "\n"))
	f.Add([]byte("{\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := ReadEvents(bytes.NewReader(b), Config{})
		if err != nil {
			checkReadError(t, err)
			return
		}
		for _, r := range rs {
			if r.User == "" || r.Item == "" {
				t.Fatalf("an interaction without user or item: %+v", r)
			}
		}
	})
}

func checkReadError(t *testing.T, err error) {
	t.Helper()
	if trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Fatalf("error %v is not an invalid-input error", err)
	}
	if msg := trustloop.ErrorMessage(err); !strings.HasPrefix(msg, "Line ") && !strings.Contains(msg, "no ratings") && !strings.Contains(msg, "no interactions") {
		t.Fatalf("error %q names no line", msg)
	}
}
