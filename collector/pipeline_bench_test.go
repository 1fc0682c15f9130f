package main

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/mapping"
)

// BenchmarkDecode measures what a mapping adds per line: a v1 line as
// written, the business's documented line through the built-in profile,
// and a chatbot platform's line through a mapping with renames, value
// maps and a zoned layout. Run: go test -run '^$' -bench Decode ./collector/
func BenchmarkDecode(b *testing.B) {
	p, err := newPipeline("events", "dlq", nil, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	v1 := []byte(`{"event_id":"e-1","timestamp":"2025-01-01T12:34:56+03:00","tenant":"salon-aurora","channel":"whatsapp","session_id":"sess_12345","user_phone":"+79161234567","event_type":"appointment.confirmed","level":"info","intent":"book_appointment","confidence":0.92,"crm_id":"789","payload":{"appointment_id":"a-1"},"schema_version":1}`)
	business := []byte(`{ "timestamp":"2025-01-01T12:34:56+03:00", "channel":"whatsapp", "session_id":"sess_12345", "user_phone":"+79161234567", "event_type":"appointment.confirmed", "intent":"book_appointment", "confidence":0.92, "crm_id":"LEAD_789" }`)
	panel := []byte(`{"dialog":{"id":"dlg-5521"},"kind":"incoming","messenger":"TG","created_at":"27.11.2026 14:05:09","client":{"id":998877},"message":{"text":"Хочу записаться на стрижку"},"bot_version":"3.2"}`)
	prof, err := mapping.Compile(mapping.Config{Profile: "business", Defaults: map[string]any{"tenant": "salon-aurora"}})
	if err != nil {
		b.Fatal(err)
	}
	plat, err := mapping.Compile(mapping.Config{
		Fields: map[string]mapping.Sources{"session_id": {"dialog.id"}, "event_type": {"kind"}, "channel": {"messenger"},
			"timestamp": {"created_at"}, "payload.text": {"message.text"}, "user_id": {"client.id"}},
		Values:          map[string]map[string]string{"channel": {"TG": "telegram"}, "event_type": {"incoming": "message.received"}},
		Defaults:        map[string]any{"tenant": "clinic-nova", "level": "info", "schema_version": 1},
		TimestampFormat: "02.01.2006 15:04:05", TimeZone: "Asia/Yekaterinburg", Unmapped: "payload",
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		line []byte
		m    *mapping.Mapping
	}{{"v1", v1, nil}, {"business-profile", business, prof}, {"platform-mapping", panel, plat}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.line)))
			for i := 0; i < b.N; i++ {
				if d := p.decode(c.line, func() string { return "f-x-1" }, deadletter.Record{Source: "bench"}, c.m); d.rejected != nil {
					b.Fatal(d.rejected.Error)
				}
			}
		})
	}
}
