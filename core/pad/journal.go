package pad

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Entry is one journal line. It never carries secrets.
type Entry struct {
	Time    time.Time `json:"time"`
	Session string    `json:"session"`
	Stage   string    `json:"stage,omitempty"`
	// Event is "start", "end", "fail" or "info".
	Event string `json:"event"`
	// DurationMS is the stage's monotonic duration, on "end" and "fail".
	DurationMS float64        `json:"duration_ms,omitempty"`
	Error      string         `json:"error,omitempty"`
	Message    string         `json:"message,omitempty"`
	Fields     map[string]any `json:"fields,omitempty"`
}

// Journal appends entries for one session to journal/<time>-<session>.jsonl.
type Journal struct {
	mu      sync.Mutex
	path    string
	session string
}

// NewJournal starts the journal of a new session in dir.
func NewJournal(dir, session string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	name := time.Now().UTC().Format("20060102T150405Z") + "-" + session + ".jsonl"
	return &Journal{path: filepath.Join(dir, name), session: session}, nil
}

// Path is the journal file.
func (j *Journal) Path() string { return j.path }

// Append writes one entry and syncs it, so the journal survives a crash.
func (j *Journal) Append(e Entry) error {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	e.Session = j.session
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(j.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return f.Sync()
}

// ReadJournal reads every session's entries in dir, oldest first. A torn
// last line (power cut mid-write) is skipped.
func ReadJournal(dir string) ([]Entry, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []Entry
	for _, fn := range files {
		f, err := os.Open(fn)
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		es, err := parseJournal(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("journal %s: %w", fn, err)
		}
		out = append(out, es...)
	}
	sort.SliceStable(out, func(i, k int) bool { return out[i].Time.Before(out[k].Time) })
	return out, nil
}

// LastSession returns the entries of the most recent run in dir: the
// journals of maintenance commands (points, backup, credential, store,
// named "<command>-<id>") are not sessions.
func LastSession(dir string) ([]Entry, error) {
	all, err := ReadJournal(dir)
	if err != nil || len(all) == 0 {
		return nil, err
	}
	last := ""
	for i := len(all) - 1; i >= 0 && last == ""; i-- {
		if s := all[i].Session; s != "" && !strings.Contains(s, "-") {
			last = s
		}
	}
	if last == "" {
		return nil, nil
	}
	var out []Entry
	for _, e := range all {
		if e.Session == last {
			out = append(out, e)
		}
	}
	return out, nil
}

// maxEntry bounds one journal line; a longer one (a damaged file) is
// skipped, and the lines after it are still read.
const maxEntry = 4 << 20

// parseJournal reads JSON lines; lines that are not entries are skipped.
func parseJournal(r io.Reader) ([]Entry, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out []Entry
	for {
		var line []byte
		long := false
		for {
			frag, err := br.ReadSlice('\n')
			if !long {
				if len(line)+len(frag) > maxEntry {
					long, line = true, nil
				} else {
					line = append(line, frag...)
				}
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil && err != io.EOF {
				return out, err
			}
			if !long {
				if t := bytes.TrimSpace(line); len(t) > 0 {
					var e Entry
					if json.Unmarshal(t, &e) == nil {
						out = append(out, e)
					}
				}
			}
			if err == io.EOF {
				return out, nil
			}
			break
		}
	}
}
