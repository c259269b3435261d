package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop/consent"
)

// TestReceiptVerifyInput: what `receipt verify` reads, and the exit it gives:
// a receipt that is not valid is exit 1 (an ordinary error), input that cannot
// be read exit 2 (a usage error), so that scripts tell them apart; a byte order
// mark is not part of a receipt; a terminal on standard input is refused
// rather than waited on.
func TestReceiptVerifyInput(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := consent.SignReceipt(priv, &consent.ReceiptBody{Version: 1, ReceiptID: consent.NewReceiptID(), WorkspaceID: 1,
		IssuedAt: time.Now(), Method: "api", Changes: []consent.ReceiptChange{{Purpose: "analytics", State: "granted"}}})
	if err != nil {
		t.Fatal(err)
	}
	asJSON, _ := json.Marshal(map[string]string{"jws": jws})
	dir := t.TempDir()
	file := func(name string, b []byte) string { return writeTestFile(t, dir, name, b) }
	const bom = "\xef\xbb\xbf"
	tampered := []byte(jws) // one character of the signature changed
	if i := len(tampered) - 10; tampered[i] == 'A' {
		tampered[i] = 'B'
	} else {
		tampered[i] = 'A'
	}
	// A terminal is a character device; so is /dev/null, which stands in for one.
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()

	const (
		valid = iota
		notValid
		usage
	)
	for _, c := range []struct {
		name  string
		args  []string
		stdin io.Reader
		want  int
	}{
		{"JWS file", []string{file("r.jws", []byte(jws+"\n"))}, nil, valid},
		{"JSON file", []string{file("r.json", asJSON)}, nil, valid},
		{"JSON file with a byte order mark", []string{file("bom.json", append([]byte(bom), asJSON...))}, nil, valid},
		{"JWS file with a byte order mark and CR LF", []string{file("bom.jws", []byte(bom+jws+"\r\n"))}, nil, valid},
		{"standard input", nil, strings.NewReader(jws), valid},
		{"standard input as -", []string{"-"}, strings.NewReader(bom + string(asJSON)), valid},
		{"tampered", []string{file("t.jws", tampered)}, nil, notValid},
		{"empty file", []string{file("empty", nil)}, nil, notValid},
		{"missing file", []string{filepath.Join(dir, "none.jws")}, nil, usage},
		{"a directory", []string{dir}, nil, usage},
		{"two files", []string{file("a", []byte(jws)), file("b", []byte(jws))}, nil, usage},
		{"a terminal on standard input", nil, devNull, usage},
		// Asked for explicitly, a terminal is read (a receipt may be pasted).
		{"a terminal on standard input as -", []string{"-"}, devNull, notValid},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			args := append([]string{"verify", "--public-key", base64.StdEncoding.EncodeToString(pub)}, c.args...)
			err := runReceipt(context.Background(), args, c.stdin, &out)
			var ue *usageError
			switch c.want {
			case valid:
				if err != nil || !strings.Contains(out.String(), "is valid") {
					t.Fatalf("err = %v, output %q; want valid", err, out.String())
				}
			case notValid:
				if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "receipt NOT valid") {
					t.Fatalf("err = %v; want receipt NOT valid (exit 1)", err)
				}
			case usage:
				if !errors.As(err, &ue) {
					t.Fatalf("err = %v; want a usage error (exit 2)", err)
				}
				if strings.Contains(ue.msg, dir) {
					t.Errorf("message %q repeats the path", ue.msg)
				}
			}
		})
	}
}

// writeTestFile writes b to dir/name and returns the path.
func writeTestFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
