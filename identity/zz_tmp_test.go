package identity

import (
	"strings"
	"testing"
	"time"
)

func TestTmpSlow(t *testing.T) {
	r := mustCompile(t, DefaultConfig())
	for _, v := range []string{strings.Repeat("ẞ", 300) + "@x.io", strings.Repeat(" ", 1<<20), strings.Repeat("0", 1024), strings.Repeat("0-", 512), strings.Repeat("a", 1<<20), strings.Repeat("İ", 341)} {
		for _, ty := range []string{"email", "phone", "user_id"} {
			st := time.Now()
			for range 100 {
				r.normalize(ty, v)
			}
			t.Logf("%s %d: %v", ty, len(v), time.Since(st)/100)
		}
	}
}
