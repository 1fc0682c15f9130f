package alerts

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"
)

// Thresholds are the content alerts' settings (loki/thresholds.yaml):
// defaults, and per-tenant overrides of any part.
type Thresholds struct {
	Defaults TenantThresholds            `yaml:"defaults"`
	Tenants  map[string]TenantThresholds `yaml:"tenants"`
}

// TenantThresholds holds each alert's settings; in an override, unset
// fields keep the default.
type TenantThresholds struct {
	ErrorSpike     *ErrorSpike     `yaml:"error_spike"`
	LowConfidence  *LowConfidence  `yaml:"low_confidence"`
	Complaints     *Complaints     `yaml:"complaints"`
	BookingSilence *BookingSilence `yaml:"booking_silence"`
}

type ErrorSpike struct {
	Count  int     `yaml:"count"`
	Share  float64 `yaml:"share"`
	Window string  `yaml:"window"`
}

type LowConfidence struct {
	Count  int     `yaml:"count"`
	Below  float64 `yaml:"below"`
	Window string  `yaml:"window"`
}

type Complaints struct {
	Count  int    `yaml:"count"`
	Window string `yaml:"window"`
}

type BookingSilence struct {
	Messages int    `yaml:"messages"`
	Window   string `yaml:"window"`
	For      string `yaml:"for"`
}

var (
	duration   = regexp.MustCompile(`^[0-9]+[smhd]$`)
	tenantName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
)

// ParseThresholds reads and checks a thresholds file; errors name the
// field.
func ParseThresholds(b []byte) (Thresholds, error) {
	var t Thresholds
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		return t, fmt.Errorf("thresholds: %w", err)
	}
	d := t.Defaults
	if d.ErrorSpike == nil || d.LowConfidence == nil || d.Complaints == nil || d.BookingSilence == nil {
		return t, errors.New("thresholds: defaults needs error_spike, low_confidence, complaints and booking_silence")
	}
	var errs []error
	check := func(field string, ok bool) {
		if !ok {
			errs = append(errs, fmt.Errorf("thresholds: %s: out of range", field))
		}
	}
	for _, name := range append([]string{""}, t.tenantNames()...) {
		prefix, v := "defaults.", t.Defaults
		if name != "" {
			prefix, v = "tenants."+name+".", t.For(name)
			// Names go into LogQL matchers as they are: no regexp metacharacters.
			check("tenants."+name+" (a tenant name: a-z, 0-9, _ and -)", tenantName.MatchString(name))
		}
		check(prefix+"error_spike.count", v.ErrorSpike.Count > 0)
		check(prefix+"error_spike.share", v.ErrorSpike.Share >= 0 && v.ErrorSpike.Share < 1)
		check(prefix+"low_confidence.count", v.LowConfidence.Count > 0)
		check(prefix+"low_confidence.below", v.LowConfidence.Below > 0 && v.LowConfidence.Below <= 1)
		check(prefix+"complaints.count", v.Complaints.Count > 0)
		check(prefix+"booking_silence.messages", v.BookingSilence.Messages > 0)
		for f, w := range map[string]string{"error_spike.window": v.ErrorSpike.Window, "low_confidence.window": v.LowConfidence.Window,
			"complaints.window": v.Complaints.Window, "booking_silence.window": v.BookingSilence.Window, "booking_silence.for": v.BookingSilence.For} {
			check(prefix+f+" (a duration such as 10m)", duration.MatchString(w))
		}
	}
	return t, errors.Join(errs...)
}

func (t Thresholds) tenantNames() []string {
	names := make([]string, 0, len(t.Tenants))
	for n := range t.Tenants {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// For is a tenant's effective thresholds: its overrides over the defaults.
func (t Thresholds) For(tenant string) TenantThresholds {
	d, o := t.Defaults, t.Tenants[tenant]
	es, lc, c, bs := *d.ErrorSpike, *d.LowConfidence, *d.Complaints, *d.BookingSilence
	if v := o.ErrorSpike; v != nil {
		es = ErrorSpike{Count: or(v.Count, es.Count), Share: or(v.Share, es.Share), Window: or(v.Window, es.Window)}
	}
	if v := o.LowConfidence; v != nil {
		lc = LowConfidence{Count: or(v.Count, lc.Count), Below: or(v.Below, lc.Below), Window: or(v.Window, lc.Window)}
	}
	if v := o.Complaints; v != nil {
		c = Complaints{Count: or(v.Count, c.Count), Window: or(v.Window, c.Window)}
	}
	if v := o.BookingSilence; v != nil {
		bs = BookingSilence{Messages: or(v.Messages, bs.Messages), Window: or(v.Window, bs.Window), For: or(v.For, bs.For)}
	}
	return TenantThresholds{&es, &lc, &c, &bs}
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// ruleSet is one rendering of the four rules: for the tenants a selector
// matches.
type ruleSet struct {
	Selector string // the tenant matcher inside {…}, e.g. tenant="x"
	Scope    string // "every tenant" or "tenant x"
	T        TenantThresholds
}

// RenderLokiRules renders loki/assistlog.rules.yaml: one rule set for the
// tenants on the defaults and one per tenant with overrides.
func RenderLokiRules(t Thresholds) ([]byte, error) {
	names := t.tenantNames()
	shared := ruleSet{Scope: "every tenant without its own thresholds", T: t.For("")}
	if len(names) > 0 {
		shared.Selector = `, tenant!~"` + strings.Join(names, "|") + `"`
	}
	sets := []ruleSet{shared}
	for _, n := range names {
		sets = append(sets, ruleSet{Selector: `, tenant="` + n + `"`, Scope: "tenant " + n, T: t.For(n)})
	}
	var buf bytes.Buffer
	if err := lokiRules.Execute(&buf, sets); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var lokiRules = template.Must(template.New("rules").Funcs(template.FuncMap{
	"pct": func(f float64) string {
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", f*100), "0"), ".")
	},
}).Parse(`# assistlog content alerts: Loki ruler rules (LogQL) over the events the
# shipper pushes ({app="assistlog"}; labels tenant, channel, event_type,
# level; intent and session_id are structured metadata). Every rule is per
# tenant (sum by tenant), so one salon's trouble pages as that salon.
#
# GENERATED from thresholds.yaml by ` + "`go run ./alerts/cmd/lokirules`" + `: edit that file.
# Labels: severity, component="content" (inhibited while a pipeline program
# is down). Loaded by the real Loki ruler in alerts_test.go.
groups:
  - name: assistlog-content
    interval: 1m
    rules:
{{- range . }}
{{- $s := .Selector }}
      # {{ .Scope }}: errors ≥ {{ .T.ErrorSpike.Count }} and > {{ pct .T.ErrorSpike.Share }} % in {{ .T.ErrorSpike.Window }}
      - alert: AssistantErrorSpike
        expr: |
          (sum by (tenant) (count_over_time({app="assistlog", level="error"{{ $s }}}[{{ .T.ErrorSpike.Window }}])) >= {{ .T.ErrorSpike.Count }})
          and
          (
            sum by (tenant) (count_over_time({app="assistlog", level="error"{{ $s }}}[{{ .T.ErrorSpike.Window }}]))
            /
            sum by (tenant) (count_over_time({app="assistlog"{{ $s }}}[{{ .T.ErrorSpike.Window }}]))
          > {{ .T.ErrorSpike.Share }})
        labels:
          severity: critical
          component: content
        annotations:
          summary: "{{"{{"}} $labels.tenant {{"}}"}}: the assistant is failing ({{"{{"}} $value | printf \"%.0f\" {{"}}"}} errors in {{ .T.ErrorSpike.Window }})"
          description: "The assistant of {{"{{"}} $labels.tenant {{"}}"}} logged at least {{ .T.ErrorSpike.Count }} errors in {{ .T.ErrorSpike.Window }}, more than {{ pct .T.ErrorSpike.Share }}% of its events. Customers may be getting no answer."
          runbook_url: "https://github.com/assistlog/assistlog/blob/main/docs/runbooks/error-spike.md"
          dashboard_url: "/d/assistlog-overview/assistlog-assistant-overview?var-tenant={{"{{"}} $labels.tenant {{"}}"}}"

      # {{ .Scope }}: ≥ {{ .T.LowConfidence.Count }} events below {{ .T.LowConfidence.Below }} per intent in {{ .T.LowConfidence.Window }}
      - alert: AssistantLowConfidenceBurst
        expr: |
          sum by (tenant, intent) (
            count_over_time({app="assistlog"{{ $s }}} | json confidence="confidence" | confidence != "" and confidence < {{ .T.LowConfidence.Below }} [{{ .T.LowConfidence.Window }}])
          ) >= {{ .T.LowConfidence.Count }}
        labels:
          severity: warning
          component: content
        annotations:
          summary: "{{"{{"}} $labels.tenant {{"}}"}}: the assistant is unsure in scenario {{"{{"}} $labels.intent {{"}}"}}"
          description: "{{"{{"}} $value | printf \"%.0f\" {{"}}"}} events of {{"{{"}} $labels.tenant {{"}}"}} with intent {{"{{"}} $labels.intent {{"}}"}} had confidence below {{ .T.LowConfidence.Below }} in {{ .T.LowConfidence.Window }}: this scenario is failing (new wording, a missing service, a broken script)."
          runbook_url: "https://github.com/assistlog/assistlog/blob/main/docs/runbooks/low-confidence.md"
          dashboard_url: "/d/assistlog-audit/assistlog-audit?var-tenant={{"{{"}} $labels.tenant {{"}}"}}"

      # {{ .Scope }}: ≥ {{ .T.Complaints.Count }} complaints in {{ .T.Complaints.Window }}
      - alert: AssistantComplaintSpike
        expr: |
          sum by (tenant) (count_over_time({app="assistlog", event_type="complaint.received"{{ $s }}}[{{ .T.Complaints.Window }}])) >= {{ .T.Complaints.Count }}
        labels:
          severity: warning
          component: content
        annotations:
          summary: "{{"{{"}} $labels.tenant {{"}}"}}: {{"{{"}} $value | printf \"%.0f\" {{"}}"}} complaints in {{ .T.Complaints.Window }}"
          description: "Customers of {{"{{"}} $labels.tenant {{"}}"}} complained at least {{ .T.Complaints.Count }} times in {{ .T.Complaints.Window }} to the assistant."
          runbook_url: "https://github.com/assistlog/assistlog/blob/main/docs/runbooks/complaints.md"
          dashboard_url: "/d/assistlog-audit/assistlog-audit?var-tenant={{"{{"}} $labels.tenant {{"}}"}}"

      # {{ .Scope }}: ≥ {{ .T.BookingSilence.Messages }} messages and no booking in {{ .T.BookingSilence.Window }} for {{ .T.BookingSilence.For }}
      - alert: AssistantBookingSilence
        expr: |
          (sum by (tenant) (count_over_time({app="assistlog", event_type="message.received"{{ $s }}}[{{ .T.BookingSilence.Window }}])) >= {{ .T.BookingSilence.Messages }})
          unless
          (sum by (tenant) (count_over_time({app="assistlog", event_type="appointment.confirmed"{{ $s }}}[{{ .T.BookingSilence.Window }}])) > 0)
        for: {{ .T.BookingSilence.For }}
        labels:
          severity: warning
          component: content
        annotations:
          summary: "{{"{{"}} $labels.tenant {{"}}"}}: no booking in {{ .T.BookingSilence.Window }} while customers keep writing"
          description: "{{"{{"}} $labels.tenant {{"}}"}} received {{"{{"}} $value | printf \"%.0f\" {{"}}"}} customer messages in {{ .T.BookingSilence.Window }} and the assistant confirmed no appointment: the booking step (calendar, CRM, script) may be broken."
          runbook_url: "https://github.com/assistlog/assistlog/blob/main/docs/runbooks/booking-silence.md"
          dashboard_url: "/d/assistlog-overview/assistlog-assistant-overview?var-tenant={{"{{"}} $labels.tenant {{"}}"}}"
{{ end -}}
`))
