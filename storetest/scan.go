package storetest

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// FilesHolding reads every file under dir (database, WAL, shm, segments,
// anything) and returns, for each needle some file contains, the paths of
// those files, and how many files it read. The erasure tests use it to show
// that no byte of an erased subject is left anywhere in a data directory.
func FilesHolding(t testing.TB, dir string, needles map[string][]byte) (found map[string][]string, files int) {
	t.Helper()
	found = map[string][]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for name, n := range needles {
			if bytes.Contains(data, n) {
				found[name] = append(found[name], path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scanning %s: %v", dir, err)
	}
	return found, files
}
