package auditlog_test

import (
	"context"
	"errors"
	"testing"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/auditlog"
)

// TestVerifyRefusesEmptyOlder: an earlier checkpoint that is given but empty
// (a kept file that lost its content) is refused as invalid input, not taken
// as none: that would skip the check that the log only grew. nil is none.
func TestVerifyRefusesEmptyOlder(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l := e.open(t, auditlog.Config{})
	mustAppend(t, l, e.ws, 0, 5)
	latest := mustCheckpoint(t, l, e.ws)
	vkey := e.vkey(t)
	for _, c := range []struct {
		name  string
		older []byte
		ok    bool
	}{
		{"none", nil, true},
		{"the latest itself", latest, true},
		{"empty", []byte{}, false},
		{"blank", []byte(" \n\t\r\n"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			for how, verify := range map[string]func() (*auditlog.Verified, error){
				"Verify": func() (*auditlog.Verified, error) {
					return auditlog.Verify(ctx, auditlog.VerifyInput{Records: served(ctx, e.db, e.ws), Checkpoint: latest,
						Older: c.older, VerifierKey: vkey})
				},
				"VerifyStore": func() (*auditlog.Verified, error) { return auditlog.VerifyStore(ctx, e.db, vkey, c.older) },
			} {
				v, err := verify()
				if c.ok {
					if err != nil || v.Tree.N != 5 {
						t.Errorf("%s: %+v, %v", how, v, err)
					}
					continue
				}
				var te *trustloop.Error
				if trustloop.ErrorCode(err) != trustloop.EINVALID || !errors.As(err, &te) || te.Hint == "" {
					t.Errorf("%s: %v, want EINVALID with a hint", how, err)
				}
			}
		})
	}
}
