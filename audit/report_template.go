package main

// reportTemplate is the report page: one file, its style inline, no
// script, no web font, no image but the inline SVG, so it opens the same
// on a phone, offline or as an e-mail attachment. Every shown number has
// its exact value in a data-value attribute beside it.
const reportTemplate = `<!DOCTYPE html>
<html lang="{{.Lang}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
:root { --fg: #1d2330; --muted: #5f6b7a; --line: #e3e7ee; --bg: #f6f7f9; --good: #137a3f; --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 880px; margin: 0 auto; padding: 16px; }
header h1 { font-size: 1.5rem; margin: 8px 0 2px; }
header p { margin: 0; color: var(--muted); }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; margin: 14px 0; }
h2 { font-size: 1.1rem; margin: 0 0 8px; }
p.note { color: var(--muted); font-size: .9rem; margin: 4px 0 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 10px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 10px 12px; }
.card .label { color: var(--muted); font-size: .85rem; }
.card .big { font-size: 1.45rem; font-weight: 600; }
.card .was { font-size: .85rem; color: var(--muted); }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { color: var(--muted); font-weight: 500; font-size: .85rem; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.good { color: var(--good); } .bad { color: var(--bad); } .flat, .off { color: var(--muted); }
svg.chart { display: block; width: 100%; max-width: 680px; height: auto; margin: 6px 0; }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .axis, svg .label { font-size: 14px; fill: var(--muted); }
svg .label { fill: var(--fg); }
svg .value { fill: var(--muted); }
svg .line { fill: none; stroke-width: 2.5; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: .85rem; color: var(--muted); margin: 0; padding: 0; list-style: none; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; }
ul.next li { margin: 4px 0; }
details summary { cursor: pointer; color: var(--muted); font-size: .9rem; margin-top: 6px; }
footer { color: var(--muted); font-size: .8rem; text-align: center; margin: 16px 0; }
th.num { white-space: normal; }
@media (max-width: 480px) {
  .chg { display: none; } /* the cards above show the change; four columns do not fit */
  main { padding: 8px; } section { padding: 10px; } table { font-size: .82rem; } th, td { padding: 5px 3px; }
  /* The charts scale down to the phone: larger type in their units keeps it legible. */
  svg .axis { font-size: 20px; } svg .label { font-size: 19px; }
  svg.bars .label { font-size: 23px; }
}
</style>
</head>
<body>
<main data-week="{{.Week}}" data-prev-week="{{.PrevWeek}}">
<header>
<h1>{{.Heading}}</h1>
<p>{{.Span}}</p>
</header>

<section id="kpis">
<h2>{{index .T "kpis"}}</h2>
<div class="cards">
{{- range .Cards}}
<div class="card" data-kpi="{{.Key}}" data-week="cur" data-value="{{.Cur.Data}}">
<div class="label">{{.Label}}</div>
<div class="big">{{.Cur.Text}}</div>
<div class="was"><span class="{{.ChangeClass}}">{{.Change}}</span> · {{index $.T "prev_week"}}: {{.Prev.Text}}</div>
</div>
{{- end}}
</div>
<div class="scroll">
<table>
<thead><tr><th>{{index .T "kpi"}}</th><th class="num">{{index .T "this_week"}}</th><th class="num">{{index .T "prev_week"}}</th><th class="num chg">{{index .T "change"}}</th></tr></thead>
<tbody>
{{- range .KPIs}}
<tr data-kpi-row="{{.Key}}"><td>{{.Label}}</td>
<td class="num" data-kpi="{{.Key}}" data-week="cur" data-value="{{.Cur.Data}}">{{.Cur.Text}}</td>
<td class="num" data-kpi="{{.Key}}" data-week="prev" data-value="{{.Prev.Data}}">{{.Prev.Text}}</td>
<td class="num chg {{.ChangeClass}}">{{.Change}}</td></tr>
{{- end}}
</tbody>
</table>
</div>
</section>

<section id="next">
<h2>{{index .T "next"}}</h2>
{{- if .Next}}
<ul class="next">
{{- range .Next}}
<li data-rule="{{.Rule}}">{{.Text}}</li>
{{- end}}
</ul>
{{- else}}
<p>{{index .T "next_none"}}</p>
{{- end}}
</section>

<section id="trend">
<h2>{{.TrendTitle}}</h2>
<p class="note">{{index .T "trend_note"}}</p>
{{- if .TrendChart}}
{{.TrendChart}}
<ul class="legend">{{range .TrendLegend}}<li><i style="background:{{.Color}}"></i>{{.Name}}</li>{{end}}</ul>
{{- else}}
<p class="off">{{index .T "no_data"}}</p>
{{- end}}
<details>
<summary>{{index .T "kpis"}}</summary>
<div class="scroll">
<table>
<thead><tr><th></th>{{range .TrendHead}}<th class="num">{{.}}</th>{{end}}</tr></thead>
<tbody>
{{- range .Trend}}
<tr data-trend-week="{{.Week}}"><td>{{.Label}}</td>{{range .Cells}}<td class="num" data-trend="{{.Key}}" data-value="{{.Data}}">{{.Text}}</td>{{end}}</tr>
{{- end}}
</tbody>
</table>
</div>
</details>
</section>

<section id="funnel">
<h2>{{index .T "funnel"}}</h2>
<p class="note">{{index .T "funnel_note"}}</p>
{{- if .FunnelChart}}
{{.FunnelChart}}
{{- else}}
<p class="off">{{index .T "no_data"}}</p>
{{- end}}
</section>

<section id="channels">
<h2>{{index .T "channels"}}</h2>
{{- if .ChannelChart}}
{{.ChannelChart}}
<ul class="legend">{{range .ChannelLegend}}<li><i style="background:{{.Color}}"></i>{{.Name}}</li>{{end}}</ul>
<div class="scroll">
<table>
<thead><tr><th>{{index .T "channel"}}</th>{{range .Channels.Head}}<th class="num">{{.}}</th>{{end}}</tr></thead>
<tbody>
{{- range .Channels.Rows}}
<tr data-channel="{{.Key}}"><td>{{.Key}}</td>{{range .Cells}}<td class="num" data-channel-kpi="{{.Key}}" data-value="{{.Data}}">{{.Text}}</td>{{end}}</tr>
{{- end}}
</tbody>
</table>
</div>
{{- else}}
<p class="off">{{index .T "no_data"}}</p>
{{- end}}
</section>

<section id="no-shows">
<h2>{{index .T "noshow_trend"}}</h2>
<p class="note">{{index .T "noshow_note"}}</p>
{{- if .NoShowChart}}
{{.NoShowChart}}
{{- else}}
<p class="off">{{index .T "no_data"}}</p>
{{- end}}
</section>

<section id="reconcile">
<h2>{{index .T "reconcile"}}</h2>
<p class="{{.ReconcileClass}}" data-reconcile="{{.ReconcileClass}}">{{.ReconcileText}}</p>
</section>

<section id="low-confidence">
<h2>{{index .T "lowconf"}}</h2>
<p class="note">{{.LowConfNote}}</p>
{{- if .LowConfChart}}
{{.LowConfChart}}
<div class="scroll">
<table>
<thead><tr><th>{{index .T "intent"}}</th><th class="num">{{index .T "turns"}}</th></tr></thead>
<tbody>
{{- range $i, $ic := .LowConf}}
<tr data-intent="{{$ic.Intent}}"><td>{{$ic.Intent}}</td><td class="num" data-value="{{$ic.Turns}}">{{index $.LowConfText $i}}</td></tr>
{{- end}}
</tbody>
</table>
</div>
{{- else}}
<p class="off">{{index .T "lowconf_none"}}</p>
{{- end}}
</section>

<section id="reviews">
<h2>{{index .T "reviews"}}</h2>
{{- if .Reviews}}
<div class="scroll">
<table>
<thead><tr><th>{{index .T "cause"}}</th><th class="num">{{index .T "count"}}</th></tr></thead>
<tbody>
{{- range .Reviews}}
<tr data-cause="{{.Cause}}"><td>{{.Cause}}</td><td class="num" data-value="{{.Count}}">{{int .Count}}</td></tr>
{{- end}}
</tbody>
</table>
</div>
{{- else}}
<p class="off">{{.ReviewsText}}</p>
{{- end}}
</section>

<footer>{{.Generated}} · assistlog audit report</footer>
</main>
</body>
</html>
`
