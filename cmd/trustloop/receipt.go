package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/consent"
)

// runReceipt is `trustloop receipt verify`: a customer's (or anyone's) offline
// check of a consent receipt with the workspace's public key, no server needed.
func runReceipt(_ context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	const use = "usage: trustloop receipt verify --public-key KEY [FILE|-]\n" +
		"  checks a consent receipt (a compact JWS, or the JSON of GET /v1/consent-receipts/{id}; without FILE, or\n" +
		"  with -, read from standard input) offline against the workspace's Ed25519 public key (GET /v1/signing-key);\n" +
		"  exits 1 if it is not valid, 2 if the flags are wrong or FILE cannot be read\n"
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprint(stdout, use)
		return nil
	}
	if len(args) == 0 || args[0] != "verify" {
		return &usageError{strings.TrimSpace(use)}
	}
	fs := flag.NewFlagSet("receipt verify", flag.ContinueOnError)
	fs.SetOutput(stdout)
	pubFlag := fs.String("public-key", "", "the workspace's Ed25519 public key, base64 (GET /v1/signing-key)")
	if err := fs.Parse(args[1:]); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return &usageError{err.Error()}
	}
	pub, err := base64.StdEncoding.DecodeString(strings.TrimSpace(*pubFlag))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return &usageError{"--public-key must be the base64 of a 32-byte Ed25519 public key"}
	}
	var in io.Reader = stdin
	switch fs.NArg() {
	case 0:
		// Waiting for a receipt typed at a terminal looks like a hang; an
		// explicit - still reads one pasted there.
		if f, ok := stdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				return &usageError{"no receipt given: name the receipt file (trustloop receipt verify --public-key KEY FILE), or pipe it in"}
			}
		}
	case 1:
		if fs.Arg(0) != "-" {
			f, err := os.Open(fs.Arg(0))
			if err != nil {
				// Exit 2, not 1: a script must tell "not valid" from "not read".
				return &usageError{fmt.Sprintf("cannot read the receipt file: %v; give the file holding the receipt (the JWS, or the JSON of GET /v1/consent-receipts/{id})", unwrapPath(err))}
			}
			defer f.Close()
			in = f
		}
	default:
		return &usageError{"give one receipt file (or - for standard input)"}
	}
	raw, err := io.ReadAll(io.LimitReader(in, 1<<20))
	if err != nil {
		return &usageError{fmt.Sprintf("cannot read the receipt: %v; give the file holding the receipt (a directory or device will not do)", unwrapPath(err))}
	}
	// A byte order mark (an editor on Windows adds one) is not part of the
	// receipt, and makes its JSON unreadable.
	raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
	jws := strings.TrimSpace(string(raw))
	// The file may be the JSON GET /v1/consent-receipts/{id} answered.
	var doc struct {
		JWS string `json:"jws"`
	}
	if json.Unmarshal(raw, &doc) == nil && doc.JWS != "" {
		jws = doc.JWS
	}
	body, err := consent.VerifyReceipt(ed25519.PublicKey(pub), jws, time.Now())
	if err != nil {
		return fmt.Errorf("receipt NOT valid: %s", trustloop.ErrorMessage(err))
	}
	out, _ := json.MarshalIndent(body, "", "  ")
	fmt.Fprintf(stdout, "receipt %s is valid: signed by %s\n%s\n", body.ReceiptID, consent.KeyID(ed25519.PublicKey(pub)), out)
	return nil
}

// unwrapPath drops the path an *os.PathError repeats: the operator typed it.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
