/* maskwatch console: helpers shared by every page (DOM building, JSON API calls, polling, the top nav). */
"use strict";

const MW = (() => {
  /** el("tag.class#id", {attr: value, onclick: fn}, child, "text", ...) -> an element. */
  function el(spec, attrs, ...children) {
    const m = /^([a-z0-9]+)?((?:[.#][\w-]+)*)$/i.exec(spec) || [null, spec, ""];
    const node = document.createElement(m[1] || "div");
    for (const part of (m[2] || "").match(/[.#][\w-]+/g) || []) {
      if (part[0] === ".") node.classList.add(part.slice(1)); else node.id = part.slice(1);
    }
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
      else if (k === "text") node.textContent = v;
      else if (k === "value") node.value = v;
      else if (k === "checked") node.checked = !!v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  /** Replace an element's children. */
  function fill(node, ...children) {
    node.replaceChildren();
    return append(node, children);
  }

  const $ = (sel, root) => (root || document).querySelector(sel);

  class ApiError extends Error {
    constructor(status, message, body) { super(message); this.status = status; this.body = body; }
  }

  /** fetch JSON from the API; throws ApiError with the server's `error` (or `detail`) text. */
  async function api(path, options) {
    const opts = Object.assign({headers: {Accept: "application/json"}, cache: "no-store"}, options || {});
    if (opts.json !== undefined) {
      opts.body = JSON.stringify(opts.json);
      opts.headers = Object.assign({"Content-Type": "application/json"}, opts.headers);
      delete opts.json;
    }
    const res = await fetch(path, opts);
    const text = await res.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!res.ok) {
      if (res.status === 401 && (!opts.method || opts.method === "GET")) location.href = "/login";
      const msg = body && (body.error || body.detail) ? (body.error || body.detail) : `HTTP ${res.status}: ${text}`;
      throw new ApiError(res.status, typeof msg === "string" ? msg : JSON.stringify(msg), body);
    }
    return body;
  }

  /** Call fn now and then every `ms` after each call has finished (never two at once). */
  function poll(fn, ms) {
    let timer = null, running = false, again = false;
    const run = async () => {
      clearTimeout(timer);
      if (running) { again = true; return; }
      running = true;
      try { await fn(); connection(true); } catch (err) { connection(false, err); }
      running = false;
      if (again) { again = false; run(); } else timer = setTimeout(run, ms);
    };
    run();
    return {now: run};
  }

  /** A banner while the server does not answer. */
  function connection(ok, err) {
    let b = $("#conn");
    if (ok) { if (b) b.hidden = true; return; }
    const network = err instanceof TypeError;  // fetch failed: no answer at all
    if (!network && !(err instanceof ApiError && err.status >= 500)) {
      if (err instanceof ApiError) console.warn(err.message); else console.error(err);
      return;
    }
    if (!b) {
      b = el("div.banner#conn", {role: "status"});
      const header = $("header.top");
      if (header) header.after(b); else document.body.prepend(b);
    }
    b.textContent = "The server does not answer; retrying\u2026";
    b.hidden = false;
  }

  // -- formatting -------------------------------------------------------------------------------------------
  function num(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "\u2013";
    return Number(v).toLocaleString(undefined, {maximumFractionDigits: digits === undefined ? 1 : digits,
                                                minimumFractionDigits: 0});
  }

  function ms(v) { return v === null || v === undefined ? "\u2013" : `${num(v, v < 10 ? 1 : 0)} ms`; }

  function time(epoch) {
    if (epoch === null || epoch === undefined) return "\u2013";
    const d = new Date(epoch * 1000);
    const now = new Date();
    const t = d.toLocaleTimeString(undefined, {hour12: false});
    return d.toDateString() === now.toDateString() ? t : `${d.toLocaleDateString()} ${t}`;
  }

  function badge(text, cls) { return el("span.badge", {class: `badge ${cls || ""}`, text}); }

  function severity(s) { return badge(s || "?", `sev-${s}`); }

  /** "excavator #1 (0.87, overlap 0.12)" for an alert's object. */
  function object(o) {
    const bits = [num(o.confidence, 2)];
    if (o.overlap !== undefined && o.overlap !== null) bits.push(`overlap ${num(o.overlap, 2)}`);
    if (o.distance_m !== undefined && o.distance_m !== null) bits.push(`${num(o.distance_m, 2)} m`);
    else if (o.distance_px !== undefined && o.distance_px !== null) bits.push(`${num(o.distance_px, 0)} px`);
    return `${o.class || "?"} #${o.track_id} (${bits.join(", ")})`;
  }

  // -- top nav --------------------------------------------------------------------------------------------------
  let lastNav = "";

  /** Fill the nav's camera links and the mode from an /api/cameras answer. */
  function nav(data) {
    const key = JSON.stringify([data.mode, data.version, data.cameras.map((c) => c.id)]);
    if (key === lastNav) return;
    lastNav = key;
    const here = decodeURIComponent(location.pathname);
    const links = $("#nav-cameras");
    if (links) {
      fill(links, data.cameras.map((c) => {
        const href = `/cameras/${encodeURIComponent(c.id)}`;
        return el("a", {href, text: c.id, "aria-current": here === `/cameras/${c.id}` ? "page" : null,
                        title: `Camera ${c.id}: live view and zone editor`});
      }));
    }
    const mode = $("#mode");
    if (mode) {
      mode.textContent = data.mode === "edit" ? "zone editor only: no model, no alerts"
                                              : `running \u00b7 v${data.version}`;
      mode.classList.toggle("edit", data.mode === "edit");
    }
  }

  /** The top bar every page shares: brand, main links, camera links (filled by nav()), mode. */
  function header() {
    const top = $("header.top");
    if (!top) return;
    const links = [["/", "Overview"], ["/alerts", "Alerts"], ["/health", "Health"]].map(([href, text]) =>
      el("a", {href, text, "aria-current": href === location.pathname ? "page" : null}));
    fill(top, [
      el("a", {class: "brand", href: "/", text: "maskwatch"}),
      el("nav", {"aria-label": "Main"}, [...links, el("span", {class: "sep", "aria-hidden": "true"}),
                                          el("span", {id: "nav-cameras"})]),
      el("span", {id: "mode", class: "mode"}),
    ]);
  }

  async function cameras() {
    const data = await api("/api/cameras");
    nav(data);
    return data;
  }

  header();  // deferred scripts run after parsing, before the page's own script: its nav() finds the bar

  return {el, fill, append, $, api, ApiError, poll, num, ms, time, badge, severity, object, nav, cameras};
})();
