/* Alerts: recent alert events, newest first, filtered by camera, rule and severity; refreshed every 3 s. */
"use strict";

(() => {
  const {el, fill, $} = MW;
  const FILTERS = ["camera", "rule", "severity", "limit"];
  const seen = {camera: new Set(), rule: new Set(), severity: new Set(["info", "warning", "critical"])};
  let shown = null;  // what the table shows, to redraw only when it changes

  /** Add the values seen so far to a filter's select, sorted, keeping its choice. */
  function options(name) {
    const sel = $(`#f-${name}`);
    const have = new Set([...sel.options].map((o) => o.value));
    const missing = [...seen[name]].filter((v) => !have.has(v));
    if (!missing.length) return;
    const value = sel.value;
    const all = [...new Set([...have, ...missing])].filter(Boolean).sort();
    fill(sel, el("option", {value: "", text: "all"}), all.map((v) => el("option", {value: v, text: v})));
    sel.value = value;
  }

  function query() {
    const q = new URLSearchParams();
    for (const name of FILTERS) {
      const v = $(`#f-${name}`).value;
      if (v && !(name === "limit" && v === "100")) q.set(name, v);
    }
    return q;
  }

  function row(a, ended, active, clips) {
    const cam = `/cameras/${encodeURIComponent(a.camera)}`;
    const clip = a.clip_url || clips.get(a.id);  // the end event names it: every row of the alert links it
    return el("tr", {"data-alert-id": a.id, "data-type": a.type},
      el("td.num", {text: MW.time(a.wall_time)}),
      el("td", {}, el("a", {href: cam, text: a.camera})),
      el("td", {}, el("strong", {text: a.rule}), el("br"),
         el("span.muted", {text: `${a.rule_type}${a.zone ? ` in ${a.zone}` : ""}`})),
      el("td", {text: a.type + (a.seq > 1 && a.type === "update" ? ` #${a.seq}` : "")}),
      el("td", {}, MW.severity(a.severity)),
      el("td", {}, el("ul.objects", {}, (a.objects || []).map((o) => el("li", {text: MW.object(o)})))),
      el("td.num", {text: MW.time(a.started_at)}),
      el("td.num", {text: ended.has(a.id) ? MW.time(ended.get(a.id)) : (active.has(a.id) ? "ongoing" : "\u2013")}),
      el("td", {}, a.snapshot_url
        ? el("a", {href: a.snapshot_url, target: "_blank", rel: "noopener"},
             el("img.thumb", {src: a.snapshot_url, alt: `Snapshot: ${a.rule} on ${a.camera}`, loading: "lazy"}))
        : (clip ? null : el("span.muted", {text: "\u2013"})),
         // the event clip (once written, after the alert's end): pre_s before its start to post_s after its end
         clip ? el("a.clip", {href: clip, target: "_blank", rel: "noopener", type: "video/mp4",
                              text: "\u25B6 clip", title: `Video clip: ${a.rule} on ${a.camera}`}) : null),
      el("td.feedback", {}, a.type === "start" ? feedbackCell(a) : null));
  }

  /** Acknowledge or mark as false positive (stored with the alert; false positives become training data). */
  function feedbackCell(a) {
    if (a.feedback) return el("span.verdict", {"data-verdict": a.feedback,
                                               text: a.feedback === "ack" ? "\u2713 acknowledged" : "\u2717 false positive"});
    const mark = (verdict) => async () => {
      await MW.api(`/api/alerts/${encodeURIComponent(a.id)}/${verdict}`, {method: "POST"});
      shown = null;
      refresh();
    };
    return [el("button.ack", {type: "button", text: "\u2713", title: "Acknowledge", onclick: mark("ack")}),
            el("button.fp", {type: "button", text: "\u2717", title: "False positive", onclick: mark("false_positive")})];
  }

  async function refresh() {
    const q = query();
    history.replaceState(null, "", q.toString() ? `?${q}` : location.pathname);
    const [cams, data] = await Promise.all([MW.cameras(), MW.api(`/api/alerts?${q}`)]);
    cams.cameras.forEach((c) => seen.camera.add(c.id));
    for (const a of data.alerts) {
      seen.rule.add(a.rule);
      if (a.severity) seen.severity.add(a.severity);
    }
    ["camera", "rule", "severity"].forEach(options);
    const note = $("#note");
    note.hidden = cams.mode !== "edit";
    note.textContent = "Zone editor mode: nothing is analysed, so no alert is raised.";
    $("#updated").textContent = `updated ${MW.time(Date.now() / 1000)}`;
    // an alert's end, from its end event; "ongoing" while a camera lists it as active
    const ended = new Map(data.alerts.filter((a) => a.ended_at).map((a) => [a.id, a.ended_at]));
    const active = new Set(cams.cameras.flatMap((c) => (c.active_alerts || []).map((a) => a.id)));
    const clips = new Map(data.alerts.filter((a) => a.clip_url).map((a) => [a.id, a.clip_url]));
    const key = JSON.stringify([q.toString(), data.alerts.map((a) => [a.id, a.type, a.seq, a.ended_at, a.clip_url,
                                                                  a.feedback]),
                                [...active]]);
    if (key === shown) return;
    shown = key;
    const body = $("#alerts tbody");
    fill(body, data.alerts.length ? data.alerts.map((a) => row(a, ended, active, clips))
      : el("tr", {}, el("td.empty", {colspan: 10, text: "No alert" + (q.toString() ? " matches the filters." : " yet.")})));
  }

  const params = new URLSearchParams(location.search);
  for (const name of FILTERS) {
    const v = params.get(name);
    if (!v) continue;
    if (seen[name]) seen[name].add(v);
    else if (![...$(`#f-${name}`).options].some((o) => o.value === v)) $(`#f-${name}`).append(el("option", {value: v, text: v}));
  }
  ["camera", "rule", "severity"].forEach(options);
  for (const name of FILTERS) if (params.get(name)) $(`#f-${name}`).value = params.get(name);

  const poller = MW.poll(refresh, 3000);
  $("#filters").addEventListener("change", () => poller.now());
  $("#filters").addEventListener("submit", (ev) => ev.preventDefault());
})();
