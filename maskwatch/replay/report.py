"""The replay report: one self-contained HTML file that opens offline.

Nothing is fetched: styles are inline, thumbnails are JPEG data URIs (drawn with ``pipeline.draw.annotate`` on the
model input's content, as the console's live views are), occupancy plots are matplotlib figures inlined as SVG,
and the timeline is plain SVG (one bar per alert). No script runs.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import re
from pathlib import Path

import numpy as np

from maskwatch.zones.matching import ground_truth_rules

from .run import FLAP_RESTART_FACTOR, FLAP_SHORT_S, THUMB_WIDTH, ReplayResult, VariantResult

SEVERITY_COLOURS = {"info": "#2563eb", "warning": "#d97706", "critical": "#dc2626"}
GT_COLOUR = "#475569"
CLASS_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"]  # matplotlib's tab10, by model class id
MAX_PLOT_POINTS = 2000  # an occupancy series longer than this is shown as its per-bucket maximum

CSS = """
:root { --fg: #0f172a; --muted: #64748b; --line: #e2e8f0; --bg: #f8fafc; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); }
header, section, footer { max-width: 1240px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 18px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h1 small { font-weight: 400; color: var(--muted); font-size: 15px; }
h2 { font-size: 17px; margin: 26px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
h3 small { font-weight: 400; color: var(--muted); }
.meta { color: var(--muted); margin: 0; }
.meta b { color: var(--fg); font-weight: 600; }
.chips { display: flex; gap: 10px; flex-wrap: wrap; margin: 12px 0 0; }
.chip { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; }
.chip b { margin-right: 6px; }
.chip code { background: #f1f5f9; padding: 1px 4px; border-radius: 3px; }
table { border-collapse: collapse; background: var(--card); border: 1px solid var(--line); }
th, td { padding: 4px 9px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: #f1f5f9; font-weight: 600; }
td.l, th.l { text-align: left; }
tr.what-if td { background: #fffbeb; }
td.changed { font-weight: 700; color: #b45309; }
td.rule { vertical-align: top; }
.note { color: var(--muted); font-size: 12.5px; margin: 6px 0; }
.legend { display: flex; gap: 14px; flex-wrap: wrap; color: var(--muted); font-size: 12.5px; margin: 4px 0 8px; }
.legend i { display: inline-block; width: 14px; height: 10px; margin-right: 5px; vertical-align: -1px; }
svg.timeline { width: 100%; height: auto; display: block; background: var(--card); border: 1px solid var(--line); }
.lists { display: grid; gap: 14px; grid-template-columns: repeat(var(--cols), minmax(0, 1fr)); }
.list h4 { margin: 8px 0 6px; font-size: 13px; color: var(--muted); font-weight: 600; }
.scroll { max-height: 560px; overflow-y: auto; }
.alert-row { display: flex; gap: 10px; background: var(--card); border: 1px solid var(--line);
             border-left: 5px solid var(--sev); border-radius: 4px; padding: 6px; margin-bottom: 6px; }
.alert-row img { width: 192px; height: auto; border-radius: 2px; flex: none; }
.alert-row .what { font-weight: 600; }
.alert-row .objs, .alert-row .when { color: var(--muted); font-size: 12.5px; }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px; background: #fee2e2;
         color: #991b1b; margin-left: 6px; font-weight: 600; }
.badge.open { background: #e0f2fe; color: #075985; }
.empty { color: var(--muted); font-style: italic; }
.plots { display: grid; gap: 12px; grid-template-columns: repeat(var(--cols), minmax(0, 1fr)); }
figure { margin: 0; background: var(--card); border: 1px solid var(--line); padding: 4px; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12.5px; padding: 2px 4px; }
.tables { display: flex; gap: 18px; flex-wrap: wrap; align-items: flex-start; }
footer { color: var(--muted); font-size: 12px; padding-top: 24px; padding-bottom: 24px; }
"""


def write_report(res: ReplayResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(res), encoding="utf-8")
    return path


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _secs(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    if abs(value) >= 120:
        m, s = divmod(value, 60)
        return f"{int(m)}:{s:0{3 + digits if digits else 2}.{digits}f}"
    return f"{value:.{digits}f} s"


def _ms(seconds: float, frames: int) -> str:
    return f"{1000 * seconds / frames:.1f} ms" if frames else "—"


def render(res: ReplayResult) -> str:
    from maskwatch import __version__

    base = Path(res.source).name
    parts = [
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>maskwatch replay: {_e(res.camera)}, {_e(base)}</title>",
        f"<style>{CSS}</style>", "</head>", "<body>",
        _header(res),
        _rules_section(res),
        _timeline_section(res),
        _occupancy_section(res),
        _filtered_section(res),
        _run_section(res),
        f'<footer>maskwatch {_e(__version__)} replay, {_e(_dt.datetime.now().strftime("%Y-%m-%d %H:%M"))}. '
        "Nothing was published: no MQTT, no JSONL, the outbox untouched.</footer>",
        "</body>", "</html>",
    ]
    return "\n".join(parts) + "\n"


# -- header and rules table ------------------------------------------------------------------------------------------
def _header(res: ReplayResult) -> str:
    chips = []
    for vr in res.variants:
        if vr.variant.sets:
            what = " ".join(f"<code>--set {_e(s)}</code>" for s in vr.variant.sets)
        else:
            what = f"the zone file and tracker as they are (<code>{_e(Path(res.zones).name)}</code>)"
        chips.append(f'<div class="chip variant" data-variant="{_e(vr.variant.name)}"><b>{_e(vr.variant.name)}</b>'
                     f"{what}</div>")
    if res.gt_doc is not None:
        chips.append(f'<div class="chip"><b>ground truth</b><code>{_e(Path(res.gt_path).name)}</code> '
                     f"({len(res.gt_doc['intervals'])} scripted activations)</div>")
    return (f"<header><h1>Replay <small>camera</small> {_e(res.camera)} <small>on</small> {_e(Path(res.source).name)}"
            "</h1>"
            f'<p class="meta"><b>{res.frames}</b> frames, <b>{_secs(res.duration_s)}</b> of footage '
            f"({_e(res.source)}); config {_e(res.config)}, zones {_e(res.zones)}</p>"
            f'<div class="chips">{"".join(chips)}</div></header>')


def _rules(res: ReplayResult) -> list:
    """Every rule of any variant, in zone-file order (the baseline's first)."""
    seen: dict[str, object] = {}
    for vr in res.variants:
        for r in vr.variant.zone_file.rules:
            seen.setdefault(r.id, r)
    return list(seen.values())


def _rule_of(vr: VariantResult, rule_id: str):
    return next((r for r in vr.variant.zone_file.rules if r.id == rule_id), None)


def _latency(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) <= 4:
        return ", ".join(f"{v:+.2f}" for v in values) + " s"
    return f"median {np.median(values):+.2f} s ({min(values):+.2f} to {max(values):+.2f})"


def _rules_section(res: ReplayResult) -> str:
    gt_rules = ground_truth_rules(res.gt_doc) if res.gt_doc is not None else set()
    head = ['<th class="l">rule</th>', '<th class="l">variant</th>', "<th>alerts</th>", "<th>active</th>",
            "<th>shortest</th>", "<th>longest</th>", "<th>flapping</th>"]
    if res.gt_doc is not None:
        head += ["<th>recall</th>", "<th>precision</th>", "<th>start latency</th>"]
    rows = []
    for rule in _rules(res):
        cells_by_variant = []
        for vr in res.variants:
            r = _rule_of(vr, rule.id)
            if r is None or not r.enabled:
                cells = ["off"] + ["—"] * 4
            else:
                st = vr.stats(r)
                cells = [str(st["alerts"]), _secs(st["active_s"]), _secs(st["shortest_s"]), _secs(st["longest_s"]),
                         str(st["flapping"])]
            if res.gt_doc is not None:
                g = vr.gt.get(rule.id) if rule.id in gt_rules else None
                cells += ([f"{g['recall']:.3f}", f"{g['precision']:.3f}", _latency(g["start_latency_s"])] if g
                          else ["no ground truth", "", ""])
            cells_by_variant.append(cells)
        for k, vr in enumerate(res.variants):
            first = k == 0
            tds = []
            if first:
                r = rule
                what = f"{r.type}{', zone ' + r.zone if getattr(r, 'zone', None) else ''}, {r.severity}"
                tds.append(f'<td class="l rule" rowspan="{len(res.variants)}"><a href="#rule-{_e(r.id)}">'
                           f"<b>{_e(r.id)}</b></a><br><small>{_e(what)}</small></td>")
            tds.append(f'<td class="l">{_e(vr.variant.name)}</td>')
            for j, c in enumerate(cells_by_variant[k]):
                changed = not first and c != cells_by_variant[0][j]
                tds.append(f'<td class="{"changed" if changed else ""}">{_e(c)}</td>')
            rows.append(f'<tr class="rule-row {_e(vr.variant.name)}" data-rule="{_e(rule.id)}" '
                        f'data-variant="{_e(vr.variant.name)}">{"".join(tds)}</tr>')
    total = ""
    if res.gt_doc is not None and len(gt_rules) > 1:
        total = "".join(f'<p class="note">all rules with ground truth, {_e(vr.variant.name)}: recall '
                        f"{vr.gt['*']['recall']:.3f}, precision {vr.gt['*']['precision']:.3f}</p>"
                        for vr in res.variants)
    note = (f'<p class="note">Active: time with at least one alert of the rule active (an alert lasts from its start '
            f"to its end event, the clear-after hysteresis included). Flapping: alerts shorter than "
            f"{FLAP_SHORT_S:g} s (but for one cut short by the end of the footage), or starting again within "
            f"clear_after_s x {FLAP_RESTART_FACTOR:g} after an alert of the same objects ended."
            + (" Recall, precision and start latency as <code>maskwatch eval alerts</code> computes them: an alert "
               "matches a scripted activation of its rule when their frames overlap, one to one." if res.gt_doc
               else "") + "</p>")
    return (f'<section id="rules"><h2>Rules</h2><table class="rules"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>{total}{note}</section>')


# -- timelines ---------------------------------------------------------------------------------------------------------
def _nice_step(span: float, target: int = 10) -> float:
    raw = max(span, 1e-6) / target
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if step >= raw:
            return float(step)
    return float(np.ceil(raw / 3600) * 3600)


MAX_LANES = 8  # alerts of a row that overlap in time are drawn in lanes, at most this many (then they overlap)


def _lanes(bars: list[dict]) -> list[int]:
    """A lane per bar (bars in start order) so that bars overlapping in time sit one above the other: the first
    free lane, a new one while fewer than MAX_LANES, else the lane that is free soonest."""
    ends: list[float] = []
    out = []
    for b in bars:
        lane = next((k for k, end in enumerate(ends) if b["x0"] > end), None)
        if lane is None and len(ends) < MAX_LANES:
            lane = len(ends)
            ends.append(b["x1"])
        elif lane is None:
            lane = min(range(len(ends)), key=ends.__getitem__)
        ends[lane] = max(ends[lane], b["x1"])
        out.append(lane)
    return out


def _timeline_svg(rule_id: str, rows: list[tuple[str, str, list[dict]]], t0: float, t1: float) -> str:
    """Rows of bars (label, row kind, bars: x0, x1 in seconds, colour, title, href, attrs) over [t0, t1]; bars of a
    row that overlap in time get lanes of their own."""
    width, label_w, top, axis_h, lane_h, pad = 1000, 118, 6, 24, 18, 5
    plot_w = width - label_w - 24  # room for the last tick's label
    span = max(t1 - t0, 1e-6)
    lanes = [_lanes(sorted(bars, key=lambda b: b["x0"])) for _, _, bars in rows]
    heights = [2 * pad + lane_h * max(1, max(ls, default=0) + 1) for ls in lanes]
    height = top + sum(heights) + axis_h

    def x(t: float) -> float:
        return label_w + (min(max(t, t0), t1) - t0) / span * plot_w

    out = [f'<svg class="timeline" data-rule="{_e(rule_id)}" viewBox="0 0 {width} {height}" '
           f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="alerts of {_e(rule_id)} over time" '
           'font-family="system-ui, sans-serif" font-size="12">']
    step = _nice_step(span)
    tick = np.ceil(t0 / step) * step
    while tick <= t1 + 1e-9:
        xx = x(tick)
        out.append(f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{height - axis_h + 4}" stroke="#e2e8f0"/>')
        out.append(f'<text x="{xx:.1f}" y="{height - 7}" text-anchor="middle" fill="#64748b">'
                   f'{_e(_secs(tick, 0 if step >= 1 else 1))}</text>')
        tick += step
    y = top
    for (label, kind, bars), row_lanes, row_h in zip(rows, lanes, heights):
        out.append(f'<g class="timeline-row" data-row="{_e(kind)}" data-rule="{_e(rule_id)}" data-count="{len(bars)}">')
        out.append(f'<rect x="{label_w}" y="{y + 2}" width="{plot_w}" height="{row_h - 4}" fill="#f8fafc"/>')
        out.append(f'<text x="6" y="{y + row_h / 2 + 4:.1f}" fill="#0f172a">{_e(label)}</text>')
        for b, lane in zip(sorted(bars, key=lambda b: b["x0"]), row_lanes):
            x0, x1 = x(b["x0"]), x(b["x1"])
            w = max(x1 - x0, 3.0)
            stroke = ' stroke="#0f172a" stroke-width="1.5" stroke-dasharray="3 2"' if b.get("flap") else ""
            attrs = "".join(f' {k}="{_e(v)}"' for k, v in b.get("attrs", {}).items())
            rect = (f'<rect class="bar"{attrs} x="{x0:.1f}" y="{y + pad + lane * lane_h + 1}" width="{w:.1f}" '
                    f'height="{lane_h - 2}" rx="2" fill="{b["colour"]}"{stroke}><title>{_e(b["title"])}</title></rect>')
            out.append(f'<a href="#{_e(b["href"])}">{rect}</a>' if b.get("href") else rect)
        out.append("</g>")
        y += row_h
    out.append("</svg>")
    return "".join(out)


def _objects(a) -> str:
    return ", ".join(f"{cls} #{tid}" for tid, cls in sorted(a.objects.items())) or "no objects"


def _alert_title(a, n: int, flap: str | None) -> str:
    end = "still active at the end of the footage" if a.open_at_end else f"{a.duration_s:.2f} s"
    return (f"#{n} {a.severity}: {a.start_s:.2f} to {(a.end_s if a.end_s is not None else a.start_s):.2f} s ({end})"
            f"; {_objects(a)}" + (f"; flapping: {flap}" if flap else ""))


def _timeline_section(res: ReplayResult) -> str:
    t0 = res.pts[0] if res.pts else 0.0
    t1 = t0 + res.duration_s
    gt_by_rule: dict[str, list[dict]] = {}
    if res.gt_doc is not None:
        for iv in res.gt_doc["intervals"]:
            gt_by_rule.setdefault(iv["rule"], []).append(iv)
    gt_rules = ground_truth_rules(res.gt_doc) if res.gt_doc is not None else set()
    legend = "".join(f'<span><i style="background:{c}"></i>{s}</span>' for s, c in SEVERITY_COLOURS.items())
    if res.gt_doc is not None:
        legend += f'<span><i style="background:{GT_COLOUR}"></i>ground truth</span>'
    legend += ('<span><i style="border:1.5px dashed #0f172a"></i>flapping</span>'
               "<span>a bar links to its alert below; hover for details</span>")
    blocks = [f'<section id="timeline"><h2>Timeline</h2><div class="legend">{legend}</div>']
    for rule in _rules(res):
        rows, lists = [], []
        for vr in res.variants:
            r = _rule_of(vr, rule.id)
            alerts = sorted((a for a in vr.alerts if a.rule == rule.id), key=lambda a: a.start_s)
            flaps = vr.stats(r)["flapping_ids"] if r is not None else {}
            bars = []
            for n, a in enumerate(alerts, 1):
                end = a.end_s if a.end_s is not None else a.start_s
                bars.append({"x0": a.start_s, "x1": end, "colour": SEVERITY_COLOURS.get(a.severity, "#334155"),
                             "title": _alert_title(a, n, flaps.get(a.id)), "flap": a.id in flaps,
                             "href": _anchor(vr, rule.id, n),
                             "attrs": {"data-alert-id": a.id, "data-variant": vr.variant.name}})
            rows.append((vr.variant.name, vr.variant.name, bars))
            lists.append(_alert_list(vr, rule.id, alerts, flaps))
        if res.gt_doc is not None and rule.id in gt_rules:
            bars = []
            for n, iv in enumerate(sorted(gt_by_rule.get(rule.id, []), key=lambda iv: iv["start_frame"]), 1):
                s = iv.get("start_pts_s")
                e = iv.get("end_pts_s")
                fps = float(res.gt_doc["fps"])
                s = iv["start_frame"] / fps if s is None else s
                e = iv["end_frame"] / fps if e is None else e
                found = [vr.variant.name for vr in res.variants if iv["id"] not in vr.gt[rule.id]["unmatched_gt"]]
                title = (f"ground truth #{n}: {s:.2f} to {e:.2f} s, tracks {iv.get('track_ids', [])}; found by "
                         + (", ".join(found) if found else "no variant"))
                bars.append({"x0": s, "x1": e, "colour": GT_COLOUR, "title": title,
                             "attrs": {"data-gt-id": iv["id"]}})
            rows.append(("ground truth", "ground-truth", bars))
        what = f"{rule.type}{', zone ' + rule.zone if getattr(rule, 'zone', None) else ''}, {rule.severity}"
        blocks.append(f'<div class="rule-block" id="rule-{_e(rule.id)}"><h3>{_e(rule.id)} <small>{_e(what)}</small>'
                      f"</h3>{_timeline_svg(rule.id, rows, t0, t1)}"
                      f'<div class="lists" style="--cols:{len(lists)}">{"".join(lists)}</div></div>')
    blocks.append("</section>")
    return "".join(blocks)


def _anchor(vr: VariantResult, rule_id: str, n: int) -> str:
    return f"alert-{vr.variant.name}-{rule_id}-{n}"


def _alert_list(vr: VariantResult, rule_id: str, alerts: list, flaps: dict[str, str]) -> str:
    items = []
    for n, a in enumerate(alerts, 1):
        img = ""
        if a.thumbnail:
            b64 = base64.b64encode(a.thumbnail).decode("ascii")
            img = (f'<img src="data:image/jpeg;base64,{b64}" width="{THUMB_WIDTH // 2}" '
                   f'alt="frame {a.start_frame} at the start of the alert">')
        badges = ""
        if a.id in flaps:
            badges += f'<span class="badge" title="{_e(flaps[a.id])}">flapping</span>'
        if a.open_at_end:
            badges += '<span class="badge open">active at the end</span>'
        end = a.end_s if a.end_s is not None else a.start_s
        items.append(
            f'<div class="alert-row" id="{_e(_anchor(vr, rule_id, n))}" data-rule="{_e(rule_id)}" '
            f'data-variant="{_e(vr.variant.name)}" data-alert-id="{_e(a.id)}" '
            f'style="--sev:{SEVERITY_COLOURS.get(a.severity, "#334155")}">{img}<div>'
            f'<div class="what">#{n} {_e(a.severity)}{badges}</div>'
            f'<div class="when">{a.start_s:.2f} to {end:.2f} s ({a.duration_s:.2f} s), frames {a.start_frame} to '
            f'{a.end_frame if a.end_frame is not None else "?"}{", zone " + _e(a.zone) if a.zone else ""}</div>'
            f'<div class="objs">{_e(_objects(a))}</div></div></div>')
    body = "".join(items) if items else '<p class="empty">no alert</p>'
    return (f'<div class="list" data-variant="{_e(vr.variant.name)}"><h4>{_e(vr.variant.name)}: {len(alerts)} '
            f'alert{"s" if len(alerts) != 1 else ""}</h4><div class="scroll">{body}</div></div>')


# -- occupancy plots (matplotlib, inline SVG) ----------------------------------------------------------------------
def _class_colour(res: ReplayResult, cls: str) -> str:
    ids = {v: k for k, v in res.names.items()}
    return CLASS_COLOURS[ids.get(cls, len(ids)) % len(CLASS_COLOURS)]


def _downsample(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(t) <= MAX_PLOT_POINTS:
        return t, y
    edges = np.linspace(0, len(t), MAX_PLOT_POINTS // 2 + 1).astype(int)
    return t[edges[:-1]], np.maximum.reduceat(y, edges[:-1])


def _svg(fig, salt: str) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    return re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)


def occupancy_svg(res: ReplayResult, series: dict[str, list[int]], title: str, salt: str) -> str:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    t = np.asarray(res.pts, float)
    fig = Figure(figsize=(6.2, 2.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    top = 1
    for cls in sorted(series):
        tt, yy = _downsample(t, np.asarray(series[cls], int))
        if len(tt):
            ax.step(np.r_[tt, t[0] + res.duration_s], np.r_[yy, yy[-1]], where="post", label=cls, linewidth=1.5,
                    color=_class_colour(res, cls))
            top = max(top, int(yy.max()))
    if not series:
        ax.text(0.5, 0.5, "nothing in the zone", transform=ax.transAxes, ha="center", va="center", color="#64748b")
    if len(t):
        ax.set_xlim(t[0], t[0] + res.duration_s)
    ax.set_ylim(0, top + 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("stream time (s)", fontsize=9)
    ax.set_ylabel("objects", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3, linewidth=0.6)
    ax.set_title(title, fontsize=10, loc="left")
    if series:
        ax.legend(loc="upper left", fontsize=8, frameon=False, ncols=min(4, len(series)))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _svg(fig, salt)


def _occupancy_section(res: ReplayResult) -> str:
    zones: list[str] = []
    for vr in res.variants:
        for z in vr.variant.zone_file.zones:
            if z.id not in zones:
                zones.append(z.id)
    blocks = ['<section id="occupancy"><h2>Zone occupancy</h2><p class="note">Objects per class with half of their '
              "mask or more inside the zone, frame by frame (tracked objects only).</p>"]
    k = 0
    for zid in zones:
        figs = []
        shown: list[tuple[list[str], dict]] = []  # (variant names, series): a variant with the same series joins
        for vr in res.variants:
            series = vr.occupancy.get(zid)
            if series is None:
                continue
            same = next((names for names, s in shown if s == series), None)
            if same is not None:
                same.append(vr.variant.name)
            else:
                shown.append(([vr.variant.name], series))
        for names, series in shown:
            k += 1
            label = " = ".join(names) if len(names) > 1 else names[0]
            svg = occupancy_svg(res, series, f"{zid}: {label}" + (" (the same)" if len(names) > 1 else ""),
                                f"maskwatch-replay-{k}")
            peak = ", ".join(f"{c} {max(s)}" for c, s in sorted(series.items()) if s) or "none"
            figs.append(f'<figure class="plot" data-zone="{_e(zid)}" data-variant="{_e(" ".join(names))}">{svg}'
                        f"<figcaption>{_e(label)}: most at once {_e(peak)}</figcaption></figure>")
        cols = max(2, len(figs))
        blocks.append(f'<h3>{_e(zid)}</h3><div class="plots" style="--cols:{cols}">{"".join(figs)}</div>')
    blocks.append("</section>")
    return "".join(blocks)


# -- model and tracker figures -------------------------------------------------------------------------------------
def _filtered_section(res: ReplayResult) -> str:
    """What the zone file's filters and ignore regions removed before the tracker (per class and reason)."""
    if not any(vr.filtered for vr in res.variants) and not any(
            vr.variant.zone_file.filters or vr.variant.zone_file.ignore for vr in res.variants):
        return ""
    blocks = ['<section id="filtered"><h2>Removed by filters and ignore regions</h2><p class="note">Detections '
              "dropped before the tracker, per frame (a parked machine inside an ignore region counts once per "
              "frame), and a frame of each kind, the removed objects drawn.</p>"]
    for vr in res.variants:
        rows = [[cls, reason, f"{n}"] for (cls, reason), n in sorted(vr.filtered.items())]
        blocks.append(f"<h3>{_e(vr.variant.name)}</h3>" + (_table(["class", "reason", "detections"], rows, "filtered")
                                                            if rows else '<p class="note">nothing removed</p>'))
        for reason, cls, jpeg in vr.filtered_thumbs:
            b64 = base64.b64encode(jpeg).decode()
            blocks.append(f'<figure class="thumb"><img alt="{_e(cls)} removed: {_e(reason)}" '
                          f'src="data:image/jpeg;base64,{b64}"><figcaption>{_e(cls)}: {_e(reason)}</figcaption></figure>')
    blocks.append("</section>")
    return "".join(blocks)


def _table(head: list[str], rows: list[list[str]], cls: str) -> str:
    th = "".join(f'<th class="{"l" if i == 0 else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    trs = "".join("<tr>" + "".join(f'<td class="{"l" if i == 0 else ""}">{_e(c)}</td>' for i, c in enumerate(r))
                  + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>'


def _run_section(res: ReplayResult) -> str:
    m = res.model
    n = res.frames
    run_rows = [
        ["frames analysed", str(n)],
        ["footage", _secs(res.duration_s) + (f" at {res.video_fps:.2f} frames/s" if res.video_fps else "")],
        ["frame size", f"{res.frame_wh[0]}x{res.frame_wh[1]}" if res.frame_wh else "—"],
        ["replay time", f"{res.wall_s:.1f} s, {res.fps:.1f} frames/s"],
        ["decode", _ms(res.decode_s, n) + " per frame"],
        ["inference", _ms(res.infer_s, n) + " per frame"],
        ["model", f"{m['name']}, {m['backend']} {m['precision']}, input {m['input']}"],
        ["thresholds", f"conf {m['conf']}, iou {m['iou']}"],
    ]
    for vr in res.variants:
        run_rows.append([f"tracker + zones, {vr.variant.name}",
                         f"{_ms(vr.tracker_s, n)} + {_ms(vr.zones_s, n)} per frame"])
    classes = sorted(set(res.detections_per_class) | {c for vr in res.variants for c in vr.tracks_per_class},
                     key=lambda c: ({v: k for k, v in res.names.items()}.get(c, 1 << 30), c))
    head = ["class", "model detections", "per frame"]
    for vr in res.variants:
        head += [f"tracked, {vr.variant.name}", f"tracks, {vr.variant.name}"]
    rows = []
    for c in classes:
        d = res.detections_per_class.get(c, 0)
        row = [c, str(d), f"{d / n:.2f}" if n else "—"]
        for vr in res.variants:
            row += [str(vr.tracked_per_class.get(c, 0)), str(len(vr.tracks_per_class.get(c, ())))]
        rows.append(row)
    total = ["all", str(sum(res.detections_per_class.values())),
             f"{sum(res.detections_per_class.values()) / n:.2f}" if n else "—"]
    for vr in res.variants:
        total += [str(sum(vr.tracked_per_class.values())), str(sum(len(s) for s in vr.tracks_per_class.values()))]
    rows.append(total)
    return ('<section id="run"><h2>Model and tracker</h2><div class="tables">'
            + _table(["run", ""], run_rows, "run-figures")
            + _table(head, rows, "class-figures")
            + f'</div><p class="note">Model detections: at conf {m["conf"]} or above. Tracked: detections on reported '
              "tracks (what the rules see); tracks: distinct track ids.</p></section>")
