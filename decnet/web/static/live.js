// The live page of one topology (decnet/web/page.py serves it): reads
// GET /api/v1/topologies/{id}/events with fetch() and a stream reader, since
// EventSource cannot send an Authorization header, so the SSE parsing and the
// reconnection are done here. Everything from the stream reaches the page as
// text (textContent, setAttribute), never as markup.
"use strict";

(function () {
  const TOKEN_KEY = "decnet.web.token";
  const ID_PATTERN = /^\/topologies\/([a-z0-9-]{1,64})\/live\/?$/;
  // The first wait before reconnecting, until the stream's `retry:` says otherwise.
  const DEFAULT_RETRY_MS = 2000;
  // Each failed attempt in a row doubles the wait, up to this.
  const MAX_BACKOFF_MS = 30000;
  const LABELS = { enqueued: "pending", applying: "applying", applied: "applied", failed: "failed" };
  // A state never goes back: an older event arriving late does not move the badge.
  const RANK = { enqueued: 0, applying: 1, applied: 2, failed: 2 };
  const RESYNC_REASONS = {
    last_event_id: "This page reconnected to the stream; events published while it was away are not replayed.",
    reconnect: "decnet web lost its connection to the bus and reconnected.",
    bus_unavailable: "The bus was unavailable when the stream opened.",
    slow_client: "This page fell behind the stream and events were dropped.",
    slow_consumer: "decnet web fell behind the bus and events were dropped.",
  };

  // -- SSE parsing (the WHATWG event-stream format)

  /** Parses an event stream fed in arbitrary text chunks; calls
   *  onEvent({id, type, data}) per dispatched event, onRetry(ms) per valid
   *  `retry:` and onComment(text) per comment line. */
  class SSEParser {
    constructor(handlers) {
      this.handlers = handlers;
      this.buffer = "";
      this.started = false;
      this.data = "";
      this.type = "";
      this.lastEventId = "";
    }

    feed(text) {
      if (!this.started && text.length) {
        this.started = true;
        if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      }
      this.buffer += text;
      let start = 0;
      for (;;) {
        const cr = this.buffer.indexOf("\r", start);
        const lf = this.buffer.indexOf("\n", start);
        if (cr < 0 && lf < 0) break;
        let end, next;
        if (cr >= 0 && (lf < 0 || cr < lf)) {
          // A CR at the very end may be the first half of a CRLF: wait for more.
          if (cr === this.buffer.length - 1) break;
          end = cr;
          next = this.buffer[cr + 1] === "\n" ? cr + 2 : cr + 1;
        } else {
          end = lf;
          next = lf + 1;
        }
        this.line(this.buffer.slice(start, end));
        start = next;
      }
      this.buffer = this.buffer.slice(start);
    }

    line(line) {
      if (line === "") return this.dispatch();
      if (line[0] === ":") return this.handlers.onComment && this.handlers.onComment(line.slice(1).trim());
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
      if (field === "event") this.type = value;
      else if (field === "data") this.data += value + "\n";
      else if (field === "id") { if (value.indexOf("\0") < 0) this.lastEventId = value; }
      else if (field === "retry") { if (/^\d+$/.test(value) && this.handlers.onRetry) this.handlers.onRetry(Number(value)); }
    }

    dispatch() {
      const data = this.data, type = this.type;
      this.data = "";
      this.type = "";
      if (data === "") return;
      this.handlers.onEvent({ id: this.lastEventId, type: type || "message", data: data.slice(0, -1) });
    }
  }

  // -- the page

  const $ = (id) => document.getElementById(id);
  const match = ID_PATTERN.exec(window.location.pathname);
  const topologyId = match ? match[1] : null;
  const streamUrl = topologyId ? "/api/v1/topologies/" + topologyId + "/events" : null;

  const conn = {
    generation: 0,      // bumped by every connect(): a stale attempt sees it changed and stops
    controller: null,
    timer: null,
    retryMs: DEFAULT_RETRY_MS,
    failures: 0,        // attempts in a row that did not reach stream.ready
    lastEventId: null,  // sent back as Last-Event-ID, so the server answers with a resync
  };
  const mutations = new Map();
  let eventCount = 0;

  function text(id, value) { $(id).textContent = value; }

  function setConnection(state, message) {
    $("connection").setAttribute("data-state", state);
    text("connection-text", message);
  }

  function clock(ts) {
    // "2026-11-29T16:00:00.123Z" → "16:00:00.123 UTC"; anything else as it came.
    return typeof ts === "string" && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(ts)
      ? ts.slice(11, 23) + " UTC" : String(ts);
  }

  function show(id, visible) { $(id).hidden = !visible; }

  // -- the token

  function token() {
    try { return window.sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }

  function askForToken(problem) {
    const box = $("auth-error");
    box.textContent = problem || "";
    box.hidden = !problem;
    show("auth", true);
    $("token-input").value = "";
    $("token-input").focus();
  }

  function saveToken() {
    let value = $("token-input").value.trim();
    if (/^bearer\s+/i.test(value)) value = value.replace(/^bearer\s+/i, "");
    if (!value) return askForToken("The token is empty.");
    window.sessionStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    show("auth", false);
    conn.failures = 0;
    connect();
  }

  function forgetToken() {
    window.sessionStorage.removeItem(TOKEN_KEY);
    stop();
    setConnection("needs-token", "no token");
    askForToken(null);
  }

  // -- the connection

  function stop() {
    conn.generation += 1;
    clearTimeout(conn.timer);
    conn.timer = null;
    if (conn.controller) conn.controller.abort();
    conn.controller = null;
  }

  function scheduleReconnect(why) {
    const base = Math.max(conn.retryMs, 1);
    const wait = Math.min(base * Math.pow(2, Math.min(conn.failures, 10)), Math.max(MAX_BACKOFF_MS, base));
    // Jitter, so that many pages cut off together do not come back together.
    const delay = Math.round(wait * (0.8 + 0.4 * Math.random()));
    conn.failures += 1;
    setConnection("reconnecting", why + "; reconnecting in " + (delay / 1000).toFixed(1) + " s");
    const generation = conn.generation;
    clearTimeout(conn.timer);
    conn.timer = setTimeout(() => { if (generation === conn.generation) connect(); }, delay);
  }

  async function refusal(response) {
    let detail = "";
    try {
      const body = await response.json();
      if (body && typeof body.detail === "string") detail = body.detail;
    } catch (e) { /* not JSON: the status says enough */ }
    return detail;
  }

  async function connect() {
    stop();
    const generation = conn.generation;
    const current = token();
    if (!current) {
      setConnection("needs-token", "no token");
      return askForToken(null);
    }
    const controller = new AbortController();
    conn.controller = controller;
    setConnection("connecting", "connecting");
    const headers = { Authorization: "Bearer " + current, Accept: "text/event-stream" };
    if (conn.lastEventId !== null) headers["Last-Event-ID"] = conn.lastEventId;
    let response;
    try {
      response = await fetch(streamUrl, {
        headers, cache: "no-store", credentials: "omit", redirect: "error", signal: controller.signal,
      });
    } catch (e) {
      if (generation === conn.generation) scheduleReconnect("cannot reach decnet web");
      return;
    }
    if (generation !== conn.generation) return;
    if (response.status === 401 || response.status === 403) {
      const detail = await refusal(response);
      if (generation !== conn.generation) return;
      const what = response.status === 401 ? "401 Unauthorized" : "403 Forbidden";
      setConnection("refused", what);
      return askForToken(what + (detail ? ": " + detail : "") + ". Paste another token.");
    }
    if (response.status === 422) {
      setConnection("failed", "invalid topology id");
      return;
    }
    const type = response.headers.get("content-type") || "";
    if (!response.ok || !response.body || !type.startsWith("text/event-stream")) {
      if (response.body) response.body.cancel().catch(() => {});
      return scheduleReconnect("HTTP " + response.status);
    }
    setConnection("connecting", "waiting for the bus");
    try {
      await read(response.body, generation);
    } catch (e) { /* a cut connection: reconnect below */ }
    if (generation === conn.generation) scheduleReconnect("the stream ended");
  }

  async function read(body, generation) {
    const reader = body.getReader();
    const decoder = new TextDecoder("utf-8");
    const parser = new SSEParser({
      onEvent: (event) => { if (generation === conn.generation) handle(event); },
      onRetry: (ms) => { conn.retryMs = ms; },
    });
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || generation !== conn.generation) break;
        parser.feed(decoder.decode(value, { stream: true }));
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // -- events

  function handle(event) {
    if (event.id !== "") conn.lastEventId = event.id;
    let envelope;
    try { envelope = JSON.parse(event.data); } catch (e) { return; }
    if (envelope === null || typeof envelope !== "object") return;
    const payload = envelope.payload && typeof envelope.payload === "object" ? envelope.payload : {};
    const ts = envelope.ts;
    switch (event.type) {
      case "stream.ready":
        conn.failures = 0;
        setConnection("live", "live");
        return;
      case "stream.resync":
        return resync(payload, ts);
      case "error":
        return notice("error", "The stream stopped on a server error",
          typeof payload.message === "string" ? payload.message : "internal error", "The page reconnects by itself.");
      case "topology.status_changed":
        counted(ts);
        return statusChanged(payload, ts);
      case "topology.version_bumped":
        counted(ts);
        return versionBumped(payload, ts);
      default:
        if (event.type.startsWith("mutation.")) {
          counted(ts);
          return mutation(event.type.slice("mutation.".length), payload, ts);
        }
    }
  }

  function counted(ts) {
    eventCount += 1;
    text("event-count", String(eventCount));
    text("last-event", "last at " + clock(ts));
  }

  function statusChanged(payload, ts) {
    const status = typeof payload.status === "string" ? payload.status : "unknown";
    const el = $("status");
    el.textContent = status;
    el.setAttribute("data-status", status);
    $("status-card").removeAttribute("data-stale");
    const previous = typeof payload.previous === "string" ? "from " + payload.previous + ", " : "";
    text("status-sub", previous + "at " + clock(ts));
  }

  function versionBumped(payload, ts) {
    const ok = Number.isInteger(payload.version);
    text("version", ok ? "v" + payload.version : "?");
    $("version-card").removeAttribute("data-stale");
    const previous = Number.isInteger(payload.previous) ? "from v" + payload.previous + ", " : "";
    text("version-sub", previous + "at " + clock(ts));
  }

  function mutation(state, payload, ts) {
    if (!(state in RANK)) return;
    const id = payload.mutation_id === undefined || payload.mutation_id === null ? "?" : String(payload.mutation_id);
    let entry = mutations.get(id);
    if (!entry) {
      entry = newRow(id);
      mutations.set(id, entry);
    }
    entry.row.removeAttribute("data-stale");
    if (typeof payload.op === "string") entry.op.textContent = payload.op;
    step(entry, state, ts);
    if (entry.state !== null && RANK[state] < RANK[entry.state]) return;
    entry.state = state;
    entry.row.setAttribute("data-state", LABELS[state]);
    entry.badge.setAttribute("data-state", LABELS[state]);
    entry.badge.textContent = LABELS[state];
    if (state === "failed") {
      entry.error.textContent = typeof payload.error === "string" && payload.error ? payload.error : "no error given";
      entry.error.hidden = false;
    }
  }

  function newRow(id) {
    const row = document.createElement("tr");
    row.className = "mutation";
    row.setAttribute("data-mutation", id);
    const idCell = row.insertCell();
    const code = document.createElement("code");
    code.textContent = id;
    idCell.appendChild(code);
    const op = row.insertCell();
    op.className = "op";
    op.textContent = "–";
    const stateCell = row.insertCell();
    const badge = document.createElement("span");
    badge.className = "badge";
    stateCell.appendChild(badge);
    const progress = row.insertCell();
    const steps = document.createElement("ol");
    steps.className = "steps";
    progress.appendChild(steps);
    const error = document.createElement("div");
    error.className = "error";
    error.hidden = true;
    progress.appendChild(error);
    const body = $("mutations");
    body.insertBefore(row, body.firstChild);
    show("no-mutations", false);
    return { row, op, badge, steps, error, state: null, seen: new Set() };
  }

  function step(entry, state, ts) {
    if (entry.seen.has(state)) return;
    entry.seen.add(state);
    const item = document.createElement("li");
    item.setAttribute("data-state", LABELS[state]);
    const name = document.createElement("span");
    name.className = "step-name";
    name.textContent = LABELS[state];
    const time = document.createElement("span");
    time.className = "step-time";
    time.textContent = clock(ts);
    item.append(name, time);
    entry.steps.appendChild(item);
  }

  function resync(payload, ts) {
    const reason = typeof payload.reason === "string" ? payload.reason : "unknown";
    let why = RESYNC_REASONS[reason] || "Reason: " + reason + ".";
    if (Number.isInteger(payload.lost)) why += " " + payload.lost + " event(s) lost.";
    // What was shown before may be out of date: mark it until an event updates it.
    for (const entry of mutations.values()) entry.row.setAttribute("data-stale", "");
    $("status-card").setAttribute("data-stale", "");
    $("version-card").setAttribute("data-stale", "");
    notice("resync", "Events may have been missed (" + reason + ", " + clock(ts) + ")", why,
      "A full client reloads the topology's state from the REST API now (the database is the truth). " +
      "decnet web has no REST API for topology state, so this page keeps what it has shown, marked as " +
      "possibly stale, and updates it from the next events.");
  }

  function notice(kind, title, body, more) {
    const box = $("notice");
    box.setAttribute("data-kind", kind);
    text("notice-title", title);
    text("notice-text", body);
    text("notice-more", more);
    box.hidden = false;
  }

  // -- start

  function start() {
    $("token-save").addEventListener("click", saveToken);
    $("token-input").addEventListener("keydown", (e) => { if (e.key === "Enter") saveToken(); });
    $("token-forget").addEventListener("click", forgetToken);
    $("notice-dismiss").addEventListener("click", () => show("notice", false));
    if (!topologyId) {
      text("topology", "?");
      setConnection("failed", "no topology in the address");
      return;
    }
    text("topology", topologyId);
    document.title = topologyId + " · DECNET live";
    text("stream-url", streamUrl);
    connect();
  }

  // For the browser test of the parser; the page itself does not need it.
  window.decnetLive = { SSEParser };
  start();
})();
