package identity

import "testing"

// BenchmarkPlaceholder: the collector asks this of every message's user and
// anonymous id (consent is not kept under a placeholder).
func BenchmarkPlaceholder(b *testing.B) {
	r, err := Compile(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	ids := []string{"3f2b8c1e-9a4d-4e7b-8f1a-2c3d4e5f6a7b", "user-48213", "null", "00000000-0000-0000-0000-000000000000"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Placeholder(ids[i%len(ids)])
	}
}
