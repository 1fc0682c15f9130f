/**
 * assistlog → Google Sheets: a web app that receives the shipper's webhook,
 * checks its signature and appends one row per event to a sheet.
 *
 * Setup (docs/sheets/README.md has it step by step, with pictures in words):
 *  1. In the spreadsheet: Extensions → Apps Script; paste this file.
 *  2. Project Settings → Script properties → add ASSISTLOG_WEBHOOK_SECRET
 *     with the same value as the shipper's webhook.secret.
 *  3. Run testSignature once (it must log "signature check ok").
 *  4. Deploy → New deployment → Web app; Execute as: Me; Who has access:
 *     Anyone. Put the /exec URL into the shipper's webhook.url.
 *
 * What arrives is already masked (phone numbers as "+7 9** ***-**-67" and a
 * keyed hash); nothing here can reveal a number.
 *
 * Apps Script cannot read request headers nor answer with an HTTP status:
 * the signature comes in the query string (assistlog_ts, assistlog_sig), and
 * a refused request is answered {"ok": false, "status": N, "error": ...},
 * which the shipper treats as HTTP status N (401 pauses it and alerts, 400
 * dead-letters, 503 retries); it is also logged (Executions). Delivery is
 * at least once: a repeated event (same idempotency_key) is skipped, not
 * appended twice.
 */

/** The sheet rows go to; created with a header row when missing. */
var SHEET_NAME = 'assistlog';

/** Requests older (or newer) than this many seconds are refused as replays. */
var MAX_AGE_SECONDS = 300;

/** Columns of a row, in order; "payload" is the masked payload as JSON. */
var COLUMNS = ['received_at', 'idempotency_key', 'timestamp', 'tenant', 'channel', 'session_id',
  'event_type', 'intent', 'outcome', 'crm_id', 'user_phone', 'user_phone_hash', 'payload'];

/**
 * The worked example of docs/sheets/README.md: testSignature checks that
 * this script computes its signature (a Go test checks the same numbers
 * against the shipper's own code).
 */
var EXAMPLE = {
  secret: 'example-secret-0123456789',
  timestamp: '1763622974',
  body: '{"schema":"assistlog.webhook.v1","events":[{"channel":"whatsapp","event_id":"sgd-1_00000-0013","event_type":"lead.created","idempotency_key":"sgd-1_00000-0013","level":"info","payload":{"name":"\\u0410\\u043d\\u043d\\u0430","source":"chatbot"},"schema_version":1,"session_id":"sgd-1_00000","tenant":"salon-aurora","timestamp":"2026-11-20T10:16:14.400+03:00","user_phone":"+7 9** ***-**-67","user_phone_hash":"5b2c0f4e"}]}',
  signature: 'v1=77d81a0e1f8269086596eaba9d58fa0efccf3c835ff283ecec144a4a966ed4a2'
};

function doPost(e) {
  var secret = PropertiesService.getScriptProperties().getProperty('ASSISTLOG_WEBHOOK_SECRET');
  if (!secret) {
    return refuse(401, 'script property ASSISTLOG_WEBHOOK_SECRET is not set');
  }
  var body = (e && e.postData) ? e.postData.contents : '';
  var ts = e && e.parameter ? e.parameter.assistlog_ts : '';
  var sig = e && e.parameter ? e.parameter.assistlog_sig : '';
  if (!verify(secret, ts, body, sig)) {
    return refuse(401, 'bad signature: check that webhook.secret and the script property are the same');
  }
  if (Math.abs(Date.now() / 1000 - Number(ts)) > MAX_AGE_SECONDS) {
    return refuse(401, 'timestamp ' + ts + ' is more than ' + MAX_AGE_SECONDS + ' s away: a replayed request, or a clock off');
  }
  var data;
  try {
    data = JSON.parse(body);
  } catch (err) {
    return refuse(400, 'body is not JSON: ' + err);
  }
  var lock = LockService.getScriptLock();
  try {
    lock.waitLock(30000); // two requests at once must not both append an event
  } catch (err) {
    return refuse(503, 'busy: ' + err); // the shipper tries again
  }
  try {
    var sheet = sheetFor(SHEET_NAME);
    var keys = sheet.getRange(1, 2, Math.max(sheet.getLastRow(), 1), 1);
    var now = new Date();
    var rows = [];
    var skipped = 0;
    (data.events || []).forEach(function (ev) {
      var seen = keys.createTextFinder(String(ev.idempotency_key)).matchEntireCell(true).findNext();
      if (seen || rows.some(function (r) { return r[1] === ev.idempotency_key; })) {
        skipped++;
        return;
      }
      rows.push(COLUMNS.map(function (c) {
        if (c === 'received_at') return now;
        if (c === 'payload') return ev.payload ? JSON.stringify(ev.payload) : '';
        return ev[c] === undefined || ev[c] === null ? '' : ev[c];
      }));
    });
    if (rows.length > 0) {
      sheet.getRange(sheet.getLastRow() + 1, 1, rows.length, COLUMNS.length).setValues(rows);
    }
    return reply({ ok: true, appended: rows.length, skipped_repeats: skipped });
  } catch (err) {
    return refuse(503, 'could not append: ' + err); // e.g. a sheet quota: tried again
  } finally {
    lock.releaseLock();
  }
}

/** sign is the shipper's signature: "v1=" + hex HMAC-SHA256(secret, ts + "." + body). */
function sign(secret, ts, body) {
  var mac = Utilities.computeHmacSha256Signature(
    Utilities.newBlob(String(ts) + '.' + body).getBytes(),
    Utilities.newBlob(secret).getBytes());
  return 'v1=' + mac.map(function (b) {
    var h = (b & 0xff).toString(16); // Apps Script bytes are signed (-128…127)
    return h.length === 1 ? '0' + h : h;
  }).join('');
}

/** verify compares in constant time, so timing says nothing about the secret. */
function verify(secret, ts, body, sig) {
  if (!ts || !sig) return false;
  var want = sign(secret, ts, body);
  if (want.length !== sig.length) return false;
  var diff = 0;
  for (var i = 0; i < want.length; i++) {
    diff |= want.charCodeAt(i) ^ sig.charCodeAt(i);
  }
  return diff === 0;
}

/** Run once from the editor after pasting: it must log "signature check ok". */
function testSignature() {
  var got = sign(EXAMPLE.secret, EXAMPLE.timestamp, EXAMPLE.body);
  if (got !== EXAMPLE.signature) {
    throw new Error('signature check FAILED: got ' + got + ', want ' + EXAMPLE.signature);
  }
  Logger.log('signature check ok');
}

function sheetFor(name) {
  var ss = SpreadsheetApp.getActiveSpreadsheet();
  var sheet = ss.getSheetByName(name);
  if (!sheet) {
    sheet = ss.insertSheet(name);
    sheet.appendRow(COLUMNS);
    sheet.setFrozenRows(1);
  }
  return sheet;
}

/**
 * refuse answers with the HTTP status the shipper should act on: a web app
 * cannot set one, so it goes in the body. 401: the shipper pauses and
 * alerts (fix the secret or the clock); 400: the events are dead-lettered;
 * 503: tried again later.
 */
function refuse(status, why) {
  console.warn('assistlog webhook refused (' + status + '): ' + why);
  return reply({ ok: false, status: status, error: why });
}

function reply(obj) {
  return ContentService.createTextOutput(JSON.stringify(obj)).setMimeType(ContentService.MimeType.JSON);
}
