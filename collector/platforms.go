package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// The platform converters turn a notification in the platform's documented
// shape into v1 candidates (map form, so the hook's mapping can still
// adjust them). They produce only what the platform knows: a customer's
// message (message.received) and, for WhatsApp, a failed delivery
// (error). Intent, confidence, scenario, leads and appointments come from
// the assistant's own log. docs/ingest.md lists every case.

func v1Message(channel, session, user string, at time.Time, payload map[string]any) map[string]any {
	obj := map[string]any{
		"timestamp": at.UTC().Format(time.RFC3339Nano), "channel": channel, "session_id": session,
		"event_type": "message.received", "level": "info", "payload": payload, "schema_version": 1,
	}
	if user != "" {
		obj["user_id"] = user
	}
	return obj
}

// --- Telegram Bot API -------------------------------------------------

type tgUpdate struct {
	UpdateID      *int64          `json:"update_id"`
	Message       *tgMessage      `json:"message"`
	EditedMessage json.RawMessage `json:"edited_message"`
	CallbackQuery *struct {
		ID      string     `json:"id"`
		From    tgUser     `json:"from"`
		Message *tgMessage `json:"message"`
		Data    string     `json:"data"`
	} `json:"callback_query"`
}

type tgUser struct {
	ID    json.Number `json:"id"`
	IsBot bool        `json:"is_bot"`
}

type tgFile struct {
	FileID   string `json:"file_id"`
	MimeType string `json:"mime_type"`
}

type tgMessage struct {
	MessageID json.Number `json:"message_id"`
	From      *tgUser     `json:"from"`
	Chat      struct {
		ID   json.Number `json:"id"`
		Type string      `json:"type"`
	} `json:"chat"`
	Date      int64    `json:"date"`
	Text      string   `json:"text"`
	Caption   string   `json:"caption"`
	Photo     []tgFile `json:"photo"`
	Voice     *tgFile  `json:"voice"`
	Audio     *tgFile  `json:"audio"`
	Video     *tgFile  `json:"video"`
	VideoNote *tgFile  `json:"video_note"`
	Animation *tgFile  `json:"animation"`
	Document  *tgFile  `json:"document"`
	Sticker   *tgFile  `json:"sticker"`
	Contact   *struct {
		PhoneNumber string      `json:"phone_number"`
		UserID      json.Number `json:"user_id"`
	} `json:"contact"`
}

// telegramItems converts one Update: a message (text, caption, media) or
// a button press becomes message.received; other update kinds are no
// event.
func telegramItems(hookName string, body []byte) []item {
	var u tgUpdate
	if err := decodeNumber(body, &u); err != nil {
		return []item{{bad: "not a Telegram Update: " + err.Error()}}
	}
	if u.UpdateID == nil {
		return []item{{bad: "not a Telegram Update: update_id is missing"}}
	}
	id := "tg-" + hookName + "-" + strconv.FormatInt(*u.UpdateID, 10)
	switch {
	case u.Message != nil:
		it := telegramMessage(u.Message, "", id)
		return []item{it}
	case u.CallbackQuery != nil && u.CallbackQuery.Message != nil && u.CallbackQuery.Data != "":
		// A button press: what the customer chose is the callback data.
		cq := u.CallbackQuery
		m := *cq.Message
		m.From = &cq.From
		it := telegramMessage(&m, cq.Data, id)
		if it.obj != nil {
			it.obj["timestamp"] = time.Unix(m.Date, 0).UTC().Format(time.RFC3339Nano) // the press has no time of its own
			it.obj["payload"].(map[string]any)["callback_query_id"] = cq.ID
		}
		return []item{it}
	case u.EditedMessage != nil:
		return []item{{skipped: "telegram_edited_message"}}
	}
	return []item{{skipped: "telegram_other_update"}}
}

func telegramMessage(m *tgMessage, text, id string) item {
	if m.From != nil && m.From.IsBot {
		return item{skipped: "telegram_bot_message"}
	}
	if text == "" {
		text = m.Text
		if text == "" {
			text = m.Caption
		}
	}
	payload := map[string]any{"message_id": m.MessageID.String()}
	if text != "" {
		payload["text"] = text
	}
	var atts []any
	att := func(kind string, f *tgFile) {
		if f == nil || f.FileID == "" {
			return
		}
		a := map[string]any{"kind": kind, "id": f.FileID}
		if f.MimeType != "" {
			a["mime_type"] = f.MimeType
		}
		atts = append(atts, a)
	}
	if n := len(m.Photo); n > 0 {
		att("image", &m.Photo[n-1]) // sizes ascend; the largest is last
	}
	att("audio", m.Voice)
	att("audio", m.Audio)
	att("video", m.Video)
	att("video", m.VideoNote)
	att("video", m.Animation)
	att("file", m.Document)
	att("sticker", m.Sticker)
	if len(atts) > 0 {
		payload["attachments"] = atts
	}
	if text == "" && len(atts) == 0 {
		if m.Contact != nil {
			return item{skipped: "telegram_contact"}
		}
		return item{skipped: "telegram_message_without_text_or_media"}
	}
	if m.Chat.ID == "" || m.Date == 0 {
		return item{bad: "Telegram message without chat.id or date"}
	}
	user := ""
	if m.From != nil {
		user = m.From.ID.String()
	}
	return item{id: id, obj: v1Message("telegram", "telegram:"+m.Chat.ID.String(), user, time.Unix(m.Date, 0), payload)}
}

// --- Meta: WhatsApp Cloud API ------------------------------------------

type waNotification struct {
	Object string `json:"object"`
	Entry  []struct {
		ID      string `json:"id"`
		Changes []struct {
			Field string `json:"field"`
			Value struct {
				MessagingProduct string `json:"messaging_product"`
				Messages         []struct {
					From        string                 `json:"from"`
					ID          string                 `json:"id"`
					Timestamp   string                 `json:"timestamp"`
					Type        string                 `json:"type"`
					Text        *struct{ Body string } `json:"text"`
					Image       *waMedia               `json:"image"`
					Audio       *waMedia               `json:"audio"`
					Video       *waMedia               `json:"video"`
					Document    *waMedia               `json:"document"`
					Sticker     *waMedia               `json:"sticker"`
					Button      *struct{ Text string } `json:"button"`
					Interactive *struct {
						ButtonReply *struct{ ID, Title string } `json:"button_reply"`
						ListReply   *struct{ ID, Title string } `json:"list_reply"`
					} `json:"interactive"`
				} `json:"messages"`
				Statuses []struct {
					ID          string `json:"id"`
					Status      string `json:"status"`
					Timestamp   string `json:"timestamp"`
					RecipientID string `json:"recipient_id"`
					Errors      []struct {
						Code  json.Number `json:"code"`
						Title string      `json:"title"`
					} `json:"errors"`
				} `json:"statuses"`
			} `json:"value"`
		} `json:"changes"`
	} `json:"entry"`
}

type waMedia struct {
	ID       string `json:"id"`
	MimeType string `json:"mime_type"`
	Caption  string `json:"caption"`
}

var reE164Digits = regexp.MustCompile(`^[1-9][0-9]{7,14}$`)

func unixString(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, fmt.Errorf("timestamp %q is not Unix seconds", s)
	}
	return time.Unix(n, 0), nil
}

// whatsappItems converts a messages notification: each customer message
// is message.received; a failed delivery of the business's message is an
// error event; sent, delivered and read receipts are no v1 event.
func whatsappItems(body []byte) []item {
	var n waNotification
	if err := decodeNumber(body, &n); err != nil {
		return []item{{bad: "not a WhatsApp Cloud API notification: " + err.Error()}}
	}
	if n.Object != "whatsapp_business_account" {
		return []item{{bad: fmt.Sprintf("object is %q, a WhatsApp hook takes whatsapp_business_account", n.Object)}}
	}
	var items []item
	for _, e := range n.Entry {
		for _, c := range e.Changes {
			if c.Field != "" && c.Field != "messages" {
				items = append(items, item{skipped: "whatsapp_field_" + c.Field})
				continue
			}
			for _, m := range c.Value.Messages {
				at, err := unixString(m.Timestamp)
				if err != nil || m.From == "" || m.ID == "" {
					items = append(items, item{bad: fmt.Sprintf("WhatsApp message %q: needs from, id and a Unix timestamp", m.ID)})
					continue
				}
				payload := map[string]any{"message_id": m.ID}
				var atts []any
				media := func(kind string, md *waMedia) {
					if md == nil || md.ID == "" {
						return
					}
					a := map[string]any{"kind": kind, "id": md.ID}
					if md.MimeType != "" {
						a["mime_type"] = md.MimeType
					}
					if md.Caption != "" {
						a["caption"] = md.Caption
						payload["text"] = md.Caption
					}
					atts = append(atts, a)
				}
				media("image", m.Image)
				media("audio", m.Audio)
				media("video", m.Video)
				media("file", m.Document)
				media("sticker", m.Sticker)
				switch {
				case m.Text != nil:
					payload["text"] = m.Text.Body
				case m.Button != nil:
					payload["text"] = m.Button.Text
				case m.Interactive != nil && m.Interactive.ButtonReply != nil:
					payload["text"] = m.Interactive.ButtonReply.Title
				case m.Interactive != nil && m.Interactive.ListReply != nil:
					payload["text"] = m.Interactive.ListReply.Title
				}
				if len(atts) > 0 {
					payload["attachments"] = atts
				}
				if payload["text"] == nil && len(atts) == 0 {
					items = append(items, item{skipped: "whatsapp_message_" + m.Type})
					continue
				}
				obj := v1Message("whatsapp", "whatsapp:"+m.From, m.From, at, payload)
				if reE164Digits.MatchString(m.From) {
					obj["user_phone"] = "+" + m.From
				}
				items = append(items, item{id: derivedID("wa", m.ID), obj: obj})
			}
			for _, s := range c.Value.Statuses {
				if s.Status != "failed" {
					items = append(items, item{skipped: "whatsapp_status_" + s.Status})
					continue
				}
				at, err := unixString(s.Timestamp)
				if err != nil || s.RecipientID == "" {
					items = append(items, item{bad: fmt.Sprintf("WhatsApp status of %q: needs recipient_id and a Unix timestamp", s.ID)})
					continue
				}
				msg := "WhatsApp could not deliver the message"
				for _, e := range s.Errors {
					msg += fmt.Sprintf(": %s %s", e.Code, e.Title)
				}
				obj := map[string]any{
					"timestamp": at.UTC().Format(time.RFC3339Nano), "channel": "whatsapp", "session_id": "whatsapp:" + s.RecipientID,
					"user_id": s.RecipientID, "event_type": "error", "level": "error", "schema_version": 1,
					"payload": map[string]any{"error": msg, "message_id": s.ID, "delivery_status": "failed"},
				}
				items = append(items, item{id: derivedID("wa", s.ID, "failed"), obj: obj})
			}
		}
	}
	if len(items) == 0 {
		items = append(items, item{skipped: "whatsapp_empty_notification"})
	}
	return items
}

// --- Meta: Instagram messaging ----------------------------------------

type igNotification struct {
	Object string `json:"object"`
	Entry  []struct {
		ID        string `json:"id"`
		Messaging []struct {
			Sender    struct{ ID string } `json:"sender"`
			Recipient struct{ ID string } `json:"recipient"`
			Timestamp int64               `json:"timestamp"`
			Message   *struct {
				MID         string `json:"mid"`
				Text        string `json:"text"`
				IsEcho      bool   `json:"is_echo"`
				IsDeleted   bool   `json:"is_deleted"`
				Attachments []struct {
					Type    string `json:"type"`
					Payload struct {
						URL string `json:"url"`
					} `json:"payload"`
				} `json:"attachments"`
			} `json:"message"`
			Postback *struct {
				MID     string `json:"mid"`
				Title   string `json:"title"`
				Payload string `json:"payload"`
			} `json:"postback"`
			Read     json.RawMessage `json:"read"`
			Reaction json.RawMessage `json:"reaction"`
		} `json:"messaging"`
	} `json:"entry"`
}

var igKinds = map[string]string{"image": "image", "video": "video", "audio": "audio", "file": "file"}

// instagramItems converts a messaging notification: a customer's message or
// postback is message.received; echoes of the account's own messages,
// reads and reactions are no v1 event.
func instagramItems(body []byte) []item {
	var n igNotification
	if err := decodeNumber(body, &n); err != nil {
		return []item{{bad: "not an Instagram messaging notification: " + err.Error()}}
	}
	if n.Object != "instagram" {
		return []item{{bad: fmt.Sprintf("object is %q, an Instagram hook takes instagram", n.Object)}}
	}
	var items []item
	for _, e := range n.Entry {
		for _, ev := range e.Messaging {
			at := time.UnixMilli(ev.Timestamp)
			switch {
			case ev.Message != nil && ev.Message.IsEcho:
				items = append(items, item{skipped: "instagram_echo"})
			case ev.Message != nil && ev.Message.IsDeleted:
				items = append(items, item{skipped: "instagram_deleted"})
			case ev.Message != nil:
				m := ev.Message
				payload := map[string]any{"message_id": m.MID}
				if m.Text != "" {
					payload["text"] = m.Text
				}
				var atts []any
				for _, a := range m.Attachments {
					if k, ok := igKinds[a.Type]; ok && a.Payload.URL != "" {
						atts = append(atts, map[string]any{"kind": k, "url": a.Payload.URL})
					}
				}
				if len(atts) > 0 {
					payload["attachments"] = atts
				}
				if m.Text == "" && len(atts) == 0 {
					items = append(items, item{skipped: "instagram_message_without_text_or_media"})
					continue
				}
				if ev.Sender.ID == "" || ev.Timestamp == 0 || m.MID == "" {
					items = append(items, item{bad: "Instagram message without sender.id, timestamp or mid"})
					continue
				}
				items = append(items, item{id: derivedID("ig", m.MID), obj: v1Message("instagram", "instagram:"+ev.Sender.ID, ev.Sender.ID, at, payload)})
			case ev.Postback != nil && ev.Postback.Title != "":
				if ev.Sender.ID == "" || ev.Timestamp == 0 {
					items = append(items, item{bad: "Instagram postback without sender.id or timestamp"})
					continue
				}
				p := ev.Postback
				payload := map[string]any{"text": p.Title, "message_id": p.MID, "postback": p.Payload}
				items = append(items, item{id: derivedID("ig", p.MID, p.Payload, strconv.FormatInt(ev.Timestamp, 10)),
					obj: v1Message("instagram", "instagram:"+ev.Sender.ID, ev.Sender.ID, at, payload)})
			case ev.Read != nil:
				items = append(items, item{skipped: "instagram_read"})
			case ev.Reaction != nil:
				items = append(items, item{skipped: "instagram_reaction"})
			default:
				items = append(items, item{skipped: "instagram_other"})
			}
		}
	}
	if len(items) == 0 {
		items = append(items, item{skipped: "instagram_empty_notification"})
	}
	return items
}
