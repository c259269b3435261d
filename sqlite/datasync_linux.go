package sqlite

import (
	"os"
	"syscall"
)

// datasync flushes f's data (and its size, if it changed) but not its times:
// an overwrite in place then needs no journal commit of the file system.
func datasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
