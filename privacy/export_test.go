package privacy

import "time"

// SetHeartbeat makes running jobs renew their lease every d, and returns a
// function that puts the default back.
func SetHeartbeat(d time.Duration) (restore func()) {
	old := heartbeat
	heartbeat = d
	return func() { heartbeat = old }
}
