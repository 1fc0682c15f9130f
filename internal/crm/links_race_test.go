package crm

import (
	"log/slog"
	"testing"
	"time"
)

// TestLateRequestDoesNotReopenAnAnswer: the store's tail can apply the
// worker's answer to an appointment before PutAll applies the request it
// answers (seen under load in the demo: one link pending for good while
// the topic's last record for it was the answer).
func TestLateRequestDoesNotReopenAnAnswer(t *testing.T) {
	s := NewStore(nil, "links", nil, slog.New(slog.DiscardHandler))
	asked := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	req := Link{Kind: KindAppointment, Tenant: "salon-aurora", SessionID: "s1", AppointmentID: "s1-a1", State: StatePending, Updated: asked}
	ans := req
	ans.State, ans.ActivityID = StateDone, "77"

	s.apply(req.Key(), ans) // the tail first
	s.apply(req.Key(), req) // then PutAll's own apply
	if n := s.Pending(); n != 0 {
		t.Fatalf("%d pending after the answer, want 0", n)
	}
	// Asked again later (a replay after the answers were forgotten): open.
	again := req
	again.Updated = asked.Add(time.Hour)
	s.apply(req.Key(), again)
	if n := s.Pending(); n != 1 {
		t.Fatalf("%d pending after a new request, want 1", n)
	}
}
