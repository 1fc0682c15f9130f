package demo

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/event"
)

var testEnd = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

func loadAll(t *testing.T) ([]Dialogue, string) {
	t.Helper()
	dir, err := FindDataDir()
	if err != nil {
		t.Fatalf("the shared dialogues are part of the project's inputs: %v", err)
	}
	ds, err := LoadDialogues(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ds, dir
}

func testConfig() Config {
	c := DefaultConfig()
	c.End = testEnd
	return c
}

func encodeAll(t *testing.T, evs []event.Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	for i := range evs {
		b, err := evs[i].Marshal()
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

func TestDeterministic(t *testing.T) {
	ds, _ := loadAll(t)
	a, _, err := Generate(ds, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := Generate(ds, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(encodeAll(t, a), encodeAll(t, b)) {
		t.Fatal("two runs with the same seed and end produced different output")
	}
	other := testConfig()
	other.Seed = 2
	c, _, err := Generate(ds, other)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(encodeAll(t, a), encodeAll(t, c)) {
		t.Fatal("a different seed produced identical output")
	}
	// A dialogue's events do not depend on the others: generating a subset
	// yields the same events for the sessions in it.
	sub, _, err := Generate(ds[:10], testConfig())
	if err != nil {
		t.Fatal(err)
	}
	full := map[string]string{}
	for i := range a {
		b, _ := a[i].Marshal()
		full[a[i].EventID] = string(b)
	}
	for i := range sub {
		b, _ := sub[i].Marshal()
		if full[sub[i].EventID] != string(b) {
			t.Fatalf("event %s differs when generated from a subset", sub[i].EventID)
		}
	}
}

// countNotifySuccess counts, straight from the raw files and without the
// generator's types, NOTIFY_SUCCESS acts of BookAppointment calls in
// Services_* frames.
func countNotifySuccess(t *testing.T, dir string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	n := 0
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var d map[string]any
			if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
				t.Fatal(err)
			}
			for _, turn := range d["turns"].([]any) {
				for _, fr := range turn.(map[string]any)["frames"].([]any) {
					frame := fr.(map[string]any)
					if !strings.HasPrefix(frame["service"].(string), "Services_") {
						continue
					}
					call, _ := frame["service_call"].(map[string]any)
					if call == nil || call["method"] != "BookAppointment" {
						continue
					}
					for _, a := range frame["actions"].([]any) {
						if a.(map[string]any)["act"] == "NOTIFY_SUCCESS" {
							n++
						}
					}
				}
			}
		}
		fh.Close()
	}
	return n
}

func TestConfirmedEqualsNotifySuccess(t *testing.T) {
	ds, dir := loadAll(t)
	want := countNotifySuccess(t, dir)
	// The dataset README states 911 in train; dev adds its own.
	if want < 911 {
		t.Fatalf("independent count found only %d NOTIFY_SUCCESS acts", want)
	}
	evs, truth, err := Generate(ds, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for i := range evs {
		if evs[i].Type == event.AppointmentConfirmed {
			got++
		}
	}
	if got != want {
		t.Errorf("appointment.confirmed = %d, NOTIFY_SUCCESS in the data = %d", got, want)
	}
	if truth.ByType[string(event.AppointmentConfirmed)] != want {
		t.Errorf("truth says %d confirmed, want %d", truth.ByType[string(event.AppointmentConfirmed)], want)
	}
}

func TestEveryEventValidates(t *testing.T) {
	ds, _ := loadAll(t)
	evs, truth, err := Generate(ds, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for i := range evs {
		b, err := evs[i].Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := event.Parse(b); err != nil {
			t.Fatalf("generated event does not validate: %v\n%s", err, b)
		}
		if ids[evs[i].EventID] {
			t.Fatalf("duplicate event_id %s", evs[i].EventID)
		}
		ids[evs[i].EventID] = true
	}
	if truth.Events != len(evs) || truth.Sessions != len(ds) {
		t.Errorf("truth events=%d sessions=%d, want %d and %d", truth.Events, truth.Sessions, len(evs), len(ds))
	}
}

func TestSessionStory(t *testing.T) {
	ds, _ := loadAll(t)
	evs, truth, err := Generate(ds, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	type state struct {
		consent, lead, confirmed, handoff, manager bool
		last                                       time.Time
	}
	sessions := map[string]*state{}
	classified, low := 0, 0
	for i := range evs {
		e := &evs[i]
		s := sessions[e.SessionID]
		if s == nil {
			if e.Type != event.SessionStarted {
				t.Fatalf("session %s starts with %s", e.SessionID, e.Type)
			}
			s = &state{}
			sessions[e.SessionID] = s
		}
		if ts := e.Time(); ts.Before(s.last) {
			t.Fatalf("session %s goes back in time at %s", e.SessionID, e.EventID)
		} else {
			s.last = ts
		}
		if !e.Time().Before(testEnd) {
			t.Fatalf("event %s at %s is after the window end", e.EventID, e.Timestamp)
		}
		if e.UserPhone != "" && !s.consent {
			t.Fatalf("%s carries a phone number before consent was given", e.EventID)
		}
		switch e.Type {
		case event.ConsentGiven:
			s.consent = true
		case event.LeadCreated:
			if !s.consent || e.UserPhone == "" {
				t.Fatalf("lead %s without consent or phone", e.EventID)
			}
			if s.lead {
				t.Fatalf("second lead in session %s", e.SessionID)
			}
			s.lead = true
		case event.AppointmentConfirmed:
			if !s.lead {
				t.Fatalf("appointment confirmed before a lead in %s", e.SessionID)
			}
			s.confirmed = true
		case event.AppointmentAttended, event.AppointmentNoShow:
			if !s.confirmed {
				t.Fatalf("%s for an appointment never confirmed", e.EventID)
			}
		case event.HandoffRequested:
			s.handoff = true
		case event.ManagerJoined:
			if !s.handoff {
				t.Fatalf("manager joined without a handoff in %s", e.SessionID)
			}
			s.manager = true
		}
		if e.Confidence != nil {
			classified++
			if *e.Confidence < event.LowConfidence {
				low++
			}
		}
	}
	share := float64(low) / float64(classified)
	if share < 0.06 || share > 0.10 {
		t.Errorf("low-confidence share = %.3f over %d classified turns, configured 0.08", share, classified)
	}
	if truth.LowConfidence != low {
		t.Errorf("truth low_confidence = %d, counted %d", truth.LowConfidence, low)
	}
	handoffs := 0
	for _, s := range sessions {
		if s.handoff {
			handoffs++
		}
	}
	if handoffs == 0 || truth.ByType[string(event.ManagerJoined)] != handoffs {
		t.Errorf("handoffs = %d, manager.joined = %d", handoffs, truth.ByType[string(event.ManagerJoined)])
	}
	for _, ch := range event.Channels {
		if truth.ByChannel[ch] == 0 {
			t.Errorf("no events on channel %s", ch)
		}
	}
	if len(truth.ByTenant) < 6 {
		t.Errorf("only %d tenants", len(truth.ByTenant))
	}
}

func TestTunableRates(t *testing.T) {
	ds, _ := loadAll(t)
	cfg := testConfig()
	cfg.ErrorRate = 0
	cfg.LowConfidenceShare = 0
	cfg.HandoffRate = 0
	_, quiet, err := Generate(ds, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if quiet.ByType["error"] != 0 || quiet.LowConfidence != 0 || quiet.ByType["handoff.requested"] != 0 {
		t.Errorf("rates at zero still produced errors=%d low=%d handoffs=%d", quiet.ByType["error"], quiet.LowConfidence, quiet.ByType["handoff.requested"])
	}
	cfg.ErrorRate = 0.2
	_, noisy, err := Generate(ds, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, sent := noisy.ByType["error"], noisy.ByType["message.sent"]; float64(got) < 0.15*float64(sent) || float64(got) > 0.25*float64(sent) {
		t.Errorf("error rate 0.2 gave %d errors for %d assistant turns", got, sent)
	}
	cfg.Rounds = 2
	_, twice, err := Generate(ds, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if twice.Sessions != 2*len(ds) || twice.ByType["appointment.confirmed"] != 2*quiet.ByType["appointment.confirmed"] {
		t.Errorf("2 rounds: %d sessions, %d confirmed", twice.Sessions, twice.ByType["appointment.confirmed"])
	}
	bad := testConfig()
	bad.ErrorRate = 1.5
	if _, _, err := Generate(ds, bad); err == nil || !strings.Contains(err.Error(), "error_rate: must be between 0 and 1, got 1.5") {
		t.Errorf("invalid config error = %v", err)
	}
}

func TestWriteFilesWithRotation(t *testing.T) {
	ds, _ := loadAll(t)
	evs, _, err := Generate(ds[:200], testConfig())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	paths, err := WriteFiles(evs, FileOptions{Dir: dir, Files: 3, RotateBytes: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) <= 3 {
		t.Fatalf("expected rotated files, got %v", paths)
	}
	seen := map[string]bool{}
	sessionFile := map[string]string{}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 256<<10 {
			t.Errorf("%s is %d bytes, above the rotation size", p, fi.Size())
		}
		b, _ := os.ReadFile(p)
		base := strings.SplitN(filepath.Base(p), ".jsonl", 2)[0]
		for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			e, err := event.Parse(line)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if seen[e.EventID] {
				t.Fatalf("event %s written twice", e.EventID)
			}
			seen[e.EventID] = true
			if f, ok := sessionFile[e.SessionID]; ok && f != base {
				t.Fatalf("session %s split over %s and %s", e.SessionID, f, base)
			}
			sessionFile[e.SessionID] = base
		}
	}
	if len(seen) != len(evs) {
		t.Errorf("files hold %d events, generated %d", len(seen), len(evs))
	}
}
