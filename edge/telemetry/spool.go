package telemetry

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/persiv/codex/shared/wire"
)

// Spool holds encoded batches that are not yet acknowledged, one file per
// sequence number, so they survive restarts and go out in order. It is
// bounded in count and bytes; past a bound the oldest batches are dropped
// (and counted), since the newest usage is the most useful.
type Spool struct {
	dir        string
	maxBatches int
	maxBytes   int64

	mu      sync.Mutex
	entries []spoolEntry // ascending seq
	bytes   int64
	dropped int64
}

type spoolEntry struct {
	seq  int64
	size int64
}

// OpenSpool opens the spool in dir, keeping at most maxBatches batches and
// maxBytes bytes.
func OpenSpool(dir string, maxBatches int, maxBytes int64) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{dir: dir, maxBatches: maxBatches, maxBytes: maxBytes}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), ".batch")
		if !ok {
			continue
		}
		seq, err := strconv.ParseInt(name, 10, 64)
		if err != nil || seq < 1 {
			continue
		}
		info, err := de.Info()
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		s.entries = append(s.entries, spoolEntry{seq, info.Size()})
		s.bytes += info.Size()
	}
	slices.SortFunc(s.entries, func(a, b spoolEntry) int { return int(a.seq - b.seq) })
	return s, nil
}

func (s *Spool) file(seq int64) string { return filepath.Join(s.dir, fmt.Sprintf("%020d.batch", seq)) }

// Put stores a batch and returns how many old batches the bounds dropped.
func (s *Spool) Put(seq int64, data []byte) (dropped int, err error) {
	if err := writeFileAtomic(s.file(seq), data); err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries = append(s.entries, spoolEntry{seq, int64(len(data))})
	s.bytes += int64(len(data))
	for len(s.entries) > 1 && (len(s.entries) > s.maxBatches || s.bytes > s.maxBytes) {
		old := s.entries[0]
		if err := os.Remove(s.file(old.seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return dropped, fmt.Errorf("spool: drop oldest: %w", err)
		}
		s.entries = s.entries[1:]
		s.bytes -= old.size
		s.dropped++
		dropped++
	}
	return dropped, nil
}

// Oldest returns the oldest batch; ok is false when the spool is empty.
func (s *Spool) Oldest() (seq int64, data []byte, ok bool, err error) {
	s.mu.Lock()
	if len(s.entries) == 0 {
		s.mu.Unlock()
		return 0, nil, false, nil
	}
	seq = s.entries[0].seq
	s.mu.Unlock()
	data, err = os.ReadFile(s.file(seq))
	if err != nil {
		return seq, nil, false, fmt.Errorf("spool: %w", err)
	}
	return seq, data, true, nil
}

// Remove deletes an acknowledged batch.
func (s *Spool) Remove(seq int64) error {
	if err := os.Remove(s.file(seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := slices.IndexFunc(s.entries, func(e spoolEntry) bool { return e.seq == seq }); i >= 0 {
		s.bytes -= s.entries[i].size
		s.entries = slices.Delete(s.entries, i, i+1)
	}
	return nil
}

// SpoolStats describe the spool.
type SpoolStats struct {
	Batches    int   `json:"batches"`
	Bytes      int64 `json:"bytes"`
	MaxBatches int   `json:"max_batches"`
	MaxBytes   int64 `json:"max_bytes"`
	Dropped    int64 `json:"dropped"` // batches dropped by the bounds since start
	MaxSeq     int64 `json:"-"`
}

// Stats returns the spool's depth and bounds.
func (s *Spool) Stats() SpoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SpoolStats{Batches: len(s.entries), Bytes: s.bytes, MaxBatches: s.maxBatches, MaxBytes: s.maxBytes, Dropped: s.dropped}
	if n := len(s.entries); n > 0 {
		st.MaxSeq = s.entries[n-1].seq
	}
	return st
}

// LedgerEntry is one line of the egress ledger: a batch as it left, or
// (Kind KindEnrollment) the enrollment exchange.
type LedgerEntry struct {
	// Kind is empty for a usage batch, KindEnrollment for the enrollment
	// exchange, whose Batch is an EnrollmentRecord and whose Seq is 0.
	Kind    string    `json:"kind,omitempty"`
	Time    time.Time `json:"time"`     // when it was handed to NATS (first attempt)
	NATSURL string    `json:"nats_url"` // where to
	Subject string    `json:"subject"`
	MsgID   string    `json:"msg_id"` // Nats-Msg-Id
	Seq     int64     `json:"seq"`
	// Instance is the replica that wrote the entry (Options.Instance).
	Instance string `json:"instance,omitempty"`
	Bytes    int    `json:"bytes"`
	SHA256   string `json:"sha256"` // of the exact bytes sent
	// Batch is the exact message body that was published.
	Batch json.RawMessage `json:"batch"`
}

// KindEnrollment marks the ledger entry of an enrollment exchange.
const KindEnrollment = "enrollment"

// Elided stands in the ledger for a secret that left or arrived: the
// enrollment token and the NATS user JWT.
const Elided = "(elided)"

// EnrollmentRecord is what the ledger keeps of an enrollment exchange:
// the request and the control plane's answer, with their secrets elided.
type EnrollmentRecord struct {
	URL      string               `json:"url"`
	Status   int                  `json:"status"`
	Request  wire.EnrollRequest   `json:"request"`
	Response *wire.EnrollResponse `json:"response,omitempty"`
	Error    string               `json:"error,omitempty"`
}

// Ledger is the append-only egress ledger.
type Ledger struct {
	mu   sync.Mutex
	path string
}

// NewLedger returns the ledger kept in the file at path.
func NewLedger(path string) *Ledger { return &Ledger{path: path} }

// Append appends e for data to the ledger and syncs it to disk.
func (l *Ledger) Append(e LedgerEntry, data []byte) error {
	sum := sha256.Sum256(data)
	e.Bytes, e.SHA256, e.Batch = len(data), hex.EncodeToString(sum[:]), json.RawMessage(data)
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		_ = f.Close()
		return fmt.Errorf("ledger: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("ledger: %w", err)
	}
	return f.Close()
}

// ReadLedger reads the ledger at path, oldest first; a missing ledger is
// empty. A torn last line (a crash mid-append) is skipped.
func ReadLedger(path string) ([]LedgerEntry, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	defer func() { _ = f.Close() }() // read only
	return ParseLedger(f)
}

// ParseLedger parses ledger lines from r.
func ParseLedger(r io.Reader) ([]LedgerEntry, error) {
	var out []LedgerEntry
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var e LedgerEntry
			if uerr := json.Unmarshal(line, &e); uerr != nil {
				if errors.Is(err, io.EOF) {
					return out, nil // torn last line
				}
				return out, fmt.Errorf("ledger line %d: %w", n, uerr)
			}
			out = append(out, e)
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("ledger: %w", err)
		}
	}
}
