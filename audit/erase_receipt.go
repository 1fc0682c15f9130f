package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/assistlog/assistlog/internal/archive"
	"github.com/assistlog/assistlog/internal/output"
	"github.com/assistlog/assistlog/internal/tenants"
)

// Receipt is the record of one erasure: what (the person by phone hash and
// conversations, never the number), where (each store with the server's
// counts), when (UTC and the tenant's zone) and by whom.
type Receipt struct {
	Kind       string         `json:"receipt"`
	RequestID  string         `json:"request_id"`
	DryRun     bool           `json:"dry_run"`
	Operator   string         `json:"operator"`
	Tenant     string         `json:"tenant"`
	TenantZone string         `json:"tenant_zone"`
	Started    Moment         `json:"started"`
	Finished   Moment         `json:"finished"`
	Subject    Subject        `json:"subject"`
	Stores     []StoreErasure `json:"stores"`
	Loki       LokiErasure    `json:"loki"`
	Links      LinksErasure   `json:"crm_links"`
	Archive    ArchiveErasure `json:"archive"`
	Bitrix24   Bitrix24Note   `json:"bitrix24"`
	// NotErased names what this command does not reach, and why.
	NotErased []string `json:"not_erased"`
	Failures  []string `json:"failures,omitempty"`
}

// Moment is a time in UTC and in the tenant's zone.
type Moment struct {
	UTC   time.Time `json:"utc"`
	Local string    `json:"local"`
}

func moment(t time.Time, tn tenants.Tenant) Moment {
	return Moment{UTC: t.UTC(), Local: t.In(tn.Location()).Format(time.RFC3339)}
}

// Subject is whose data: the keyed hash of the number, never the number.
type Subject struct {
	PhoneHashes     []string `json:"phone_hashes"`
	SessionsGiven   []string `json:"sessions_given"`
	SessionsByPhone []string `json:"sessions_found_by_phone"`
	Sessions        []string `json:"sessions"`
}

// ArchiveErasure is the Parquet archive's part of the receipt.
type ArchiveErasure struct {
	Configured bool   `json:"configured"`
	Location   string `json:"location,omitempty"`
	archive.Erased
	Note string `json:"note,omitempty"`
}

// Bitrix24Note says the CRM was not touched and which leads the business
// may want to act on.
type Bitrix24Note struct {
	Touched bool     `json:"touched"`
	CRMIDs  []string `json:"crm_ids"`
	Note    string   `json:"note"`
}

func bitrix24Note(ids []string) Bitrix24Note {
	if ids == nil {
		ids = []string{}
	}
	return Bitrix24Note{CRMIDs: ids, Note: "Bitrix24 is the business's own record and was not changed; " +
		"the leads listed carry this person's conversations: the business decides whether to delete or anonymise them in the CRM."}
}

func newReceipt(now time.Time, tn tenants.Tenant, operator string, dry bool) *Receipt {
	return &Receipt{Kind: "assistlog erasure", RequestID: newRequestID(now), DryRun: dry, Operator: operator,
		Tenant: tn.Name, TenantZone: tn.Location().String(), Started: moment(now, tn),
		Subject: Subject{PhoneHashes: []string{}, SessionsGiven: []string{}, SessionsByPhone: []string{}, Sessions: []string{}},
		Stores:  []StoreErasure{},
		NotErased: []string{
			"Kafka events topic (assistant.events): raw events stay until the topic's retention (7 days by default) deletes them; a record cannot be removed from a Kafka log.",
			"Kafka dead-letter topic (assistant.deadletter): rejected input stays until its retention (30 days by default).",
			"Backups and snapshots of the stores, if the business keeps any, are outside assistlog.",
		}}
}

// finish stamps the end time and fills empty lists, so the JSON always has
// the same shape.
func (r *Receipt) finish(now time.Time, tn tenants.Tenant) {
	r.Finished = moment(now, tn)
	if r.Links.Keys == nil {
		r.Links.Keys = []string{}
	}
	if r.Archive.Rewritten == nil {
		r.Archive.Rewritten = []string{}
	}
	if r.Archive.Deleted == nil {
		r.Archive.Deleted = []string{}
	}
}

func (er *eraser) eraseArchive(ctx context.Context, p *person, rec *Receipt) error {
	s3 := er.cfg.Archive.S3
	rec.Archive = ArchiveErasure{Configured: s3.Endpoint != ""}
	if s3.Endpoint == "" {
		rec.Archive.Note = "archive.s3.endpoint not set: no archive erased"
		return nil
	}
	rec.Archive.Location = strings.TrimSuffix(s3.Endpoint, "/") + "/" + s3.Bucket + "/" + s3.Prefix
	store, err := archive.NewStore(s3, er.pol)
	if err != nil {
		return fmt.Errorf("archive.s3: %w", err)
	}
	er.progress("reading the archive's objects of tenant %s", er.tenant.Name)
	res, err := store.EraseRows(ctx, archive.Erasure{Tenant: er.tenant.Name, EventIDs: p.eventIDs,
		SessionIDs: p.sessions, PhoneHashes: p.hashes, DryRun: er.dry})
	rec.Archive.Erased = res
	return err
}

// writeJSON writes the receipt.
func (r *Receipt) writeJSON(w io.Writer) error { return output.WriteJSON(w, r) }

// summary is the receipt as one table: a row per place.
func (r *Receipt) summary() *output.Table {
	t := &output.Table{Columns: []string{"PLACE", "WHERE", "WHAT", "FOUND", "ERASED", "LEFT", "DETAIL"}}
	erased := func(n int) string {
		if r.DryRun {
			return "(dry run)"
		}
		return strconv.Itoa(n)
	}
	for _, s := range r.Stores {
		left := strconv.Itoa(s.Remaining)
		if r.DryRun || s.Note != "" {
			left = "—"
		}
		t.Add(s.Store, s.URL+" "+s.Index, s.What, strconv.Itoa(s.Matched), erased(s.Deleted), left, s.Note)
	}
	if r.Loki.Configured {
		detail := "request " + r.Loki.RequestID + " " + r.Loki.Status
		if r.DryRun {
			detail = ""
		}
		t.Add("loki", r.Loki.URL, "lines", strconv.Itoa(r.Loki.Lines), erased(r.Loki.Lines), "—", strings.TrimSpace(detail+" "+r.Loki.Note))
	} else {
		t.Add("loki", "—", "lines", "—", "—", "—", r.Loki.Note)
	}
	if r.Links.Configured {
		detail := ""
		if r.Links.Verified && !r.DryRun {
			detail = "latest record of each key is a tombstone"
		}
		t.Add("kafka", r.Links.Topic, "crm link keys", strconv.Itoa(len(r.Links.Keys)), erased(r.Links.Tombstones), "—", detail)
	} else {
		t.Add("kafka", "—", "crm link keys", "—", "—", "—", r.Links.Note)
	}
	if r.Archive.Configured {
		t.Add("archive", r.Archive.Location, "parquet rows", strconv.Itoa(r.Archive.Rows), erased(r.Archive.Rows), "—",
			fmt.Sprintf("%d object(s) rewritten, %d deleted", len(r.Archive.Rewritten), len(r.Archive.Deleted)))
	} else {
		t.Add("archive", "—", "parquet rows", "—", "—", "—", r.Archive.Note)
	}
	t.Add("bitrix24", "—", "leads", strconv.Itoa(len(r.Bitrix24.CRMIDs)), "not touched", "—", strings.Join(r.Bitrix24.CRMIDs, " "))
	return t
}

func (r *Receipt) writeTable(w io.Writer) error {
	mode := "erased"
	if r.DryRun {
		mode = "DRY RUN, nothing deleted"
	}
	fmt.Fprintf(w, "Erasure %s (%s) — tenant %s, %d conversation(s): %s\n", r.RequestID, mode, r.Tenant,
		len(r.Subject.Sessions), strings.Join(r.Subject.Sessions, " "))
	if err := r.summary().Write(w, "table"); err != nil {
		return err
	}
	for _, f := range r.Failures {
		fmt.Fprintln(w, "FAILED:", f)
	}
	return nil
}

// writeReceipt writes the JSON receipt to path and its Markdown rendering
// next to it.
func writeReceipt(path string, r *Receipt) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--receipt: %w", err)
	}
	if err := r.writeJSON(f); err != nil {
		f.Close()
		return fmt.Errorf("--receipt %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--receipt %s: %w", path, err)
	}
	md, err := os.Create(markdownPath(path))
	if err != nil {
		return fmt.Errorf("--receipt: %w", err)
	}
	if err := r.writeMarkdown(md); err != nil {
		md.Close()
		return fmt.Errorf("--receipt %s: %w", markdownPath(path), err)
	}
	return md.Close()
}

// writeMarkdown renders the receipt for people: Russian headings, the
// same facts as the JSON.
func (r *Receipt) writeMarkdown(w io.Writer) error {
	title := "Акт об удалении персональных данных"
	if r.DryRun {
		title = "Проверка перед удалением персональных данных (пробный запуск: ничего не удалено)"
	}
	fmt.Fprintf(w, "# %s\n\n", title)
	fmt.Fprintf(w, "- Номер запроса: `%s`\n", r.RequestID)
	fmt.Fprintf(w, "- Исполнитель: %s\n", r.Operator)
	fmt.Fprintf(w, "- Компания (tenant): `%s`, часовой пояс %s\n", r.Tenant, r.TenantZone)
	fmt.Fprintf(w, "- Начало: %s (UTC %s)\n", r.Started.Local, r.Started.UTC.Format(time.RFC3339))
	fmt.Fprintf(w, "- Окончание: %s (UTC %s)\n\n", r.Finished.Local, r.Finished.UTC.Format(time.RFC3339))
	fmt.Fprintf(w, "## Чьи данные\n\n")
	fmt.Fprintf(w, "Номер телефона не хранится и не приводится; только его ключевой хэш (HMAC-SHA256):\n\n")
	for _, h := range r.Subject.PhoneHashes {
		fmt.Fprintf(w, "- `%s`\n", h)
	}
	if len(r.Subject.PhoneHashes) == 0 {
		fmt.Fprintf(w, "- (по номеру не искали: диалоги указаны напрямую)\n")
	}
	fmt.Fprintf(w, "\nДиалоги (session_id): %s\n\n", codeList(r.Subject.Sessions))
	fmt.Fprintf(w, "## Где и сколько\n\n")
	if err := r.summary().Write(w, "md"); err != nil {
		return err
	}
	if r.Loki.RequestID != "" {
		// The query holds backticks: a double-backtick code span keeps them.
		fmt.Fprintf(w, "\nLoki: запрос на удаление `%s`, статус `%s`, выборка `` %s `` с %s.\n", r.Loki.RequestID, r.Loki.Status,
			r.Loki.Query, r.Loki.Start.Format(time.RFC3339))
	}
	if len(r.Archive.Rewritten)+len(r.Archive.Deleted) > 0 {
		fmt.Fprintf(w, "\nАрхив: перезаписаны без этих строк: %s; удалены целиком: %s.\n", codeList(r.Archive.Rewritten), codeList(r.Archive.Deleted))
	}
	fmt.Fprintf(w, "\n## Bitrix24\n\nCRM не изменялась: это собственный учёт компании. Лиды с диалогами этого человека: %s. "+
		"Удалить или обезличить их в CRM решает компания.\n", codeList(r.Bitrix24.CRMIDs))
	fmt.Fprintf(w, "\n## Что не удаляется этой командой\n\n")
	for _, n := range r.NotErased {
		fmt.Fprintf(w, "- %s\n", n)
	}
	if len(r.Failures) > 0 {
		fmt.Fprintf(w, "\n## ОШИБКИ — удаление не завершено\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(w, "- %s\n", f)
		}
	}
	return nil
}

func codeList(xs []string) string {
	if len(xs) == 0 {
		return "нет"
	}
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = "`" + x + "`"
	}
	return strings.Join(q, ", ")
}

// readReceipt decodes a receipt written by writeJSON.
func readReceipt(b []byte) (*Receipt, error) {
	var r Receipt
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
