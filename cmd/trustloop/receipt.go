package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
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
		"  checks a consent receipt (a compact JWS, or the JSON of GET /v1/consent-receipts/{id})\n" +
		"  offline against the workspace's Ed25519 public key (GET /v1/signing-key); exits non-zero if it is not valid\n"
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
	case 1:
		if fs.Arg(0) != "-" {
			f, err := os.Open(fs.Arg(0))
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
	default:
		return &usageError{"give one receipt file (or - for standard input)"}
	}
	raw, err := io.ReadAll(io.LimitReader(in, 1<<20))
	if err != nil {
		return err
	}
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
