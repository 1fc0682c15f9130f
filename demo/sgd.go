package demo

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Dialogue is one SGD conversation, reduced to the fields the generator
// uses (see shared/data/sgd-services/README.md).
type Dialogue struct {
	ID       string   `json:"dialogue_id"`
	Services []string `json:"services"`
	Turns    []Turn   `json:"turns"`
}

// Turn is one utterance by USER or SYSTEM.
type Turn struct {
	Speaker   string  `json:"speaker"`
	Utterance string  `json:"utterance"`
	Frames    []Frame `json:"frames"`
}

// Frame is a turn's annotation for one service.
type Frame struct {
	Service     string       `json:"service"`
	Actions     []Action     `json:"actions"`
	ServiceCall *ServiceCall `json:"service_call"`
	State       *State       `json:"state"`
}

// Action is a dialogue act such as NOTIFY_SUCCESS.
type Action struct {
	Act    string   `json:"act"`
	Slot   string   `json:"slot"`
	Values []string `json:"values"`
}

// ServiceCall is what the assistant asked its back end to do.
type ServiceCall struct {
	Method     string            `json:"method"`
	Parameters map[string]string `json:"parameters"`
}

// State is the user's dialogue state after a USER turn.
type State struct {
	ActiveIntent string `json:"active_intent"`
}

// IsBookingService reports whether a frame belongs to one of the Services_*
// APIs (salons, dentists, doctors, therapists).
func (f Frame) IsBookingService() bool { return strings.HasPrefix(f.Service, "Services_") }

// has reports whether the frame carries the act.
func (f Frame) has(act string) bool {
	for _, a := range f.Actions {
		if a.Act == act {
			return true
		}
	}
	return false
}

// BookingResult says whether a SYSTEM turn reports a booking: "success"
// for NOTIFY_SUCCESS of a BookAppointment call in a Services_* frame,
// "failure" for NOTIFY_FAILURE, "" otherwise. The frame is returned too.
func (t Turn) BookingResult() (string, *Frame) {
	for i := range t.Frames {
		f := &t.Frames[i]
		if !f.IsBookingService() || f.ServiceCall == nil || f.ServiceCall.Method != "BookAppointment" {
			continue
		}
		switch {
		case f.has("NOTIFY_SUCCESS"):
			return "success", f
		case f.has("NOTIFY_FAILURE"):
			return "failure", f
		}
	}
	return "", nil
}

// callsBooking reports whether a SYSTEM turn calls BookAppointment.
func (t Turn) callsBooking() bool {
	for _, f := range t.Frames {
		if f.IsBookingService() && f.ServiceCall != nil && f.ServiceCall.Method == "BookAppointment" {
			return true
		}
	}
	return false
}

// intent returns the active intent of a USER turn, preferring a Services_*
// frame; "" when none (the dataset says "NONE").
func (t Turn) intent() string {
	var other string
	for _, f := range t.Frames {
		if f.State == nil || f.State.ActiveIntent == "" || f.State.ActiveIntent == "NONE" {
			continue
		}
		if f.IsBookingService() {
			return f.State.ActiveIntent
		}
		if other == "" {
			other = f.State.ActiveIntent
		}
	}
	return other
}

// bookingService returns the first Services_* service of the dialogue.
func (d Dialogue) bookingService() string {
	for _, s := range d.Services {
		if strings.HasPrefix(s, "Services_") {
			return s
		}
	}
	return ""
}

// LoadDialogues reads every *.jsonl file of dir, in name order.
func LoadDialogues(dir string) ([]Dialogue, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.jsonl dialogue files in %s", dir)
	}
	var out []Dialogue
	for _, f := range files {
		ds, err := loadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, ds...)
	}
	return out, nil
}

func loadFile(path string) ([]Dialogue, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Dialogue
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var d Dialogue
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, d)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

// FindDataDir locates shared/data/sgd-services: ASSISTLOG_SGD_DIR, or a
// "shared" folder in the working directory or any parent (CI clones the repo
// with shared/ beside it).
func FindDataDir() (string, error) {
	if d := os.Getenv("ASSISTLOG_SGD_DIR"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		cand := filepath.Join(d, "shared", "data", "sgd-services")
		if _, err := os.Stat(filepath.Join(cand, "train.jsonl")); err == nil {
			return cand, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("shared/data/sgd-services not found above %s (set ASSISTLOG_SGD_DIR)", wd)
		}
	}
}
