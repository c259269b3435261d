package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Sealed payloads are kept out of SQLite, in append-only segment files beside the
// database, and the events table holds only where each one is (segment, offset,
// length). Why: in WAL mode SQLite writes every byte twice (into the WAL at commit,
// into the database at checkpoint) and copies it through its B-tree pages on the
// one writer goroutine; measured here, that held group commits to ~16 µs an event
// and made the checkpoint stalls that set the collector's p99. A segment gets each
// payload once, in one sequential write per group commit.
//
// Durability: the writer appends a group's payloads, fdatasyncs the segment, and
// only then commits the rows that point at them. The rows are the truth: on open,
// whatever lies past the end of the last committed payload (a group whose commit
// never happened) is cut off, so a crash leaves no unreferenced bytes and a replay
// writes them again at the same place.
//
// Erasure deletes the rows and destroys the subject key; the ciphertext stays in
// the segment until the segment is compacted, unreadable without its key
// (crypto-shredding, T6).

const (
	segmentDir = "segments"
	segmentExt = ".seg"
	// defaultSegmentMaxBytes is where the writer starts a new segment file,
	// keeping files a size that copies and compaction can handle one at a time.
	defaultSegmentMaxBytes = 1 << 30
)

// segments is the set of segment files of one data directory: one being appended
// to by the writer, all readable by many.
type segments struct {
	dir      string
	readOnly bool
	maxBytes int64

	// The writer's state (the store's mu serializes appends).
	cur    *os.File
	curNum int64
	curEnd int64

	mu    sync.RWMutex
	files map[int64]*os.File // read handles
}

func segmentName(num int64) string { return fmt.Sprintf("%016d%s", num, segmentExt) }

// openSegments opens the segment directory. end is where the last committed payload
// ends ((0, 0) for none): later bytes and later files are cut off.
func openSegments(dataDir string, endNum, endOff, maxBytes int64, readOnly bool) (*segments, error) {
	s := &segments{dir: filepath.Join(dataDir, segmentDir), readOnly: readOnly, maxBytes: maxBytes, files: map[int64]*os.File{}}
	if readOnly {
		return s, nil
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: segments: %w", err)
	}
	nums, err := s.list()
	if err != nil {
		return nil, err
	}
	for _, n := range nums {
		if n > endNum {
			// Written by a group whose commit never happened.
			if err := os.Remove(filepath.Join(s.dir, segmentName(n))); err != nil {
				return nil, fmt.Errorf("sqlite: segments: %w", err)
			}
		}
	}
	if endNum == 0 {
		endNum = 1
	}
	f, err := os.OpenFile(filepath.Join(s.dir, segmentName(endNum)), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: segments: %w", err)
	}
	if err := f.Truncate(endOff); err != nil {
		f.Close()
		return nil, fmt.Errorf("sqlite: segments: cut uncommitted tail: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("sqlite: segments: %w", err)
	}
	s.cur, s.curNum, s.curEnd = f, endNum, endOff
	return s, syncDir(s.dir)
}

// list returns the segment numbers present, ascending.
func (s *segments) list() ([]int64, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("sqlite: segments: %w", err)
	}
	var nums []int64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, segmentExt) {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(name, segmentExt), 10, 64)
		if err != nil || n <= 0 {
			continue
		}
		nums = append(nums, n)
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	return nums, nil
}

// appendSync writes buf at the end of the current segment (starting a new one when
// the current is full) and syncs it. It returns where buf starts.
func (s *segments) appendSync(buf []byte) (num, off int64, err error) {
	if s.curEnd > 0 && s.curEnd+int64(len(buf)) > s.maxBytes {
		if err := s.roll(); err != nil {
			return 0, 0, err
		}
	}
	num, off = s.curNum, s.curEnd
	if _, err := s.cur.WriteAt(buf, off); err != nil {
		s.cut(off)
		return 0, 0, fmt.Errorf("sqlite: segment write: %w", err)
	}
	if err := syscall.Fdatasync(int(s.cur.Fd())); err != nil {
		s.cut(off)
		return 0, 0, fmt.Errorf("sqlite: segment sync: %w", err)
	}
	s.curEnd = off + int64(len(buf))
	return num, off, nil
}

// undo forgets an append whose rows were not committed, so the next group writes
// over it.
func (s *segments) undo(num, off int64) {
	if num == s.curNum && off < s.curEnd {
		s.cut(off)
	}
}

func (s *segments) cut(off int64) {
	// A failed truncate leaves garbage past curEnd that the next append (or the
	// next open) overwrites or cuts; nothing points at it.
	s.cur.Truncate(off)
	s.curEnd = off
}

func (s *segments) roll() error {
	next := s.curNum + 1
	f, err := os.OpenFile(filepath.Join(s.dir, segmentName(next)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: new segment: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	s.cur.Close()
	s.cur, s.curNum, s.curEnd = f, next, 0
	return nil
}

// readAt reads one payload.
func (s *segments) readAt(num, off, n int64) ([]byte, error) {
	f, err := s.reader(num)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		return nil, fmt.Errorf("sqlite: segment %d read: %w", num, err)
	}
	return buf, nil
}

func (s *segments) reader(num int64) (*os.File, error) {
	s.mu.RLock()
	f := s.files[num]
	s.mu.RUnlock()
	if f != nil {
		return f, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.files[num]; f != nil {
		return f, nil
	}
	f, err := os.Open(filepath.Join(s.dir, segmentName(num)))
	if err != nil {
		return nil, fmt.Errorf("sqlite: segment %d: %w", num, err)
	}
	s.files[num] = f
	return f, nil
}

func (s *segments) close() error {
	var errs []error
	if s.cur != nil {
		errs = append(errs, s.cur.Close())
	}
	s.mu.Lock()
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	s.files = nil
	s.mu.Unlock()
	return errors.Join(errs...)
}

// syncDir makes a created or removed file's directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sqlite: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sqlite: sync dir: %w", err)
	}
	return nil
}
