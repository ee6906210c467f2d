/* Overview: every camera as a live tile with its figures and active alerts, refreshed every 2 s. */
"use strict";

(() => {
  const {el, fill, $} = MW;
  const STREAM_MAX = 4;  // above this many cameras, tiles show a still refreshed with the figures (a browser
                         // keeps ~6 connections per server: one MJPEG stream holds one for good)
  const tiles = new Map();  // camera id -> {root, img, info}

  function tile(cam, streams) {
    const href = `/cameras/${encodeURIComponent(cam.id)}`;
    const img = el("img", {alt: `Live view of camera ${cam.id}`, decoding: "async"});
    const info = el("div.info");
    const root = el("a.tile", {href, "data-camera": cam.id}, el("div.frame", {}, img), info);
    const t = {root, img, info, streams, src: null};
    tiles.set(cam.id, t);
    return t;
  }

  function setImage(t, cam) {
    const base = `/api/cameras/${encodeURIComponent(cam.id)}`;
    if (!cam.frame_wh) return;  // no frame yet: frame.jpg would answer 503
    if (t.streams) {
      if (t.src === null) { t.src = `${base}/stream.mjpg`; t.img.src = t.src; }
    } else {
      t.img.src = `${base}/frame.jpg?t=${cam.decoded}`;
    }
  }

  function figures(cam, mode) {
    const lat = cam.latency_ms || {};
    const items = mode === "edit"
      ? [["fps", MW.num(cam.fps)], ["decoded", MW.num(cam.decoded, 0)]]
      : [["analysed fps", MW.num(cam.fps)], ["analysed", MW.num(cam.analysed, 0)],
         ["drops", MW.num(cam.dropped, 0)],
         ["frame\u2192alert p50/p99", `${MW.ms(lat.p50)} / ${MW.ms(lat.p99)}`],
         ["tracks", MW.num(cam.tracks, 0)], ["alerts", MW.num(cam.alerts, 0)]];
    if (cam.reconnects) items.push(["reconnects", MW.num(cam.reconnects, 0)]);
    return el("dl.figures", {}, items.map(([k, v]) => el("div", {}, el("dt", {text: k}), el("dd", {text: v}))));
  }

  function activeAlerts(cam) {
    const list = cam.active_alerts || [];
    if (!list.length) return el("p.muted", {text: "No active alert", style: "margin:.3rem 0 0;font-size:.9rem"});
    return el("ul.alerts-active", {"aria-label": "Active alerts"}, list.map((a) => el("li", {},
      MW.severity(a.severity), " ", el("strong", {text: a.rule}),
      a.zone ? ` in ${a.zone}` : "", ": ", (a.objects || []).map(MW.object).join("; "))));
  }

  function render(data) {
    const streams = data.cameras.length <= STREAM_MAX;
    $("#summary").textContent = data.cameras.length
      ? `${data.cameras.length} camera${data.cameras.length > 1 ? "s" : ""}; click one for its live view and zone editor.`
      : "No camera in the configuration.";
    const seen = new Set();
    data.cameras.forEach((cam, i) => {
      seen.add(cam.id);
      const t = tiles.get(cam.id) || tile(cam, streams);
      const container = $("#tiles");
      if (container.children[i] !== t.root) container.insertBefore(t.root, container.children[i] || null);
      setImage(t, cam);
      t.root.setAttribute("aria-label", `Camera ${cam.id}, ${cam.online ? "online" : "offline"}`);
      fill(t.info,
        el("div.title", {}, el("span.cam-id", {text: cam.id}),
          MW.badge(cam.online ? "online" : "offline", cam.online ? "online" : "offline")),
        el("div.source", {text: cam.source}),
        cam.error ? el("p.hint.warn", {text: cam.error}) : null,
        figures(cam, data.mode),
        data.mode === "edit" ? null : activeAlerts(cam));
    });
    for (const [id, t] of tiles) {
      if (!seen.has(id)) { t.img.removeAttribute("src"); t.root.remove(); tiles.delete(id); }
    }
  }

  MW.poll(async () => render(await MW.cameras()), 2000);
})();
