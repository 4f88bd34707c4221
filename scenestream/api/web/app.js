// scenestream's web view: no build step, no dependencies. Every request carries the tenant's key
// (asked once, kept in sessionStorage); every route behind it works inside that tenant only.
//
//   #/live            the tenant's scenes and answers as they pass the pipeline (GET /v1/feed, SSE)
//   #/chat            ask through the pipeline (POST /v1/chat/completions, streamed): the scene, then the answer
//   #/session/<id>    a session's scenes (GET /v1/sessions/<id>/history), the field's path, the resonance links; erase
//   #/trace/<id>      one message's records on every topic and its timings (GET /v1/messages/<id>/trace)
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const ACTIVE_WEIGHT = 0.2; // the scene builder's threshold for an active register (scenestream.agents.scene.transform)
const $ = (selector, root = document) => root.querySelector(selector);
const store = window.sessionStorage;

// ------------------------------------------------------------------------------------------- the key and requests

class Refused extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code;
  }
}

function key() {
  return store.getItem("scenestream.key");
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${key()}` };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    store.removeItem("scenestream.key");
    askKey("The key was refused: " + (await response.json().catch(() => ({}))).error?.message);
  }
  if (!response.ok) throw new Refused(response.status, await response.json().catch(() => null));
  return response;
}

async function json(path, options) {
  return (await api(path, options)).json();
}

async function blobUrl(path) {
  return URL.createObjectURL(await (await api(path)).blob());
}

function askKey(message) {
  $("#key-error").textContent = message || "";
  const dialog = $("#key-dialog");
  if (!dialog.open) dialog.showModal();
  $("#key").focus();
}

async function useKey(given) {
  store.setItem("scenestream.key", given);
  try {
    const who = await json("/v1/tenant");
    $("#tenant").textContent = `tenant ${who.tenant}`;
    $("#forget-key").hidden = false;
    $("#key-dialog").close();
    performance.mark("view-ready");
    return true;
  } catch (error) {
    if (!(error instanceof Refused && error.status === 401)) askKey(`The server did not answer: ${error.message}`);
    return false;
  }
}

// ------------------------------------------------------------------------------------------- small DOM helpers

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

function fixed(value, digits = 2) {
  return Number(value || 0).toFixed(digits);
}

// ------------------------------------------------------------------------------------------- cards

// the linkage's concepts as the formula writes them: a ⊗ b, and with three or more, the last one led to (→)
function linkage(text) {
  const concepts = (text || "").split("·").map((c) => c.trim()).filter(Boolean);
  if (concepts.length < 3) return concepts.join(" ⊗ ") || "∅";
  return `${concepts.slice(0, -1).join(" ⊗ ")} → ${concepts[concepts.length - 1]}`;
}

// one card per message: its text, its scene (picture, registers, Δ-code, resonance, echoes, formula), its answer
class Card {
  // timed: the card was made when its question was asked here (the chat), so its clock means something
  constructor(list, messageId, session, text, timed = true) {
    this.timed = timed;
    this.node = $("#card-template").content.firstElementChild.cloneNode(true);
    this.node.dataset.messageId = messageId || "";
    this.messageId = messageId;
    this.session = session;
    this.started = performance.now();
    this.nextSeq = 0;
    this.answer = "";
    $(".text", this.node).textContent = text || "";
    $(".voice", this.node).addEventListener("click", () => this.speak());
    this.setIds(messageId, session);
    list.prepend(this.node);
  }

  setIds(messageId, session) {
    this.messageId = messageId || this.messageId;
    this.session = session || this.session;
    this.node.dataset.messageId = this.messageId || "";
    $(".message-id", this.node).textContent = this.messageId || "";
    $(".session", this.node).textContent = this.session ? `session ${this.session}` : "";
    if (this.messageId) $(".trace-link", this.node).href = `#/trace/${encodeURIComponent(this.messageId)}`;
    if (this.session) $(".session-link", this.node).href = `#/session/${encodeURIComponent(this.session)}`;
  }

  scene(scene) {
    if (this.node.dataset.scene) return; // once: the scene the decoder answers
    const ms = Math.round(performance.now() - this.started);
    this.node.dataset.scene = scene.scene_id || "";
    this.node.dataset.sceneMs = String(ms);
    if (scene.text && !$(".text", this.node).textContent) $(".text", this.node).textContent = scene.text;
    const box = $(".scene", this.node);
    $(".delta-code", box).textContent = scene.delta_code || "";
    $(".symbol", box).textContent = scene.symbol || "";
    $(".linkage", box).textContent = linkage(scene.linkage);
    const registers = clear($(".registers", box));
    for (const r of scene.registers || []) {
      const row = el("li", { class: r.weight >= ACTIVE_WEIGHT ? "register active" : "register" });
      row.append(el("span", { class: "name" }, r.name));
      const track = el("span", { class: "track" });
      const bar = el("span", { class: "bar" });
      bar.style.display = "block";
      bar.style.width = `${Math.round(100 * r.weight)}%`;
      track.append(bar);
      row.append(track, el("span", { class: "weight" }, fixed(r.weight)));
      registers.append(row);
    }
    const echoes = scene.echoes || [];
    $(".resonance", box).textContent = `ρ ${fixed(scene.resonance)} · ${echoes.length} echo${echoes.length === 1 ? "" : "es"}`;
    const list = clear($(".echoes", box));
    for (const echo of echoes.slice(0, 5)) list.append(el("li", { class: "echo" }, `${fixed(echo.score)} ${echo.text || ""}`));
    box.hidden = false;
    if (this.timed) $(".timing", this.node).textContent = `· scene after ${ms} ms`;
    if (scene.scene_id) this.picture(scene.scene_id);
    if (this.messageId) this.formula();
  }

  async picture(sceneId, tries = 5) {
    const img = $(".field-image", this.node);
    try {
      img.src = await blobUrl(`/v1/scenes/${encodeURIComponent(sceneId)}/image.svg`);
      img.dataset.loaded = "true";
    } catch (error) {
      // the memory stage stores the scene before it sends it on; with memory off there is no archive
      if (tries > 1 && error.status === 404) setTimeout(() => this.picture(sceneId, tries - 1), 1000);
      else img.alt = `no picture: ${error.message}`;
    }
  }

  async formula(tries = 5) {
    try {
      const doc = await json(`/v1/messages/${encodeURIComponent(this.messageId)}/formula`);
      $(".formula", this.node).textContent = doc.formula;
    } catch (error) {
      if (tries > 1 && error.status === 404) setTimeout(() => this.formula(tries - 1), 1000);
    }
  }

  delta(seq, text) {
    if (seq !== undefined) {
      if (seq < this.nextSeq) return; // seen before
      this.nextSeq = seq + 1;
    }
    if (!this.node.dataset.firstTokenMs) this.node.dataset.firstTokenMs = String(Math.round(performance.now() - this.started));
    this.answer += text;
    const answer = $(".answer", this.node);
    answer.textContent = this.answer;
    answer.dataset.state = "streaming";
  }

  final(text, detail = {}) {
    const answer = $(".answer", this.node);
    if (detail.cancelled) {
      answer.dataset.state = "cancelled";
      this.error("cancelled before it was answered");
      return;
    }
    this.answer = text;
    answer.textContent = text;
    answer.dataset.state = "final";
    const ms = Math.round(performance.now() - this.started);
    this.node.dataset.answerMs = String(ms);
    if (detail.register) answer.title = `${detail.register} (${detail.finish_reason || ""})`;
    $(".voice", this.node).disabled = !text.trim();
  }

  error(message) {
    $(".error", this.node).textContent = message;
    const answer = $(".answer", this.node);
    if (answer.dataset.state !== "final") answer.dataset.state = "failed";
  }

  async speak(tries = 6) {
    const audio = $(".voice-audio", this.node);
    try {
      audio.src = await blobUrl(`/v1/messages/${encodeURIComponent(this.messageId)}/voice.ogg`);
      audio.hidden = false;
      audio.dataset.loaded = "true";
      audio.play().catch(() => {}); // a headless browser may refuse to play: the file is there all the same
    } catch (error) {
      // the memory stage links the answer to its scene a moment after the answer is out
      if (tries > 1 && error.status === 404) setTimeout(() => this.speak(tries - 1), 1000);
      else this.error(`voice: ${error.message}`);
    }
  }
}

// ------------------------------------------------------------------------------------------- server-sent events

// the events of an SSE body read with fetch (EventSource cannot send the Authorization header)
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n");
      if (data) yield data;
    }
  }
}

// ------------------------------------------------------------------------------------------- live

const live = new Map(); // message id → its card in the live list

async function follow() {
  const state = $("#feed-state");
  for (;;) {
    if (!key()) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      continue;
    }
    try {
      const response = await api("/v1/feed");
      for await (const data of events(response)) {
        const event = JSON.parse(data);
        if (event.type === "hello") {
          state.textContent = "live";
          state.classList.add("live");
          performance.mark("feed-live");
        } else {
          onFeed(event);
        }
      }
    } catch (error) {
      state.textContent = `offline (${error.message})`;
    }
    state.classList.remove("live");
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function onFeed(event) {
  if (event.type === "gap") {
    $("#feed-state").textContent = `live (${event.lost} events dropped: too slow)`;
    return;
  }
  let card = live.get(event.message_id);
  if (!card) {
    if (event.type !== "scene") return; // a piece of a message whose scene came before this page
    card = new Card($("#feed"), event.message_id, event.session, event.text, false);
    live.set(event.message_id, card);
    $("#feed-empty").hidden = true;
    while (live.size > 100) {
      const [oldest, old] = live.entries().next().value;
      old.node.remove();
      live.delete(oldest);
    }
  }
  if (event.type === "scene") card.scene(event);
  else if (event.type === "delta") card.delta(event.seq, event.text);
  else if (event.type === "final") card.final(event.text, event);
  else if (event.type === "error") card.error(`the ${event.stage} stage refused it: ${event.reason}`);
}

// ------------------------------------------------------------------------------------------- chat

function chatSession() {
  let session = store.getItem("scenestream.session");
  if (!session) {
    session = `web-${Math.random().toString(16).slice(2, 10)}`;
    store.setItem("scenestream.session", session);
  }
  $("#chat-session").textContent = session;
  $("#chat-session-link").href = `#/session/${encodeURIComponent(session)}`;
  return session;
}

async function ask(text) {
  const session = chatSession();
  const card = new Card($("#thread"), null, session, text);
  const body = { model: "scenestream", stream: true, user: session, messages: [{ role: "user", content: text }] };
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    for await (const data of events(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) {
        card.error(chunk.error.message);
        break;
      }
      const ext = chunk.scenestream;
      if (ext && ext.message_id && !card.messageId) card.setIds(ext.message_id, ext.session);
      if (ext && ext.scene_id && ext.delta_code && !chunk.choices?.[0]?.finish_reason) card.scene(ext);
      const choice = chunk.choices && chunk.choices[0];
      if (choice && choice.delta && choice.delta.content) card.delta(undefined, choice.delta.content);
      if (choice && choice.finish_reason) card.final(card.answer, ext || {});
    }
  } catch (error) {
    card.error(error.message);
  }
  return card;
}

// ------------------------------------------------------------------------------------------- session

let shownSession = null;

async function openSession(session) {
  shownSession = session;
  $("#session-id").value = session;
  $("#erase").disabled = true;
  const status = $("#session-status");
  status.textContent = "loading…";
  let rows;
  try {
    rows = (await json(`/v1/sessions/${encodeURIComponent(session)}/history`)).data;
  } catch (error) {
    status.textContent = `could not load the session: ${error.message}`;
    return;
  }
  status.textContent = `${rows.length} scene${rows.length === 1 ? "" : "s"} in session ${session}`;
  $("#view-session").dataset.scenes = String(rows.length);
  $("#erase").disabled = rows.length === 0;
  const list = clear($("#session-scenes"));
  for (const row of rows) {
    const item = el("li", { class: "scene-row", "data-scene-id": row.scene_id });
    const head = el("p");
    head.append(el("b", {}, `${row.delta_code} `), `${row.text}  `);
    const trace = el("a", { href: `#/trace/${encodeURIComponent(row.message_id)}` }, "trace");
    head.append(el("span", { class: "muted" }, ` ${row.register} · ρ ${fixed(row.resonance)} · `), trace);
    item.append(head);
    if (row.answer) item.append(el("p", { class: "answer", "data-state": "final" }, row.answer));
    list.append(item);
  }
  fieldPlot($("#field-plot"), rows);
  resonanceGraph($("#resonance-graph"), rows);
}

// valence on x (−1 … 1), arousal on y (0 … 1), the scenes joined in order; each point numbered, coloured by tension
function fieldPlot(plot, rows) {
  clear(plot);
  const W = 360, H = 260, L = 36, R = 12, T = 12, B = 30;
  const x = (v) => L + ((Number(v) + 1) / 2) * (W - L - R);
  const y = (a) => H - B - Number(a) * (H - T - B);
  plot.append(svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "white", stroke: "#d9d4ca" }));
  plot.append(svg("line", { x1: x(0), y1: T, x2: x(0), y2: H - B, stroke: "#d9d4ca", "stroke-dasharray": "3 3" }));
  plot.append(svg("text", { x: L, y: H - 10, "font-size": 10, fill: "#7a756c" }, "valence −1"));
  plot.append(svg("text", { x: W - R, y: H - 10, "font-size": 10, fill: "#7a756c", "text-anchor": "end" }, "+1"));
  plot.append(svg("text", { x: 4, y: T + 10, "font-size": 10, fill: "#7a756c" }, "↑ 1"));
  plot.append(svg("text", { x: 4, y: H - B, "font-size": 10, fill: "#7a756c" }, "0"));
  const points = rows.map((row) => [x(row.field?.valence ?? 0), y(row.field?.arousal ?? 0)]);
  if (points.length > 1) {
    plot.append(svg("polyline", { class: "path", points: points.map((p) => p.join(",")).join(" "), fill: "none",
      stroke: "#3b6ea5", "stroke-width": 1.5 }));
  }
  rows.forEach((row, i) => {
    const tension = Math.max(0, Math.min(1, Number(row.field?.tension ?? 0)));
    const dot = svg("circle", { class: "point", cx: points[i][0], cy: points[i][1], r: 6,
      fill: `rgb(${Math.round(59 + 83 * tension)}, ${Math.round(110 - 42 * tension)}, ${Math.round(165 - 2 * tension)})` });
    dot.append(svg("title", {}, `${i + 1}. ${row.delta_code} valence ${fixed(row.field?.valence)} arousal ${fixed(row.field?.arousal)} tension ${fixed(tension)} ${row.field?.rhythm || ""}`));
    plot.append(dot);
    plot.append(svg("text", { x: points[i][0] + 8, y: points[i][1] - 6, "font-size": 10 }, String(i + 1)));
  });
  if (!rows.length) plot.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#7a756c" }, "no scenes"));
}

// the scenes in order on a line; an arc from each echoed scene of this session to the scene that recalled it
function resonanceGraph(graph, rows) {
  clear(graph);
  const W = 360, H = 260, base = 200;
  const step = rows.length > 1 ? (W - 40) / (rows.length - 1) : 0;
  const at = new Map(rows.map((row, i) => [row.scene_id, 20 + i * step + (rows.length === 1 ? (W - 40) / 2 : 0)]));
  let links = 0;
  rows.forEach((row) => {
    for (const echo of row.echoes || []) {
      if (!at.has(echo.scene_id)) continue; // an echo from another session of the tenant (memory scope "tenant")
      const x1 = at.get(echo.scene_id), x2 = at.get(row.scene_id);
      const r = Math.abs(x2 - x1) / 2;
      const arc = svg("path", { class: "link", d: `M${x1} ${base} A${r} ${Math.min(r, base - 10)} 0 0 1 ${x2} ${base}`,
        fill: "none", stroke: "#3b6ea5", "stroke-opacity": 0.35 + 0.65 * Number(echo.score || 0),
        "stroke-width": 1 + 4 * Number(echo.score || 0) });
      arc.append(svg("title", {}, `${fixed(echo.score)}: ${echo.text || ""}`));
      graph.append(arc);
      links += 1;
    }
  });
  rows.forEach((row, i) => {
    const node = svg("circle", { class: "node", cx: at.get(row.scene_id), cy: base, r: 4 + 8 * Number(row.resonance || 0),
      fill: "#3b6ea5", "fill-opacity": 0.4 + 0.6 * Number(row.resonance || 0) });
    node.append(svg("title", {}, `${i + 1}. ${row.delta_code} ρ ${fixed(row.resonance)}: ${row.text}`));
    graph.append(node);
    graph.append(svg("text", { x: at.get(row.scene_id), y: base + 24, "font-size": 10, "text-anchor": "middle" }, `${i + 1} ${row.delta_code}`));
  });
  graph.dataset.links = String(links);
  const caption = rows.length ? `${links} resonance link${links === 1 ? "" : "s"}` : "no scenes";
  graph.append(svg("text", { x: 10, y: 16, "font-size": 11, fill: "#7a756c" }, caption));
}

function askErase() {
  if (!shownSession) return;
  $("#erase-name").textContent = shownSession;
  $("#erase-count").textContent = $("#view-session").dataset.scenes || "0";
  $("#erase-dialog").showModal();
}

async function erase(session) {
  const status = $("#session-status");
  try {
    const done = await json(`/v1/sessions/${encodeURIComponent(session)}`, { method: "DELETE" });
    await openSession(session);
    status.textContent = `erased session ${session}: ${done.erased.scenes} scenes, ${done.erased.answers} answers, ` +
      `${done.erased.echo_links} echo links`;
    $("#view-session").dataset.erased = String(done.erased.scenes);
  } catch (error) {
    status.textContent = `could not erase: ${error.message}`;
  }
}

// ------------------------------------------------------------------------------------------- trace

const TOPIC_ORDER = ["raw-text", "tokens", "scenes", "memory-events", "lora-outputs", "control"];

function topicRank(topic) {
  const i = TOPIC_ORDER.findIndex((name) => topic === name || topic.endsWith(`-${name}`) || topic.endsWith(name));
  return topic.endsWith(".dlq") ? 100 : i < 0 ? 50 : i;
}

// what a record says in one word: formed or resonated scene, a piece or the answer, a memory event
function recordLabel(topic, record) {
  if (topic.endsWith(".dlq")) return `dead letter: ${record.stage} — ${record.reason}`;
  if (record.stage === "formed" || record.stage === "resonated") return `scene ${record.stage}`;
  if (topic.endsWith("raw-text")) return "asked";
  if (topic.endsWith("tokens")) return "tokenized";
  if ("final" in record) return record.final ? (record.cancelled ? "cancelled" : "answer") : `piece ${record.seq}`;
  if (record.event) return `memory ${record.event}`;
  return topic;
}

async function openTrace(messageId) {
  $("#trace-id").value = messageId;
  const status = $("#trace-status");
  status.textContent = "loading…";
  let doc;
  try {
    doc = await json(`/v1/messages/${encodeURIComponent(messageId)}/trace`);
  } catch (error) {
    status.textContent = `no trace: ${error.message}`;
    clear($("#trace-records"));
    clear($("#trace-timeline"));
    clear($("#trace-timings"));
    return;
  }
  const entries = [];
  for (const [topic, list] of Object.entries(doc.topics || {})) {
    for (const entry of list) entries.push({ topic, ...entry });
  }
  entries.sort((a, b) => a.timestamp_ms - b.timestamp_ms || topicRank(a.topic) - topicRank(b.topic));
  const dead = entries.filter((e) => e.topic.endsWith(".dlq")).length;
  status.textContent = `${entries.length} records on ${Object.keys(doc.topics || {}).length} topics` +
    (dead ? `, ${dead} dead letter${dead === 1 ? "" : "s"}` : "") + (doc.archive ? "; the scene is archived" : "");
  timeline($("#trace-timeline"), entries);
  timings($("#trace-timings"), doc.timings_ms || {});
  const box = clear($("#trace-records"));
  const t0 = entries.length ? entries[0].timestamp_ms : 0;
  for (const entry of entries) {
    const details = el("details", { class: entry.topic.endsWith(".dlq") ? "record dead-letter" : "record" });
    details.dataset.topic = entry.topic;
    details.append(el("summary", {}, `+${entry.timestamp_ms - t0} ms · ${entry.topic} · ${recordLabel(entry.topic, entry.record)}` +
      ` (partition ${entry.partition}, offset ${entry.offset})`));
    details.append(el("pre", {}, JSON.stringify(entry.record, null, 2)));
    box.append(details);
  }
  if (doc.archive) {
    const details = el("details", { class: "record" });
    details.append(el("summary", {}, "archive · the stored scene and its answer"), el("pre", {}, JSON.stringify(doc.archive, null, 2)));
    box.append(details);
  }
}

// one row per record kind, a mark at its time from the raw text; pieces of the answer shown as one bar
function timeline(plot, entries) {
  clear(plot);
  if (!entries.length) return;
  const t0 = entries[0].timestamp_ms;
  const end = Math.max(1, entries[entries.length - 1].timestamp_ms - t0);
  const rows = [];
  const pieces = entries.filter((e) => e.record && e.record.final === false);
  for (const e of entries) {
    if (e.record && e.record.final === false) continue;
    rows.push({ label: `${e.topic.replace(/^.*?(raw-text|tokens|scenes|memory-events|lora-outputs|control)/, "$1")} · ${recordLabel(e.topic, e.record)}`,
      at: e.timestamp_ms - t0, dead: e.topic.endsWith(".dlq") });
  }
  if (pieces.length) {
    rows.push({ label: `answer pieces (${pieces.length}): first token → last`, at: pieces[0].timestamp_ms - t0,
      until: pieces[pieces.length - 1].timestamp_ms - t0 });
  }
  rows.sort((a, b) => a.at - b.at);
  const W = 720, L = 280, R = 60, row = 20;
  plot.setAttribute("viewBox", `0 0 ${W} ${rows.length * row + 24}`);
  const x = (ms) => L + (ms / end) * (W - L - R);
  rows.forEach((r, i) => {
    const y = 14 + i * row;
    const g = svg("g", { class: r.dead ? "step dead-letter" : "step" });
    g.append(svg("text", { x: 4, y: y + 4, "font-size": 11, fill: r.dead ? "#c0504d" : "#2b2a28" }, r.label));
    g.append(svg("line", { x1: L, y1: y, x2: W - R, y2: y, stroke: "#d9d4ca" }));
    if (r.until !== undefined) {
      g.append(svg("rect", { x: x(r.at), y: y - 5, width: Math.max(2, x(r.until) - x(r.at)), height: 10, fill: "#b8c7da" }));
    }
    g.append(svg("circle", { cx: x(r.at), cy: y, r: 5, fill: r.dead ? "#c0504d" : "#3b6ea5" }));
    g.append(svg("text", { x: W - R + 6, y: y + 4, "font-size": 11, fill: "#7a756c" }, `${r.until ?? r.at} ms`));
    plot.append(g);
  });
}

function timings(plot, values) {
  clear(plot);
  // the archive repeats the answer's timings as answer.<step>: shown once
  const items = Object.entries(values).filter(
    ([name, v]) => typeof v === "number" && !(name.startsWith("answer.") && values[name.slice(7)] === v));
  if (!items.length) return;
  const W = 720, L = 200, R = 80, row = 18;
  const max = Math.max(1, ...items.map(([, v]) => v));
  plot.setAttribute("viewBox", `0 0 ${W} ${items.length * row + 10}`);
  items.forEach(([name, ms], i) => {
    const y = 6 + i * row;
    const g = svg("g", { class: "timing" });
    g.append(svg("text", { x: 4, y: y + 10, "font-size": 11 }, name));
    g.append(svg("rect", { x: L, y, width: Math.max(1, (ms / max) * (W - L - R)), height: 12, rx: 2, fill: "#3b6ea5" }));
    g.append(svg("text", { x: L + (ms / max) * (W - L - R) + 6, y: y + 10, "font-size": 11, fill: "#7a756c" }, `${fixed(ms, 1)} ms`));
    plot.append(g);
  });
}

// ------------------------------------------------------------------------------------------- routing and start

function route() {
  const [, view = "live", id] = (location.hash || "#/live").match(/^#\/([a-z]+)(?:\/(.+))?$/) || [];
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.dataset.view !== view;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("current", link.dataset.view === view);
  if (!key()) return;
  const given = id ? decodeURIComponent(id) : null;
  if (view === "session") openSession(given || $("#session-id").value || chatSession());
  if (view === "trace" && given) openTrace(given);
}

function start() {
  chatSession();
  $("#key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await useKey($("#key").value.trim())) route();
    else if (!key()) askKey("The key was refused.");
  });
  $("#forget-key").addEventListener("click", () => {
    store.removeItem("scenestream.key");
    location.reload();
  });
  $("#ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("#question").value.trim();
    if (!text) return;
    $("#question").value = "";
    ask(text);
  });
  $("#new-session").addEventListener("click", () => {
    store.removeItem("scenestream.session");
    chatSession();
  });
  $("#session-form").addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/session/${encodeURIComponent($("#session-id").value.trim())}`;
  });
  $("#trace-form").addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/trace/${encodeURIComponent($("#trace-id").value.trim())}`;
  });
  $("#erase").addEventListener("click", askErase);
  $("#erase-dialog").addEventListener("close", () => {
    if ($("#erase-dialog").returnValue === "erase" && shownSession) erase(shownSession);
  });
  window.addEventListener("hashchange", route);
  route();
  if (key()) useKey(key());
  else askKey();
  follow();
}

start();
