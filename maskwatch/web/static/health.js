/* Health: the verdict and the /metrics figures as tables (per camera, per stage, zones, delivery), every 2 s. */
"use strict";

(() => {
  const {el, fill, $} = MW;

  /** samples by name: name -> [{labels, value}] */
  function index(metrics) {
    const out = new Map();
    for (const fam of metrics) {
      for (const s of fam.samples) {
        if (!out.has(s.name)) out.set(s.name, []);
        out.get(s.name).push(s);
      }
    }
    return out;
  }

  function table(id, headers, rows, empty) {
    const numeric = headers.map((h) => h.endsWith("#"));
    fill($(`#${id}`),
      el("thead", {}, el("tr", {}, headers.map((h, i) => el("th", {scope: "col", class: numeric[i] ? "num" : null,
                                                                   text: h.replace(/#$/, "")})))),
      el("tbody", {}, rows.length ? rows.map((r) => el("tr", {}, r.map((c, i) => el("td", {
        class: numeric[i] ? "num" : null}, c))))
        : el("tr", {}, el("td.empty", {colspan: headers.length, text: empty || "No data."}))));
  }

  function render(data, cams) {
    const m = index(data.metrics);
    const get = (name) => m.get(name) || [];
    const sum = (name, pred) => get(name).filter(pred).reduce((a, s) => a + s.value, 0);
    const one = (name, pred) => { const s = get(name).find(pred); return s ? s.value : null; };

    const verdict = $("#verdict");
    verdict.className = `verdict ${data.ok ? "ok" : "bad"}`;
    fill(verdict, MW.badge(data.ok ? "ok" : "failed", data.ok ? "ok" : "bad"),
         data.ok ? "Every stage runs." : `Failed: ${data.reason}`);
    const build = get("maskwatch_build_info")[0];
    $("#updated").textContent = `updated ${MW.time(Date.now() / 1000)}` +
      (build ? ` \u00b7 maskwatch ${build.labels.version}, Python ${build.labels.python}` : "");
    const note = $("#note");
    note.hidden = data.mode !== "edit";
    note.textContent = "Zone editor mode: nothing is analysed, so there are no pipeline figures.";

    // cameras: from the config, and any camera a metric names
    const ids = new Set(cams.cameras.map((c) => c.id));
    for (const list of m.values()) for (const s of list) if (s.labels.camera) ids.add(s.labels.camera);
    const rings = [...new Set(get("maskwatch_frames_dropped_total").map((s) => s.labels.ring))].sort();
    const byCam = (cid) => (s) => s.labels.camera === cid;
    table("cameras",
      ["Camera", "Online", "Reconnects#", "Tracks#", ...rings.map((r) => `Dropped (${r})#`), "Frame\u2192alert mean#",
       "Alerts started#"],
      [...ids].sort().map((cid) => {
        const online = one("maskwatch_camera_online", byCam(cid));
        const info = cams.cameras.find((c) => c.id === cid);
        const up = online === null ? (info ? info.online : null) : online > 0;
        const n = one("maskwatch_frame_to_alert_seconds_count", byCam(cid));
        const total = one("maskwatch_frame_to_alert_seconds_sum", byCam(cid));
        return [el("a", {href: `/cameras/${encodeURIComponent(cid)}`, text: cid}),
                up === null ? "\u2013" : MW.badge(up ? "online" : "offline", up ? "online" : "offline"),
                MW.num(one("maskwatch_camera_reconnects_total", byCam(cid)), 0),
                MW.num(one("maskwatch_tracks_active", byCam(cid)), 0),
                ...rings.map((r) => MW.num(one("maskwatch_frames_dropped_total", (s) => s.labels.camera === cid
                                                                                 && s.labels.ring === r), 0)),
                n ? MW.ms(total / n * 1000) : "\u2013",
                MW.num(sum("maskwatch_alerts_total", (s) => s.labels.camera === cid && s.labels.type === "start"), 0)];
      }));

    const stages = new Map();  // "camera\tstage" -> [camera, stage]
    for (const name of ["maskwatch_frames_total", "maskwatch_stage_seconds_count"]) {
      for (const s of get(name)) stages.set(`${s.labels.camera}\t${s.labels.stage}`, [s.labels.camera, s.labels.stage]);
    }
    table("stages", ["Camera", "Stage", "Frames#", "Mean latency#", "Timed#"],
      [...stages.values()].map(([cid, stage]) => {
        const at = (s) => s.labels.camera === cid && s.labels.stage === stage;
        const n = one("maskwatch_stage_seconds_count", at);
        const total = one("maskwatch_stage_seconds_sum", at);
        return [cid, stage, MW.num(one("maskwatch_frames_total", at), 0),
                n ? MW.ms(total / n * 1000) : "\u2013", MW.num(n, 0)];
      }));

    table("occupancy", ["Camera", "Zone", "Class", "Objects inside#"],
      get("maskwatch_zone_occupancy").map((s) => [s.labels.camera, s.labels.zone, s.labels.class, MW.num(s.value, 0)]),
      "No zone occupancy reported.");

    const rows = get("maskwatch_outbox_pending").map((s) => [`outbox: ${s.labels.sink}`, `${MW.num(s.value, 0)} pending`]);
    const mqtt = get("maskwatch_mqtt_connected");
    if (mqtt.length) {
      for (const s of mqtt) {
        const extra = Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(", ");
        rows.push([`MQTT${extra ? ` (${extra})` : ""}`, MW.badge(s.value > 0 ? "connected" : "disconnected",
                                                                   s.value > 0 ? "ok" : "bad")]);
      }
    } else if (data.mode !== "edit") {
      rows.push(["MQTT", el("span.muted", {text: "not configured"})]);
    }
    const snaps = one("maskwatch_snapshots_dropped_total", () => true);
    if (snaps !== null) rows.push(["snapshots dropped", MW.num(snaps, 0)]);
    table("delivery", ["Sink", "State"], rows, "No alert sink.");
  }

  MW.poll(async () => {
    const [data, cams] = await Promise.all([MW.api("/api/health"), MW.cameras()]);
    render(data, cams);
  }, 2000);
})();
