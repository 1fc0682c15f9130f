package main

import (
	"html/template"
	"io"
)

// conversationPage is a printable, self-contained page: inline CSS, no
// scripts, fonts or images from elsewhere, so it prints and archives as
// one file.
var conversationPage = template.Must(template.New("conversation").Parse(`<!DOCTYPE html>
<html lang="ru">
<head>
<meta charset="utf-8">
<title>Conversation {{.C.SessionID}} — {{.C.Tenant}}</title>
<style>
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 11pt; margin: 1.5em; color: #111; }
h1 { font-size: 15pt; margin: 0 0 .3em; }
h2 { font-size: 12pt; margin: 1.2em 0 .4em; }
.meta { margin: 0; padding: 0; list-style: none; }
.meta li { margin: .1em 0; }
.status { font-weight: bold; padding: .1em .4em; border: 1px solid #444; }
.status-intact { background: #e6f4e6; }
.status-open { background: #fff6d6; }
.status-damaged { background: #fbe3e3; }
.problem { color: #a00000; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #999; padding: .25em .4em; vertical-align: top; text-align: left; }
th { background: #eee; }
td.text { white-space: pre-wrap; word-break: break-word; }
tr.customer td.who { font-weight: bold; }
tr.manager td.who { font-style: italic; }
tr.system { color: #555; }
.mono { font-family: "DejaVu Sans Mono", monospace; font-size: 9pt; }
@media print {
  body { margin: 0; font-size: 9pt; }
  a { color: inherit; text-decoration: none; }
  a[href]::after { content: " (" attr(href) ")"; font-size: 7pt; word-break: break-all; }
  thead { display: table-header-group; }
  tr { page-break-inside: avoid; }
  th { background: none; }
}
</style>
</head>
<body>
<h1>Conversation {{.C.SessionID}}</h1>
<ul class="meta">
<li>Tenant: {{.C.Tenant}}</li>
<li>Times in: {{.C.Zone}}</li>
<li>Events: {{len .C.Events}}</li>
{{if .C.Link}}<li>Link: <a href="{{.C.Link}}">{{.C.Link}}</a></li>{{end}}
{{range .Leads}}<li>CRM lead {{index . 0}}{{if index . 1}}: <a href="{{index . 1}}">{{index . 1}}</a>{{end}}</li>{{end}}
</ul>
<h2>Integrity: <span class="status status-{{.C.Verdict.Status}}">{{.C.Verdict.Status}}</span></h2>
<ul>
{{range .Lines}}<li>{{.}}</li>
{{end}}</ul>
<h2>Transcript</h2>
<table>
<thead><tr>{{range .T.Columns}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>
{{range $i, $r := .T.Rows}}<tr class="{{index $r 2}}" id="e{{$i}}">{{range $j, $c := $r}}<td class="{{if eq $j 4}}text{{else if eq $j 2}}who{{else if eq $j 0}}mono{{end}}">{{$c}}</td>{{end}}</tr>
{{end}}</tbody>
</table>
<p class="mono">event ids in order: {{range .C.Events}}{{.ID}} {{end}}</p>
</body>
</html>
`))

func (c *Conversation) html(w io.Writer) error {
	return conversationPage.Execute(w, map[string]any{
		"C": c, "T": c.table(), "Lines": c.Verdict.lines(), "Leads": c.leads(),
	})
}
