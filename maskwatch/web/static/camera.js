/* Camera page: the live view with an SVG overlay of the camera's zone file, and its editor.

The page keeps the zone file exactly as GET /api/cameras/{id}/zones answered it (`doc`, in the file's own
units) and changes only what the user edits; "Save" PUTs the whole of it. Nothing else is ever written. The
overlay's viewBox is the image's natural size; a point converts between the file's units and image pixels.
*/
"use strict";

(() => {
  const {el, fill, $} = MW;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const cid = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  const base = `/api/cameras/${encodeURIComponent(cid)}`;
  const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
  const RULE_TYPES = ["intrusion", "proximity", "occupancy", "dwell", "line_crossing", "speed"];
  const COMMON = ["id", "type", "classes", "enabled", "min_confidence", "min_duration_s", "clear_after_s",
                  "cooldown_s", "update_interval_s", "ignore_stationary", "severity", "schedule"];
  const SPECIFIC = {
    intrusion: ["zone", "min_overlap"],
    proximity: ["near", "max_distance", "units", "zone"],
    occupancy: ["zone", "max_count", "min_overlap", "hold_s"],
    dwell: ["zone", "max_duration_s", "min_overlap"],
    line_crossing: ["line", "direction", "anchor"],
    speed: ["max_kmh", "window_s", "zone", "min_overlap"],
  };
  // number fields: label, default (shown as placeholder; an empty input leaves the key out), bounds
  const NUMBERS = {
    min_overlap: {label: "Min overlap (0..1]", def: {intrusion: 0.05, occupancy: 0.5, dwell: 0.5}, min: 0, max: 1},
    max_distance: {label: "Max distance", required: true, min: 0},
    max_count: {label: "Max count", required: true, min: 0, step: 1},
    hold_s: {label: "Hold unseen (s)", def: 0, min: 0, max: 60},
    max_duration_s: {label: "Max duration (s)", required: true, min: 0},
    max_kmh: {label: "Max speed (km/h)", required: true, min: 0},
    window_s: {label: "Speed window (s)", def: 1, min: 0.2, max: 10},
    min_confidence: {label: "Min confidence", def: 0, min: 0, max: 1},
    min_duration_s: {label: "Min duration (s)", def: 0, min: 0},
    clear_after_s: {label: "Clear after (s)", def: 1, min: 0},
    cooldown_s: {label: "Cooldown (s)", def: 0, min: 0},
    update_interval_s: {label: "Update interval (s)", def: 1, min: 0},
    ignore_stationary: {label: "Ignore stationary (s)", def: "none", min: 0},
  };
  const TIMING = ["min_confidence", "min_duration_s", "clear_after_s", "cooldown_s", "update_interval_s",
                  "ignore_stationary"];
  const DIRECTIONS = ["any", "left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top"];

  const img = $("#view"), svg = $("#overlay"), wrap = $("#view-wrap"), status = $("#status");
  let W = 640, H = 360;           // the image's natural size = the overlay's viewBox
  let doc = null;                 // the zone file being edited (plain JSON, the file's units)
  let saved = "null";             // JSON of the last file loaded or saved
  let history = [];               // undo: JSON of doc before each change
  let editable = false, saving = false;
  let classes = [], mode = "run", camInfo = null;
  let selZone = null, selVertex = null;
  let tool = null;                // {kind: "zone", pts} | {kind: "line", rule, pts}: clicks add points
  let drag = null;                // {kind: "vertex"|"line"|"calib", ..., before}
  let hover = null;               // image point under the pointer while drawing
  let errorPath = null;           // [section, index, key] of the last server error
  const openRules = new Set();    // indices of the rule forms shown open
  const openMore = new Set();     // ... and of their "Confidence and timing" parts

  // -- coordinates ------------------------------------------------------------------------------------------
  function fileSize() {
    return doc && doc.units === "pixels" && Array.isArray(doc.frame_size) ? doc.frame_size : [1, 1];
  }

  function toImg(p) {
    const [fw, fh] = fileSize();
    return [p[0] / fw * W, p[1] / fh * H];
  }

  function toFile(p) {
    const [fw, fh] = fileSize();
    const k = doc.units === "pixels" ? 100 : 10000;
    const r = (v, max) => Math.round(Math.min(Math.max(v, 0), max) * k) / k;
    return [r(p[0] / W * fw, fw), r(p[1] / H * fh, fh)];
  }

  function pointer(ev) {
    const r = svg.getBoundingClientRect();
    return [(ev.clientX - r.left) / r.width * W, (ev.clientY - r.top) / r.height * H];
  }

  function perScreenPx() {  // image pixels per screen pixel
    const r = svg.getBoundingClientRect();
    return r.width ? W / r.width : 1;
  }

  const fmtPt = (p) => `[${p.map((v) => +(+v).toFixed(4)).join(", ")}]`;

  // -- state changes ------------------------------------------------------------------------------------------
  const zones = () => (doc && Array.isArray(doc.zones) ? doc.zones : []);
  const rules = () => (doc && Array.isArray(doc.rules) ? doc.rules : []);
  const dirty = () => doc !== null && JSON.stringify(doc) !== saved;

  function snapshot() {
    history.push(JSON.stringify(doc));
    if (history.length > 300) history.shift();
  }

  function edit(fn, structural) {
    if (!editable) return;
    snapshot();
    fn();
    changed(structural);
  }

  function changed(structural) {
    if (structural) renderPanels(); else renderZoneForm();
    renderOverlay();
    updateStatus();
  }

  function undo() {
    if (!history.length) return;
    doc = JSON.parse(history.pop());
    fixSelection();
    renderAll();
  }

  function fixSelection() {
    if (selZone !== null && selZone >= zones().length) selZone = null;
    const z = selZone === null ? null : zones()[selZone];
    if (!z || !Array.isArray(z.polygon) || selVertex >= z.polygon.length) selVertex = null;
  }

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function updateStatus() {
    $("#undo").disabled = !history.length;
    $("#save").disabled = !editable || saving;
    $("#add-zone").disabled = !editable || !!tool;
    if (!saving) {
      if (dirty()) setStatus("dirty", "Unsaved changes");
      else if (status.dataset.state === "dirty") setStatus("clean", "No changes");
    }
    updateView();
  }

  function suggestId(prefix, taken) {
    for (let n = taken.length + 1; ; n++) if (!taken.includes(`${prefix}-${n}`)) return `${prefix}-${n}`;
  }

  // -- the live view ------------------------------------------------------------------------------------------
  function updateView() {
    const annotated = $("#annotated").checked && !dirty() && !tool;
    const url = `${base}/stream.mjpg${annotated ? "" : "?raw=1"}`;
    if (img.dataset.src !== url) {
      img.dataset.src = url;
      img.src = url;
    }
  }

  function setSize(w, h) {
    if (!w || !h || (w === W && h === H)) return;
    W = w;
    H = h;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    wrap.style.aspectRatio = `${W} / ${H}`;
    renderOverlay();
  }

  function checkImage() {
    if (img.naturalWidth) setSize(img.naturalWidth, img.naturalHeight);
    $("#nofeed").hidden = !!img.naturalWidth;
  }

  // -- the overlay ------------------------------------------------------------------------------------------------
  function s(tag, attrs, parent) {
    const n = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (parent) parent.appendChild(n);
    return n;
  }

  function label(text, x, y, size) {
    const t = s("text", {x, y, class: "label", "text-anchor": "middle", "dominant-baseline": "middle",
                         "font-size": size}, svg);
    t.textContent = text;
    return t;
  }

  function handle(ev, start) {
    if (tool || ev.button !== 0 || !editable) return;
    ev.preventDefault();
    ev.stopPropagation();
    const before = JSON.stringify(doc);
    snapshot();
    drag = Object.assign({before}, start());
    svg.setPointerCapture(ev.pointerId);
    renderOverlay();
  }

  function renderOverlay() {
    svg.replaceChildren();
    svg.classList.toggle("drawing", !!tool);
    wrap.classList.toggle("drawing", !!tool);
    if (!doc) return;
    const k = perScreenPx(), r = 6 * k, font = 14 * k;

    zones().forEach((z, i) => {
      if (!Array.isArray(z.polygon)) return;
      const pts = z.polygon.map(toImg);
      const poly = s("polygon", {points: pts.map((p) => p.join(",")).join(" "), "data-zone": z.id,
                                 class: i === selZone ? "zone selected" : "zone"}, svg);
      poly.addEventListener("pointerdown", (ev) => {
        if (tool || ev.button !== 0) return;
        selectZone(i);
      });
      if (pts.length) {
        const cx = pts.reduce((a, p) => a + p[0], 0) / pts.length;
        const cy = pts.reduce((a, p) => a + p[1], 0) / pts.length;
        label(z.name ? `${z.id} (${z.name})` : z.id, cx, cy, font);
      }
    });

    (Array.isArray(doc.ignore) ? doc.ignore : []).forEach((region) => {  // shown, edited as JSON (Site controls)
      if (!region || !Array.isArray(region.polygon)) return;
      const pts = region.polygon.map(toImg);
      s("polygon", {points: pts.map((p) => p.join(",")).join(" "), class: "ignore", "data-ignore": region.id}, svg);
      if (pts.length) label(`ignore: ${region.id}`, pts[0][0], pts[0][1] - 2 * r, font);
    });

    rules().forEach((rule, j) => {
      if (rule.type !== "line_crossing" || !Array.isArray(rule.line) || rule.line.length !== 2) return;
      const [a, b] = rule.line.map(toImg);
      s("line", {x1: a[0], y1: a[1], x2: b[0], y2: b[1], class: "xline", "data-rule": rule.id}, svg);
      const arrow = {left_to_right: " \u2192", right_to_left: " \u2190", top_to_bottom: " \u2193",
                     bottom_to_top: " \u2191"}[rule.direction] || "";
      label(`${rule.id}${arrow}`, (a[0] + b[0]) / 2, (a[1] + b[1]) / 2 - 2 * r, font);
      [a, b].forEach((p, end) => {
        const c = s("circle", {cx: p[0], cy: p[1], r: r * 1.1, class: "xline-end", "data-rule": rule.id,
                               "data-end": end}, svg);
        c.addEventListener("pointerdown", (ev) => handle(ev, () => ({kind: "line", rule: j, end})));
      });
    });

    const cal = doc.calibration;
    if (cal && Array.isArray(cal.image)) {
      const pts = cal.image.map(toImg);
      s("polygon", {points: pts.map((p) => p.join(",")).join(" "), class: "calib-edge"}, svg);
      pts.forEach((p, n) => {
        const d = s("rect", {x: p[0] - r, y: p[1] - r, width: 2 * r, height: 2 * r, class: "calib",
                             transform: `rotate(45 ${p[0]} ${p[1]})`, "data-calib": n}, svg);
        const g = (cal.ground || [])[n];
        const t = s("title", {}, d);
        t.textContent = `Calibration point ${n + 1}${g ? `: ground ${fmtPt(g)} m` : ""}`;
        d.addEventListener("pointerdown", (ev) => handle(ev, () => ({kind: "calib", point: n})));
        label(String(n + 1), p[0] + 2 * r, p[1] - 2 * r, font * 0.85);
      });
    }

    const z = selZone === null ? null : zones()[selZone];
    if (z && Array.isArray(z.polygon) && !tool) {
      const pts = z.polygon.map(toImg);
      pts.forEach((p, v) => {  // edge midpoints: insert a vertex
        const q = pts[(v + 1) % pts.length];
        const m = [(p[0] + q[0]) / 2, (p[1] + q[1]) / 2];
        const h = s("rect", {x: m[0] - r * 0.7, y: m[1] - r * 0.7, width: r * 1.4, height: r * 1.4, class: "mid",
                             "data-edge": v}, svg);
        s("title", {}, h).textContent = "Insert a vertex here";
        h.addEventListener("pointerdown", (ev) => handle(ev, () => {
          z.polygon.splice(v + 1, 0, toFile(m));
          selVertex = v + 1;
          return {kind: "vertex", zone: selZone, vertex: v + 1};
        }));
      });
      pts.forEach((p, v) => {
        const c = s("circle", {cx: p[0], cy: p[1], r, class: v === selVertex ? "vertex selected" : "vertex",
                               "data-vertex": v}, svg);
        s("title", {}, c).textContent = `Vertex ${v + 1}: ${fmtPt(z.polygon[v])} (right-click deletes)`;
        c.addEventListener("pointerdown", (ev) => handle(ev, () => {
          selVertex = v;
          return {kind: "vertex", zone: selZone, vertex: v};
        }));
        c.addEventListener("contextmenu", (ev) => {
          ev.preventDefault();
          if (!tool) deleteVertex(selZone, v);
        });
      });
    }

    if (tool) {
      const pts = tool.pts.map(toImg);
      const all = hover ? pts.concat([hover]) : pts;
      if (all.length > 1) {
        s(tool.kind === "zone" ? "polygon" : "polyline",
          {points: all.map((p) => p.join(",")).join(" "), class: "draft"}, svg);
      }
      pts.forEach((p) => s("circle", {cx: p[0], cy: p[1], r: r * 0.8, class: "draft-pt"}, svg));
    }
  }

  function onMove(ev) {
    if (drag) {
      const p = toFile(pointer(ev));
      if (drag.kind === "vertex") zones()[drag.zone].polygon[drag.vertex] = p;
      else if (drag.kind === "line") rules()[drag.rule].line[drag.end] = p;
      else if (drag.kind === "calib") doc.calibration.image[drag.point] = p;
      renderOverlay();
      return;
    }
    if (tool) {
      hover = pointer(ev);
      renderOverlay();
    }
  }

  function onUp() {
    if (!drag) return;
    const d = drag;
    drag = null;
    if (JSON.stringify(doc) === d.before) history.pop();  // a click without a move changed nothing
    if (d.kind === "calib") renderCalibration();
    if (d.kind === "line") renderRules();
    changed(false);
  }

  function onClick(ev) {
    if (!tool) return;
    const p = pointer(ev);
    const last = tool.pts[tool.pts.length - 1];
    if (last) {
      const q = toImg(last);
      if (Math.hypot(q[0] - p[0], q[1] - p[1]) / perScreenPx() < 4) return;  // a double-click's 2nd click
    }
    tool.pts.push(toFile(p));
    if (tool.kind === "zone") $("#draw-msg").textContent = "";
    if (tool.kind === "line" && tool.pts.length === 2) finishLine();
    else renderOverlay();
  }

  // -- zones ------------------------------------------------------------------------------------------------------
  function selectZone(i) {
    selZone = i;
    selVertex = null;
    renderZones();
    renderOverlay();
  }

  function deleteVertex(zi, v) {
    const z = zones()[zi];
    if (!z) return;
    if (z.polygon.length <= 3) {
      $("#zone-points").textContent = "A zone keeps at least 3 vertices: delete the zone instead.";
      return;
    }
    edit(() => {
      z.polygon.splice(v, 1);
      selVertex = null;
    });
  }

  function startZone() {
    if (!editable || tool) return;
    tool = {kind: "zone", pts: []};
    selVertex = null;
    hover = null;
    $("#new-zone").hidden = false;
    const id = $("#new-zone-id");
    id.value = suggestId("zone", zones().map((z) => z.id));
    $("#new-zone-name").value = "";
    $("#draw-msg").textContent = "";
    id.focus();
    id.select();
    renderOverlay();
    updateStatus();
  }

  function endTool() {
    tool = null;
    hover = null;
    $("#new-zone").hidden = true;
    $("#line-draw").hidden = true;
    renderOverlay();
    updateStatus();
  }

  function finishZone() {
    if (!tool || tool.kind !== "zone") return;
    const id = $("#new-zone-id").value.trim(), name = $("#new-zone-name").value.trim();
    const msg = $("#draw-msg");
    if (!ID_RE.test(id)) {
      msg.textContent = "The zone id takes letters, digits, - and _ (64 at most), and starts with a letter or digit.";
      $("#new-zone-id").focus();
      return;
    }
    if (zones().some((z) => z.id === id)) {
      msg.textContent = `There is already a zone "${id}": choose another id.`;
      $("#new-zone-id").focus();
      return;
    }
    if (tool.pts.length < 3) {
      msg.textContent = `A zone needs at least 3 vertices (${tool.pts.length} so far): click on the image.`;
      return;
    }
    const zone = {id};
    if (name) zone.name = name;
    zone.polygon = tool.pts;
    tool = null;
    edit(() => {
      if (!Array.isArray(doc.zones)) doc.zones = [];
      doc.zones.push(zone);
      selZone = doc.zones.length - 1;
      selVertex = null;
    }, true);
    endTool();
  }

  function renderZones() {
    const list = $("#zone-list");
    if (!doc) { fill(list); return; }
    fill(list, zones().length ? zones().map((z, i) => el("li", {}, el("button", {
      type: "button", "aria-pressed": String(i === selZone), "data-zone-id": z.id,
      class: errorPath && errorPath[0] === "zones" && errorPath[1] === i ? "invalid" : null,
      text: z.name ? `${z.id} \u2013 ${z.name}` : z.id, onclick: () => selectZone(i === selZone ? null : i)})))
      : el("li.muted", {text: "No zone yet: Add zone, then click its corners on the image."}));
    renderZoneForm();
  }

  function renderZoneForm() {
    const z = selZone === null ? null : zones()[selZone];
    $("#zone-form").hidden = !z;
    if (!z) return;
    if (document.activeElement !== $("#zone-id")) $("#zone-id").value = z.id || "";
    if (document.activeElement !== $("#zone-name")) $("#zone-name").value = z.name || "";
    const n = Array.isArray(z.polygon) ? z.polygon.length : 0;
    $("#zone-points").textContent = `${n} vertices` +
      (selVertex !== null && z.polygon[selVertex] ? `; vertex ${selVertex + 1} at ${fmtPt(z.polygon[selVertex])}` : "");
    for (const b of document.querySelectorAll("#zone-list button")) {
      b.setAttribute("aria-pressed", String(b.dataset.zoneId === z.id));
    }
  }

  function renameZone() {
    const z = zones()[selZone];
    const id = $("#zone-id").value.trim();
    if (!z || id === z.id) return;
    const old = z.id;
    edit(() => {
      z.id = id;
      for (const r of rules()) if (r.zone === old) r.zone = id;  // rules follow their zone
    }, true);
  }

  function renameZoneName() {
    const z = zones()[selZone];
    const name = $("#zone-name").value.trim();
    if (!z || name === (z.name || "")) return;
    edit(() => {
      if (name) z.name = name; else delete z.name;
    }, true);
  }

  function deleteZone() {
    if (selZone === null) return;
    edit(() => {
      doc.zones.splice(selZone, 1);
      selZone = null;
      selVertex = null;
    }, true);
  }

  // -- rules ------------------------------------------------------------------------------------------------------
  function setKey(j, key, value, structural) {
    edit(() => {
      const rule = rules()[j];
      if (value === undefined) delete rule[key]; else rule[key] = value;
    }, structural);
    const det = $(`#rule-${j}`);
    if (det && !structural) {
      fill(det.querySelector("summary"), summary(rules()[j]));
      det.querySelector("details.more > summary").textContent = moreText(rules()[j]);
    }
  }

  function moreText(rule) {
    const set = TIMING.filter((k) => rule[k] !== undefined && rule[k] !== null).map((k) => `${k} ${rule[k]}`);
    return `Confidence and timing${set.length ? `: ${set.join(", ")}` : " (defaults)"}`;
  }

  function summary(rule) {
    return [`${rule.id || "(no id)"} `, el("span.muted", {text: `${rule.type}${rule.enabled === false ? ", disabled" : ""}`}),
            " ", MW.severity(rule.severity || "warning")];
  }

  function convert(rule, type) {
    const out = {};
    for (const [k, v] of Object.entries(rule)) if (COMMON.includes(k) || SPECIFIC[type].includes(k)) out[k] = v;
    out.type = type;
    const ids = zones().map((z) => z.id);
    if (["intrusion", "occupancy", "dwell"].includes(type) && !out.zone) out.zone = ids[0] || "";
    if (type === "proximity") {
      if (!Array.isArray(out.near)) out.near = [];
      if (!out.units) out.units = doc.calibration ? "m" : "px";
      if (out.max_distance === undefined) out.max_distance = out.units === "m" ? 3 : 50;
    }
    if (type === "occupancy" && out.max_count === undefined) out.max_count = 1;
    if (type === "dwell" && out.max_duration_s === undefined) out.max_duration_s = 30;
    if (type === "speed" && out.max_kmh === undefined) out.max_kmh = 15;
    if (type === "line_crossing" && !Array.isArray(out.line)) out.line = [toFile([W * 0.3, H * 0.6]), toFile([W * 0.7, H * 0.6])];
    return out;
  }

  function field(j, key, labelText, input) {
    input.id = `rule-${j}-${key}`;
    if (errorPath && errorPath[0] === "rules" && errorPath[1] === j && errorPath[2] === key) {
      input.classList.add("invalid");
      input.setAttribute("aria-invalid", "true");
    }
    return [el("label", {for: input.id, text: labelText}), input];
  }

  function select(options, value, onchange) {
    if (!options.some(([v]) => v === value)) options = [[value, value === "" ? "(choose)" : `${value} (invalid)`]].concat(options);
    const sel = el("select", {onchange: () => onchange(sel.value)},
      options.map(([v, t]) => el("option", {value: v, text: t})));
    sel.value = value;
    return sel;
  }

  function numberField(j, rule, key) {
    const spec = NUMBERS[key];
    const def = spec.def !== null && typeof spec.def === "object" ? spec.def[rule.type] : spec.def;
    const input = el("input", {type: "number", step: spec.step || "any", min: spec.min, max: spec.max,
                               value: rule[key] === undefined || rule[key] === null ? "" : String(rule[key]),
                               placeholder: spec.required ? "required" : `default ${def}`,
                               required: spec.required ? true : null});
    input.addEventListener("change", () => {
      const v = input.value.trim();
      setKey(j, key, v === "" ? undefined : Number(v));
    });
    return field(j, key, spec.label, input);
  }

  /** Class checkboxes (the model's classes), or a comma-separated text field when they are unknown. */
  function classField(j, rule, key, labelText) {
    const current = Array.isArray(rule[key]) ? rule[key] : [];
    const invalid = errorPath && errorPath[0] === "rules" && errorPath[1] === j && errorPath[2] === key;
    if (!classes.length) {
      const input = el("input", {type: "text", value: current.join(", "), placeholder: "e.g. person, car",
                                 "aria-describedby": `rule-${j}-${key}-hint`});
      input.addEventListener("change", () => {
        setKey(j, key, input.value.split(",").map((c) => c.trim()).filter(Boolean));
      });
      return [...field(j, key, labelText, input),
              el("span"), el("span.hint", {id: `rule-${j}-${key}-hint`, text: "comma-separated class names"})];
    }
    const names = classes.concat(current.filter((c) => !classes.includes(c)));
    const box = el("fieldset.checks", {id: `rule-${j}-${key}`, class: invalid ? "checks invalid" : "checks"},
      el("legend", {text: labelText}),
      names.map((c) => el("label", {},
        el("input", {type: "checkbox", value: c, checked: current.includes(c), "data-class": c, onchange: () => {
          const picked = [...box.querySelectorAll("input:checked")].map((i) => i.value);
          setKey(j, key, names.filter((n) => picked.includes(n)));
        }}), classes.includes(c) ? c : `${c} (not a model class)`)));
    return [el("div", {style: "grid-column: 1 / -1"}, box)];
  }

  function zoneField(j, rule, optional) {
    const ids = zones().map((z) => z.id);
    const opts = (optional ? [["", "(any)"]] : []).concat(ids.map((id) => [id, id]));
    if (rule.zone && !ids.includes(rule.zone)) opts.push([rule.zone, `${rule.zone} (no such zone)`]);
    if (!optional && !rule.zone) opts.unshift(["", "(choose a zone)"]);
    return field(j, "zone", optional ? "Only in zone" : "Zone",
                 select(opts, rule.zone || "", (v) => setKey(j, "zone", v === "" && optional ? undefined : v)));
  }

  function ruleForm(rule, j) {
    const det = el("details.rule", {id: `rule-${j}`, "data-rule-id": rule.id, open: openRules.has(j)},
                   el("summary", {}, summary(rule)));
    if (errorPath && errorPath[0] === "rules" && errorPath[1] === j) det.classList.add("invalid");
    det.addEventListener("toggle", () => { if (det.open) openRules.add(j); else openRules.delete(j); });
    const grid = el("div.grid2");
    const add = (parts) => grid.append(...parts);
    const idInput = el("input", {type: "text", value: rule.id || "", autocomplete: "off"});
    idInput.addEventListener("change", () => setKey(j, "id", idInput.value.trim()));
    add(field(j, "id", "Id", idInput));
    add(field(j, "type", "Type", select(RULE_TYPES.map((t) => [t, t]), rule.type, (t) => {
      edit(() => { doc.rules[j] = convert(rule, t); }, true);
      const again = $(`#rule-${j}-type`);
      if (again) again.focus();
    })));
    const type = rule.type;
    if (["intrusion", "occupancy", "dwell"].includes(type)) add(zoneField(j, rule, false));
    add(classField(j, rule, "classes", type === "proximity" ? "Classes (the objects)" : "Classes"));
    if (type === "proximity") {
      add(classField(j, rule, "near", "Near (the other objects)"));
      add(numberField(j, rule, "max_distance"));
      add(field(j, "units", "Distance units", select([["m", "m (ground)"], ["px", "px (frame)"]],
                                                    rule.units || "", (v) => setKey(j, "units", v))));
      add(zoneField(j, rule, true));
    }
    if (type === "occupancy") add(numberField(j, rule, "max_count"));
    if (type === "dwell") add(numberField(j, rule, "max_duration_s"));
    if (type === "speed") {  // needs the calibration (ground metres)
      add(numberField(j, rule, "max_kmh"));
      add(numberField(j, rule, "window_s"));
      add(zoneField(j, rule, true));
    }
    if (["intrusion", "occupancy", "dwell"].includes(type)) add(numberField(j, rule, "min_overlap"));
    if (type === "occupancy") add(numberField(j, rule, "hold_s"));
    if (type === "line_crossing") {
      const line = Array.isArray(rule.line) ? rule.line.map(fmtPt).join(" \u2192 ") : "(none)";
      add(field(j, "line", "Line", el("span", {}, el("span.mono", {text: line}), " ",
        el("button", {type: "button", text: "Draw line", "data-draw-line": j, onclick: () => startLine(j)}))));
      add(field(j, "direction", "Direction", select(DIRECTIONS.map((d) => [d, d]), rule.direction || "any",
                                                     (v) => setKey(j, "direction", v, true))));
      add(field(j, "anchor", "Anchor", select([["centroid", "centroid"], ["bottom", "bottom"]],
                                              rule.anchor || "centroid", (v) => setKey(j, "anchor", v))));
    }
    add(field(j, "severity", "Severity", select([["info", "info"], ["warning", "warning"], ["critical", "critical"]],
                                                rule.severity || "warning", (v) => setKey(j, "severity", v))));
    const enabled = el("input", {type: "checkbox", checked: rule.enabled !== false});
    enabled.addEventListener("change", () => setKey(j, "enabled", enabled.checked ? ("enabled" in rule ? true : undefined) : false));
    add(field(j, "enabled", "Enabled", enabled));
    const more = el("details.more", {open: openMore.has(j) || (errorPath && errorPath[0] === "rules"
                                                                && errorPath[1] === j && TIMING.includes(errorPath[2]))},
                    el("summary", {text: moreText(rule)}),
                    el("div.grid2", {}, TIMING.map((key) => numberField(j, rule, key))));
    more.addEventListener("toggle", () => { if (more.open) openMore.add(j); else openMore.delete(j); });
    det.append(grid, more, el("button.danger", {type: "button", text: "Delete rule", "data-delete-rule": j, onclick: () => {
      edit(() => { doc.rules.splice(j, 1); openRules.clear(); openMore.clear(); }, true);
    }}));
    return det;
  }

  function renderRules() {
    const box = $("#rules");
    if (!doc) { fill(box); return; }
    fill(box, rules().length ? rules().map(ruleForm) : el("p.muted", {text: "No rule yet."}));
  }

  function addRule() {
    edit(() => {
      if (!Array.isArray(doc.rules)) doc.rules = [];
      const ids = zones().map((z) => z.id);
      doc.rules.push({id: suggestId("rule", rules().map((r) => r.id)), type: "intrusion", zone: ids[0] || "",
                      classes: [], severity: "warning"});
      openRules.add(doc.rules.length - 1);
    }, true);
  }

  function startLine(j) {
    if (!editable || tool) return;
    tool = {kind: "line", rule: j, pts: []};
    $("#line-draw").hidden = false;
    $("#line-draw-msg").textContent = `Rule ${rules()[j].id}: click the line's first and second point on the image; Escape cancels.`;
    renderOverlay();
    updateStatus();
  }

  function finishLine() {
    const {rule, pts} = tool;
    tool = null;
    edit(() => { rules()[rule].line = pts; }, true);
    endTool();
  }

  // -- calibration --------------------------------------------------------------------------------------------------
  function renderCalibration() {
    const box = $("#calibration");
    if (!doc) { fill(box); return; }
    const cal = doc.calibration;
    const invalid = errorPath && errorPath[0] === "calibration";
    if (!cal || !Array.isArray(cal.image)) {
      fill(box, el("p.hint", {text: "No calibration: proximity rules in metres need one."}),
        el("button", {type: "button", id: "add-calibration", text: "Add calibration", disabled: !editable, onclick: () => {
          edit(() => {
            doc.calibration = {image: [[0.3, 0.75], [0.7, 0.75], [0.62, 0.45], [0.38, 0.45]].map((p) => toFile([p[0] * W, p[1] * H])),
                               ground: [[0, 0], [10, 0], [10, 10], [0, 10]]};
          }, true);
        }}));
      return;
    }
    const ground = Array.isArray(cal.ground) ? cal.ground : [];
    const num = (n, i) => {
      const g = ground[n] || [];
      const input = el("input", {type: "number", step: "any", id: `calib-${n}-${"xy"[i]}`,
                                 value: g[i] === undefined ? "" : String(g[i]),
                                 "aria-label": `Ground ${"XY"[i]} of point ${n + 1} (metres)`});
      input.addEventListener("change", () => {
        if (input.value.trim() === "") { input.value = g[i] === undefined ? "" : String(g[i]); return; }
        edit(() => {
          if (!Array.isArray(doc.calibration.ground)) doc.calibration.ground = [];
          while (doc.calibration.ground.length <= n) doc.calibration.ground.push([0, 0]);
          doc.calibration.ground[n][i] = Number(input.value);
        });
      });
      return input;
    };
    fill(box,
      el("p.hint", {text: "Drag the green points onto marks on the ground; enter where they are on site, in metres."}),
      el("table.calib", {class: invalid ? "calib invalid" : "calib"},
        el("thead", {}, el("tr", {}, el("th", {text: "#"}), el("th", {text: "Image"}), el("th", {text: "Ground X (m)"}),
                                      el("th", {text: "Ground Y (m)"}))),
        el("tbody", {}, cal.image.map((p, n) => el("tr", {},
          el("td", {text: String(n + 1)}), el("td.mono", {text: fmtPt(p)}), el("td", {}, num(n, 0)), el("td", {}, num(n, 1)))))),
      el("div.row", {}, el("button.danger", {type: "button", id: "remove-calibration", text: "Remove calibration",
                                              onclick: () => edit(() => { delete doc.calibration; }, true)})));
  }

  // -- site controls: filters, ignore regions, schedule, switch override (JSON) ---------------------------------------
  const CONTROL_KEYS = ["filters", "ignore", "schedule", "switch_override"];

  function renderControls() {
    const box = $("#controls");
    if (!box || document.activeElement === box) return;  // never overwrite what is being typed
    const part = {};
    if (doc) for (const k of CONTROL_KEYS) if (doc[k] !== undefined) part[k] = doc[k];
    box.value = doc ? JSON.stringify(part, null, 2) : "";
    box.disabled = !doc || !editable;
    box.classList.toggle("invalid", !!(errorPath && CONTROL_KEYS.includes(errorPath[0])));
  }

  function applyControls() {
    let part;
    try {
      part = JSON.parse($("#controls").value || "{}");
    } catch (err) {
      showError(`site controls: not valid JSON (${err.message})`);
      return;
    }
    if (part === null || typeof part !== "object" || Array.isArray(part)
        || Object.keys(part).some((k) => !CONTROL_KEYS.includes(k))) {
      showError(`site controls: expected an object with ${CONTROL_KEYS.join(", ")}`);
      return;
    }
    edit(() => { for (const k of CONTROL_KEYS) { if (k in part) doc[k] = part[k]; else delete doc[k]; } }, true);
    $("#controls").blur();
    renderControls();
  }

  // -- all --------------------------------------------------------------------------------------------------------------
  function renderPanels() {
    renderZones();
    renderRules();
    renderCalibration();
    renderControls();
    $("#units").textContent = doc ? `Units: ${doc.units}${doc.units === "pixels" && doc.frame_size ? ` (frame ${doc.frame_size.join("x")})` : ""}.` : "";
  }

  function renderAll() {
    renderPanels();
    renderOverlay();
    updateStatus();
  }

  function showError(text) {
    const box = $("#error");
    box.textContent = text;
    box.hidden = false;
    const m = /^(zones|rules|calibration|filters|ignore|schedule|switch_override)(?:\[(\d+)\])?(?:\.(\w+))?/.exec(text);
    errorPath = m ? [m[1], m[2] === undefined ? null : Number(m[2]), m[3] || null] : null;
    if (errorPath && errorPath[0] === "rules" && errorPath[1] !== null) openRules.add(errorPath[1]);
    if (errorPath && errorPath[0] === "zones" && errorPath[1] !== null && errorPath[1] < zones().length) {
      selZone = errorPath[1];
    }
    renderPanels();
    renderOverlay();
  }

  function clearError() {
    $("#error").hidden = true;
    $("#error").textContent = "";
    errorPath = null;
  }

  function noZoneFile(text) {
    editable = false;
    doc = null;
    renderAll();
    setStatus("none", "No zone file");
    fill($("#zone-list"), el("li.muted", {text}));
  }

  async function load() {
    if (camInfo && camInfo.has_zones === false) {  // nothing to ask for (GET would answer 404)
      noZoneFile(`Camera ${cid} has no zone file: set cameras[].zones in the config to edit its zones here.`);
      return;
    }
    try {
      const got = await MW.api(`${base}/zones`);
      if (doc !== null && dirty()) snapshot();  // "Reload" discards the edits: Undo brings them back
      doc = got;
      saved = JSON.stringify(doc);
      editable = true;
      clearError();
      fixSelection();
      renderAll();
      setStatus("clean", "Loaded");
    } catch (err) {
      if (err instanceof MW.ApiError && err.status === 404) {
        noZoneFile(err.message);
        return;
      }
      setStatus("error", `Cannot load the zone file: ${err.message}`);
    }
  }

  async function save() {
    if (!editable || saving) return;
    saving = true;
    updateStatus();
    setStatus("saving", "Saving\u2026");
    try {
      const res = await MW.api(`${base}/zones`, {method: "PUT", json: doc});
      doc = res.zones;
      saved = JSON.stringify(doc);
      clearError();
      fixSelection();
      saving = false;
      renderAll();
      setStatus("saved", `Saved at ${new Date().toLocaleTimeString(undefined, {hour12: false})}`);
    } catch (err) {
      saving = false;
      showError(err.message);
      updateStatus();
      setStatus("error", "Not saved: see the error below");
    }
  }

  async function refreshCamera() {
    const data = await MW.cameras();
    const cam = data.cameras.find((c) => c.id === cid);
    if (!cam) return data;
    camInfo = cam;
    fill($("#cam-badge"), MW.badge(cam.online ? "online" : "offline", cam.online ? "online" : "offline"));
    $("#cam-source").textContent = `Source: ${cam.source}` + (cam.error ? ` \u2013 ${cam.error}` : "");
    if (!img.naturalWidth && cam.frame_wh) setSize(cam.frame_wh[0], cam.frame_wh[1]);
    return data;
  }

  // -- wiring ---------------------------------------------------------------------------------------------------------------
  svg.addEventListener("pointermove", onMove);
  svg.addEventListener("pointerup", onUp);
  svg.addEventListener("pointercancel", onUp);
  svg.addEventListener("pointerleave", () => { if (tool && hover) { hover = null; renderOverlay(); } });
  svg.addEventListener("click", onClick);
  svg.addEventListener("dblclick", (ev) => {
    if (tool && tool.kind === "zone") { ev.preventDefault(); finishZone(); }
  });
  svg.addEventListener("contextmenu", (ev) => ev.preventDefault());
  img.addEventListener("load", checkImage);
  setInterval(checkImage, 500);  // an MJPEG stream fires `load` once at most
  window.addEventListener("resize", renderOverlay);
  $("#add-zone").addEventListener("click", startZone);
  $("#finish").addEventListener("click", finishZone);
  $("#cancel-draw").addEventListener("click", endTool);
  $("#cancel-line").addEventListener("click", endTool);
  $("#undo").addEventListener("click", undo);
  $("#save").addEventListener("click", save);
  $("#reload").addEventListener("click", load);
  $("#annotated").addEventListener("change", updateView);
  $("#zone-id").addEventListener("change", renameZone);
  $("#zone-name").addEventListener("change", renameZoneName);
  $("#delete-zone").addEventListener("click", deleteZone);
  $("#add-rule").addEventListener("click", addRule);
  $("#apply-controls").addEventListener("click", applyControls);
  document.addEventListener("keydown", (ev) => {
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test((ev.target && ev.target.tagName) || "");
    if (ev.key === "Escape") {
      if (tool) endTool();
      else if (selVertex !== null) { selVertex = null; renderOverlay(); renderZoneForm(); }
    } else if ((ev.key === "Delete" || ev.key === "Backspace") && !typing && selVertex !== null && selZone !== null) {
      ev.preventDefault();
      deleteVertex(selZone, selVertex);
    } else if ((ev.ctrlKey || ev.metaKey) && !ev.shiftKey && ev.key.toLowerCase() === "z" && !typing) {
      ev.preventDefault();
      undo();
    } else if (ev.key === "Enter" && tool && tool.kind === "zone" && ev.target && ev.target.closest("#new-zone")) {
      ev.preventDefault();
      finishZone();
    }
  });

  async function init() {
    $("#cam-id").textContent = cid;
    document.title = `maskwatch: ${cid}`;
    try {
      const data = await refreshCamera();
      mode = data.mode;
      classes = data.classes || [];
      $("#annotated").checked = mode === "run";
    } catch (err) {
      setStatus("error", `Cannot reach the server: ${err.message}`);
    }
    updateView();
    await load();
    setTimeout(() => MW.poll(refreshCamera, 2000), 2000);
  }

  init();
})();
