package keyring_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/trustloop/trustloop/keyring"
)

// envelope800 is an event envelope of about 800 bytes, the size the collector
// seals for a typical track call.
func envelope800() []byte {
	b := []byte(`{"v":1,"type":"track","messageId":"ajs-next-00000001-1b4e-4c2a-9d6f-7a1c3e5b9f20",` +
		`"receivedAt":"2024-05-01T12:00:00.000Z","timestamp":"2024-05-01T11:59:59.000Z",` +
		`"consent":{"categoryPreferences":{"Advertising":false,"Analytics":true}},"message":`)
	b = fmt.Appendf(b, `{"type":"track","event":"Product Viewed","userId":"user_1","properties":{"product_id":"507f1f77bcf86cd799439011",`+
		`"sku":"G-32","name":"Monopoly: 3rd Edition","price":18.99,"quantity":1,"currency":"usd"},`+
		`"context":{"library":{"name":"analytics.js","version":"npm:next-1.70.0"},`+
		`"page":{"path":"/products/monopoly","url":"https://www.example.com/products/monopoly"},`+
		`"userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"}}}`)
	for len(b) < 800 {
		b = append(b, ' ')
	}
	return b
}

func BenchmarkSeal(b *testing.B) {
	key := keyring.NewKey()
	pt := envelope800()
	aad := keyring.EventAAD(nil, 1, 1, bytes.Repeat([]byte{1}, keyring.MessageHashSize))
	dst := make([]byte, 0, len(pt)+64)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		dst = keyring.Seal(dst[:0], key, pt, aad)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkBlind(b *testing.B) {
	kr, _ := newKeyring(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.Blind(1, "email", "Jane.Doe@Example.com"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "blinds/s")
}
