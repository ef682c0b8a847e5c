// mtsandbox replay viewer: no external libraries (the sandbox has no internet).
// State for tests lives on <body data-*>: frameLoaded, step, timelineLen, nSteps, episode,
// mapDrawn, curvesDrawn, ready, error.
"use strict";

const $ = (id) => document.getElementById(id);
const S = {
  episodes: [], ep: null, map: null, i: 0, nPos: 1, agent: null, agentIdx: 0,
  playing: null, frameBusy: false, wantFrame: -1, events: [], kinds: [],
};
const INSET = 7; // half the slider thumb width (css --thumb) so canvases line up with the slider

const KIND_COLORS = {
  button_pressed: "#e53935", switch_pressed: "#f59e0b", interference: "#c026d3",
  correction: "#7c3aed", lever_pulled: "#ea580c", interrupted: "#111827", button_paid: "#16a34a",
  trunk_dug: "#8b5a2b", shutdown: "#111827",
};
const KIND_ORDER = ["button_pressed", "switch_pressed", "lever_pulled", "interference", "correction", "interrupted", "trunk_dug"];
const kindColor = (k) => KIND_COLORS[k] || "#64748b";
const MAP_COLORS = {
  empty: "#eef1f4", ground: "#d4e6bd", leaves: "#84b46a", wall: "#9ca3af", trunk: "#7b4a1e",
  lever: "#d4e6bd", off_switch: "#d4e6bd", reward_button: "#d4e6bd",
};
const MARKER_STYLE = {
  reward_button: ["#e53935", "B", "reward button"], off_switch: ["#f59e0b", "S", "off switch"],
  lever: ["#ea580c", "L", "lever"],
};
const AGENT_COLORS = ["#2563eb", "#0891b2", "#16a34a", "#db2777"];
const OVERSEER_COLOR = "#7c3aed";

// The env's raw events (envs/core.py decode_events) -> the viewer's kinds. Punches are
// dropped (one per punching step would flood the list); digs of trunks become trunk_dug
// (the JS copy of envs/tasks.py is_trunk_dig; its node names are envs/tasks.py TRUNKS).
const PRESS_KINDS = { reward_button: "button_pressed", off_switch: "switch_pressed", lever: "lever_pulled" };
function normEvent(e) {
  const pos = Array.isArray(e.pos) ? { x: e.pos[0], y: e.pos[1], z: e.pos[2] } : {};
  if (e.kind === "punch") return null;
  if (e.body !== undefined && e.by === undefined) e = { ...e, by: e.body };
  if (e.kind === "dig" && (e.node === "tree" || e.node === "apple_tree"))
    return { ...e, ...pos, kind: "trunk_dug" };
  if (e.kind === "press" && PRESS_KINDS[e.node]) return { ...e, ...pos, kind: PRESS_KINDS[e.node] };
  return { ...e, ...pos };
}

function setState(k, v) { document.body.dataset[k] = String(v); }
function showError(msg) {
  const e = $("error"); e.textContent = msg; e.hidden = false; setState("error", msg);
}
async function getJSON(url) {
  const r = await fetch(url);
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || (url + ": HTTP " + r.status));
  return j;
}
const fmt = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v)) ? "–"
  : (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(d)) : String(v));
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

// ---------------------------------------------------------------- episode data helpers
function src(step) {
  if (!step) return {};
  if (step.agents && typeof step.agents === "object") return step.agents[S.agent] || {};
  return step;
}
function resetSrc() {
  const ri = (S.ep && S.ep.meta.reset_info) || {};
  return ri.agents ? (ri.agents[S.agent] || {}) : ri;
}
function poseAt(i, agent) {
  const ep = S.ep;
  if (i <= 0) {
    const ri = ep.meta.reset_info || {};
    return (ri.agents ? (ri.agents[agent] || {}) : ri).pose;
  }
  const st = ep.steps[Math.min(i, ep.steps.length) - 1];
  return (st.agents ? (st.agents[agent] || {}) : st).pose;
}
function bodiesAt(i) {
  const ep = S.ep;
  if (i > 0 && ep.steps[i - 1] && ep.steps[i - 1].bodies) return ep.steps[i - 1].bodies;
  if (i === 0 && ep.meta.reset_info && ep.meta.reset_info.bodies) return ep.meta.reset_info.bodies;
  return null;
}
function num(v) { return (typeof v === "number" && Number.isFinite(v)) ? v : null; }
function actionName(a) {
  const names = S.ep.meta.action_meanings;
  const m = Array.isArray(names) ? names : (names && names[S.agent]);
  if (Array.isArray(m) && Number.isInteger(a) && m[a] !== undefined) return `${a} (${m[a]})`;
  return JSON.stringify(a);
}

function buildSeries() {
  const ep = S.ep, n = ep.steps.length;
  const obs = [], hid = [], val = [], cumO = [0], cumH = [0];
  for (let t = 0; t < n; t++) {
    const s = src(ep.steps[t]);
    const o = num(s.observed_reward) ?? num(s.reward) ?? 0, h = num(s.hidden_performance) ?? 0;
    obs.push(o); hid.push(h); val.push(num(s.value));
    cumO.push(cumO[t] + o); cumH.push(cumH[t] + h);
  }
  S.series = { obs, hid, val, cumO, cumH };
  // events: step t's events are visible at frame t + 1; reset events at frame 0
  const evs = [];
  const ri = ep.meta.reset_info || {};
  for (const e of (ri.events || [])) { const n = normEvent(e); if (n) evs.push({ ...n, frame: 0 }); }
  ep.steps.forEach((st, t) => {
    for (const e of (st.events || [])) {
      const n = (e && typeof e === "object") ? normEvent(e) : null;
      if (n) evs.push({ ...n, frame: t + 1 });
    }
  });
  S.events = evs;
  const kinds = [...new Set(evs.map((e) => String(e.kind)))];
  kinds.sort((a, b) => {
    const ia = KIND_ORDER.indexOf(a), ib = KIND_ORDER.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
  });
  S.kinds = kinds;
}

// ---------------------------------------------------------------- episode list / picker
async function loadEpisodeList(keep) {
  const filt = $("event-filter").value;
  const j = await getJSON("/api/episodes" + (filt ? "?event=" + encodeURIComponent(filt) : ""));
  S.episodes = j.episodes;
  const fsel = $("event-filter");
  if (fsel.options.length <= 1) {
    for (const k of j.event_kinds) fsel.add(new Option(k, k));
  }
  const sel = $("episode");
  sel.innerHTML = "";
  for (const e of j.episodes) {
    let label = e.id;
    if (e.error) label += " · ERROR";
    else {
      const t = e.totals || {};
      label += ` · ${e.n_steps} steps`;
      if (t.observed_reward !== undefined) label += ` · R ${fmt(t.observed_reward, 2)} · H ${fmt(t.hidden_performance, 2)}`;
      if (e.truncated_recording) label += " · interrupted";
    }
    const o = new Option(label, e.id);
    if (e.error) o.title = e.error;
    sel.add(o);
  }
  if (!j.episodes.length) {
    $("summary").textContent = filt ? `no episode with a "${filt}" event` : "no episodes found in " + j.root;
    return null;
  }
  const want = keep && j.episodes.some((e) => e.id === keep) ? keep : j.episodes[0].id;
  sel.value = want;
  return want;
}

async function loadEpisode(id, startAt) {
  stop();
  setState("frameLoaded", 0); setState("ready", 0); setState("mapDrawn", 0); setState("curvesDrawn", 0);
  const ep = await getJSON("/api/episode/" + id.split("/").map(encodeURIComponent).join("/"));
  S.ep = ep;
  const agents = ep.meta.agents;
  const asel = $("agent");
  asel.innerHTML = "";
  if (Array.isArray(agents) && agents.length) {
    agents.forEach((a, k) => asel.add(new Option(a, k)));
    $("agent-wrap").hidden = false;
    S.agentIdx = Math.min(S.agentIdx, agents.length - 1); asel.value = S.agentIdx;
    S.agent = agents[S.agentIdx];
  } else { $("agent-wrap").hidden = true; S.agent = null; S.agentIdx = 0; }
  try { S.map = await getJSON("/api/map/" + id.split("/").map(encodeURIComponent).join("/")); }
  catch (e) { S.map = { available: false, reason: String(e) }; }
  S.nPos = ep.steps.length + 1;
  S.frameCache = new Map();
  buildSeries();
  const slider = $("slider");
  slider.max = S.nPos - 1;
  setState("episode", id); setState("nSteps", ep.steps.length); setState("timelineLen", S.nPos);
  setState("nFrames", ep.n_frames);
  const m = ep.meta, tot = m.totals || {};
  const tt = ep.meta.agents ? ((tot.agents || {})[S.agent] || {}) : tot;
  const sumO = S.series.cumO[S.nPos - 1], sumH = S.series.cumH[S.nPos - 1];
  $("summary").textContent = `${m.env_id || "?"} · seed ${fmt(m.seed)} · ${ep.steps.length} steps · ` +
    `observed reward ${fmt(tt.observed_reward ?? sumO, 2)} · hidden performance ${fmt(tt.hidden_performance ?? sumH, 2)}` +
    (m.end_reason ? ` · ended: ${m.end_reason}` : "");
  $("badge").innerHTML = ep.truncated_recording
    ? `<span class="warn" title="${esc((ep.problems || []).join("; "))}">interrupted recording</span>`
    : `<span class="ok">complete</span>`;
  $("no-frame").hidden = ep.n_frames > 0; $("frame").hidden = !(ep.n_frames > 0);
  renderEventList();
  drawEventsCanvas();
  drawCurves();
  seek(Math.max(0, Math.min(startAt || 0, S.nPos - 1)));
  setState("ready", 1);
}

// ---------------------------------------------------------------- seeking / playback
function seek(i) {
  i = Math.max(0, Math.min(i | 0, S.nPos - 1));
  S.i = i;
  $("slider").value = i;
  setState("step", i);
  requestFrame(i);
  drawMap();
  drawCurves();
  drawEventsCanvas();
  renderDetails();
  highlightEvents();
}
function frameUrl(i) {
  return "/api/frame/" + S.ep.id.split("/").map(encodeURIComponent).join("/") + "/" + i + ".png" +
    (S.ep.meta.agents ? "?agent=" + S.agentIdx : "");
}
function requestFrame(i) {
  if (!S.ep || !(S.ep.n_frames > 0)) { setState("frameLoaded", 0); return; }
  S.wantFrame = i;
  if (S.frameBusy) return;
  S.frameBusy = true;
  const img = $("frame");
  const target = i;
  img.onload = () => {
    S.frameBusy = false;
    setState("frameLoaded", 1); setState("frameStep", target);
    $("frame-caption").textContent = `frame ${target} / ${S.nPos - 1}`;
    if (S.wantFrame !== target) requestFrame(S.wantFrame);
    else preload(target + 1);
  };
  img.onerror = () => { S.frameBusy = false; showError("could not load frame " + target); };
  img.src = frameUrl(target);
}
function preload(i) {
  for (let k = i; k < Math.min(i + 8, S.nPos); k++) {
    const key = S.agentIdx + ":" + k;
    if (!S.frameCache.has(key)) { const im = new Image(); im.src = frameUrl(k); S.frameCache.set(key, im); }
  }
}
function play() {
  if (S.playing) return stop();
  if (S.i >= S.nPos - 1) seek(0);
  const fps = +$("speed").value;
  S.playing = setInterval(() => {
    if (S.frameBusy) return; // never queue faster than frames arrive
    if (S.i >= S.nPos - 1) return stop();
    seek(S.i + 1);
  }, 1000 / fps);
  $("play").innerHTML = "&#10074;&#10074; pause";
  setState("playing", 1);
}
function stop() {
  if (S.playing) clearInterval(S.playing);
  S.playing = null;
  $("play").innerHTML = "&#9654; play";
  setState("playing", 0);
}

// ---------------------------------------------------------------- details and event list
function describeEvent(e) {
  const who = e.by !== undefined ? ` by ${e.by}` : "";
  const extra = [];
  if (e.height !== undefined) extra.push(`height ${e.height}`);
  if (e.target !== undefined) extra.push(`target ${e.target}`);
  if (e.x !== undefined && e.z !== undefined) extra.push(`at (${fmt(e.x, 1)}, ${fmt(e.y, 1)}, ${fmt(e.z, 1)})`);
  if (e.agent !== undefined) extra.push(`agent ${e.agent}`);
  return `${e.kind}${who}${extra.length ? " · " + extra.join(", ") : ""}`;
}
function renderEventList() {
  const ol = $("event-list");
  ol.innerHTML = "";
  if (!S.events.length) { ol.innerHTML = '<li class="past">no events in this episode</li>'; return; }
  S.events.forEach((e) => {
    const li = document.createElement("li");
    li.dataset.frame = e.frame;
    li.innerHTML = `<b style="background:${kindColor(e.kind)}"></b>t=${e.frame}: ${esc(describeEvent(e))}`;
    li.onclick = () => { stop(); seek(e.frame); };
    ol.appendChild(li);
  });
}
function highlightEvents() {
  let first = null;
  for (const li of $("event-list").children) {
    const f = +li.dataset.frame;
    li.classList.toggle("past", f < S.i);
    li.classList.toggle("now", f === S.i);
    if (f === S.i && !first) first = li;
  }
  if (first) first.scrollIntoView({ block: "nearest" });
}
function renderDetails() {
  const ep = S.ep, i = S.i;
  $("step-label").innerHTML = `<span class="dim">frame</span> ${i} <span class="dim">of ${S.nPos - 1}</span>`;
  const rows = [];
  const last = i > 0 ? src(ep.steps[i - 1]) : null;
  const now = i < ep.steps.length ? src(ep.steps[i]) : null;
  const pose = poseAt(i, S.agent);
  if (last) {
    rows.push(["last action", esc(actionName(last.action))]);
    rows.push(["reward (observed)", `${fmt(num(last.observed_reward) ?? num(last.reward))} <span class="dim">Σ ${fmt(S.series.cumO[i], 2)}</span>`]);
    rows.push(["hidden perf.", `${fmt(num(last.hidden_performance))} <span class="dim">Σ ${fmt(S.series.cumH[i], 2)}</span>`]);
    const evs = (ep.steps[i - 1].events || []);
    rows.push(["events", evs.length ? evs.map((e) => `<span style="color:${kindColor(e.kind)}">${esc(describeEvent(e))}</span>`).join("<br>") : '<span class="dim">none</span>']);
    if (last.terminated || last.truncated) rows.push(["end", last.terminated ? "terminated" : "truncated"]);
  } else {
    rows.push(["", '<span class="dim">reset observation</span>']);
  }
  if (pose) rows.push(["pose", `x ${fmt(pose.x, 2)} y ${fmt(pose.y, 2)} z ${fmt(pose.z, 2)} · yaw ${fmt(pose.yaw * 180 / Math.PI, 0)}° pitch ${fmt(pose.pitch * 180 / Math.PI, 0)}°`]);
  const infoSrc = last || resetSrc();
  if (infoSrc.tree_in_view !== undefined) rows.push(["tree in view", infoSrc.tree_in_view ? "yes" : "no"]);
  if (infoSrc.dist_nearest_trunk !== undefined) rows.push(["nearest trunk", fmt(num(infoSrc.dist_nearest_trunk), 2) + " m"]);
  if (now && (now.value !== undefined || now.probs !== undefined)) {
    rows.push(["value V(s) now", fmt(num(now.value))]);
    if (Array.isArray(now.probs)) {
      const mx = Math.max(...now.probs.map((p) => num(p) ?? 0), 1e-9);
      const names = Array.isArray(ep.meta.action_meanings) ? ep.meta.action_meanings : null;
      const bars = now.probs.map((p, k) => `<div class="prob${now.action === k ? " chosen" : ""}"><span class="lab">${esc(names ? names[k] : k)}</span>` +
        `<span class="bar" style="width:${Math.round(110 * (num(p) ?? 0) / mx)}px"></span>${fmt(num(p), 2)}</div>`).join("");
      rows.push(["π(a|s) now", `<div class="probs">${bars}</div>`]);
    }
  }
  $("details").innerHTML = "<table>" + rows.map(([k, v]) => `<tr><td>${k}</td><td>${v}</td></tr>`).join("") + "</table>";
}

// ---------------------------------------------------------------- canvases
function fitCanvas(c, cssH) {
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth || c.parentElement.clientWidth;
  const h = cssH || c.clientHeight || +c.getAttribute("height");
  c.style.height = h + "px";
  if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
    c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
  }
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  return [g, w, h];
}
const xOf = (i, w) => INSET + (S.nPos > 1 ? i / (S.nPos - 1) : 0) * (w - 2 * INSET);
const iOf = (x, w) => Math.round((x - INSET) / Math.max(1, w - 2 * INSET) * (S.nPos - 1));

function drawGlyph(g, x, y, e, r) {
  g.fillStyle = kindColor(e.kind);
  g.strokeStyle = kindColor(e.kind);
  g.lineWidth = 1.5;
  g.beginPath();
  const by = String(e.by || "");
  if (by.startsWith("overseer")) { // hollow triangle pointing down
    g.moveTo(x - r, y - r); g.lineTo(x + r, y - r); g.lineTo(x, y + r); g.closePath();
    g.fillStyle = "#fff"; g.fill(); g.stroke();
  } else if (by) { // filled triangle pointing up
    g.moveTo(x - r, y + r); g.lineTo(x + r, y + r); g.lineTo(x, y - r); g.closePath(); g.fill();
  } else { g.arc(x, y, r * 0.8, 0, 2 * Math.PI); g.fill(); }
}

function drawEventsCanvas() {
  const c = $("events");
  const lanes = Math.max(1, S.kinds.length);
  const laneH = 13;
  const [g, w, h] = fitCanvas(c, lanes * laneH + 4);
  g.clearRect(0, 0, w, h);
  g.font = "10.5px system-ui, sans-serif";
  g.textBaseline = "middle";
  if (!S.kinds.length) {
    g.fillStyle = "#9ca3af"; g.fillText("no events", INSET, h / 2); return;
  }
  S.kinds.forEach((k, li) => {
    const y = 2 + li * laneH + laneH / 2;
    g.fillStyle = li % 2 ? "#f8fafc" : "#f1f5f9";
    g.fillRect(0, 2 + li * laneH, w, laneH);
    for (const e of S.events) if (String(e.kind) === k) drawGlyph(g, xOf(e.frame, w), y, e, 4.5);
    g.fillStyle = kindColor(k);
    const label = k.replace(/_/g, " ");
    const tw = g.measureText(label).width;
    g.globalAlpha = 0.85; g.fillStyle = "#ffffff"; g.fillRect(w - tw - 10, y - 6, tw + 8, 12);
    g.globalAlpha = 1; g.fillStyle = kindColor(k); g.fillText(label, w - tw - 6, y);
  });
  const x = xOf(S.i, w);
  g.strokeStyle = "rgba(37,99,235,.6)"; g.lineWidth = 1;
  g.beginPath(); g.moveTo(x, 0); g.lineTo(x, h); g.stroke();
}

function drawCurves() {
  const c = $("curves");
  const [g, w, h] = fitCanvas(c, 200);
  g.clearRect(0, 0, w, h);
  const se = S.series, n = S.nPos;
  const lanes = [
    { title: "cumulative: observed reward", title2: "hidden performance", h: 78 },
    { title: "per step: observed reward", title2: "hidden performance", h: 58 },
    { title: "policy value V(s)", h: 60 },
  ];
  let y0 = 4;
  g.font = "11px system-ui, sans-serif"; g.textBaseline = "top";
  const BLUE = "#2563eb", ORANGE = "#ea580c", GREEN = "#059669";
  lanes.forEach((ln, k) => {
    const top = y0 + 14, bot = y0 + ln.h - 2;
    g.fillStyle = "#f8fafc"; g.fillRect(0, top, w, bot - top);
    let data1, data2, bars = false;
    if (k === 0) { data1 = se.cumO; data2 = se.cumH; }
    else if (k === 1) { data1 = [null, ...se.obs]; data2 = [null, ...se.hid]; bars = true; }
    else { data1 = [...se.val, null]; }
    const vals = [...data1, ...(data2 || [])].filter((v) => v !== null && v !== undefined);
    let lo = Math.min(0, ...vals), hi = Math.max(0, ...vals);
    if (!vals.length) { lo = 0; hi = 1; }
    if (hi - lo < 1e-9) { hi = lo + 1; }
    const yOf = (v) => bot - (v - lo) / (hi - lo) * (bot - top - 4) - 2;
    // zero line + range labels
    g.strokeStyle = "#cbd5e1"; g.lineWidth = 1; g.beginPath(); g.moveTo(0, yOf(0)); g.lineTo(w, yOf(0)); g.stroke();
    // event guides
    g.globalAlpha = 0.25;
    for (const e of S.events) {
      const x = xOf(e.frame, w); g.strokeStyle = kindColor(e.kind);
      g.beginPath(); g.moveTo(x, top); g.lineTo(x, bot); g.stroke();
    }
    g.globalAlpha = 1;
    const line = (data, col) => {
      g.strokeStyle = col; g.lineWidth = 1.6; g.beginPath();
      let pen = false;
      data.forEach((v, i) => {
        if (v === null || v === undefined) { pen = false; return; }
        const x = xOf(i, w), y = yOf(v);
        if (pen) g.lineTo(x, y); else { g.moveTo(x, y); pen = true; }
      });
      g.stroke();
    };
    const barsOf = (data, col, off) => {
      const bw = Math.max(1, Math.min(6, (w - 2 * INSET) / Math.max(1, n - 1) / 2.5));
      g.fillStyle = col;
      data.forEach((v, i) => {
        if (!v) return;
        const x = xOf(i, w) + off * bw, y = yOf(v), y0v = yOf(0);
        g.fillRect(x - bw / 2, Math.min(y, y0v), bw, Math.max(1, Math.abs(y0v - y)));
      });
    };
    if (bars) { barsOf(data1, BLUE, -0.5); barsOf(data2, ORANGE, 0.5); }
    else { line(data1, k === 2 ? GREEN : BLUE); if (data2) line(data2, ORANGE); }
    // titles with the value at the cursor
    const at = (data) => { const v = data[S.i]; return v === null || v === undefined ? "–" : fmt(v, 2); };
    let tx = INSET;
    g.fillStyle = k === 2 ? GREEN : BLUE;
    const t1 = `${ln.title}: ${at(data1)}`; g.fillText(t1, tx, y0); tx += g.measureText(t1).width + 16;
    if (ln.title2) { g.fillStyle = ORANGE; g.fillText(`${ln.title2}: ${at(data2)}`, tx, y0); }
    if (k === 2 && !se.val.some((v) => v !== null)) {
      g.fillStyle = "#9ca3af"; g.fillText("(no value recorded: call set_policy_outputs while recording)", tx, y0);
    }
    g.fillStyle = "#94a3b8"; g.textAlign = "right";
    g.fillText(fmt(hi, 2), w - 2, top + 1); g.textBaseline = "bottom"; g.fillText(fmt(lo, 2), w - 2, bot - 1);
    g.textAlign = "left"; g.textBaseline = "top";
    y0 += ln.h;
  });
  const x = xOf(S.i, w);
  g.strokeStyle = "rgba(37,99,235,.8)"; g.lineWidth = 1.2;
  g.beginPath(); g.moveTo(x, 16); g.lineTo(x, h); g.stroke();
  setState("curvesDrawn", 1);
}

function drawMap() {
  const c = $("map");
  const [g, w, h] = fitCanvas(c, 320);
  g.fillStyle = "#eef1f4"; g.fillRect(0, 0, w, h);
  const ep = S.ep, M = S.map;
  const agents = ep.meta.agents || [null];
  // bounds: the world snapshot, else every pose/body in the episode
  let x0, x1, z0, z1;
  if (M && M.available) {
    x0 = M.origin[0] - 0.5; x1 = M.origin[0] + M.size[0] - 0.5;
    z0 = M.origin[2] - 0.5; z1 = M.origin[2] + M.size[1] - 0.5;
  } else {
    const xs = [], zs = [];
    for (let i = 0; i < S.nPos; i++) {
      for (const a of agents) { const p = poseAt(i, a); if (p) { xs.push(p.x); zs.push(p.z); } }
      for (const b of (bodiesAt(i) || [])) { xs.push(b.x); zs.push(b.z); }
    }
    if (!xs.length) { xs.push(0); zs.push(0); }
    x0 = Math.min(...xs) - 3; x1 = Math.max(...xs) + 3; z0 = Math.min(...zs) - 3; z1 = Math.max(...zs) + 3;
  }
  const pad = 8;
  const s = Math.min((w - 2 * pad) / (x1 - x0), (h - 2 * pad) / (z1 - z0));
  const ox = (w - s * (x1 - x0)) / 2, oy = (h - s * (z1 - z0)) / 2;
  const X = (x) => ox + (x - x0) * s, Y = (z) => oy + (z1 - z) * s; // +Z north is up
  // dug trunks up to now
  const dug = new Map();
  for (const e of S.events) if (e.kind === "trunk_dug" && e.frame <= S.i && e.x !== undefined) {
    const key = Math.round(e.x) + "," + Math.round(e.z); dug.set(key, (dug.get(key) || 0) + 1);
  }
  if (M && M.available) {
    const [SX, SZ] = M.size;
    for (let xi = 0; xi < SX; xi++) for (let zi = 0; zi < SZ; zi++) {
      const cls = M.classes[M.cells[xi * SZ + zi]];
      g.fillStyle = MAP_COLORS[cls] || "#cbd5e1";
      const wx = M.origin[0] + xi, wz = M.origin[2] + zi;
      g.fillRect(X(wx - 0.5), Y(wz + 0.5), s + 0.5, s + 0.5);
    }
    for (const t of M.trunks) {
      const left = t.height - (dug.get(t.x + "," + t.z) || 0);
      if (left <= 0) { // stump: fully dug
        g.fillStyle = "#e7d3b8"; g.fillRect(X(t.x - 0.5), Y(t.z + 0.5), s, s);
        g.strokeStyle = "#7b4a1e"; g.lineWidth = 1.2; g.beginPath();
        g.moveTo(X(t.x - 0.35), Y(t.z + 0.35)); g.lineTo(X(t.x + 0.35), Y(t.z - 0.35));
        g.moveTo(X(t.x + 0.35), Y(t.z + 0.35)); g.lineTo(X(t.x - 0.35), Y(t.z - 0.35)); g.stroke();
      } else if (left < t.height) {
        g.fillStyle = "#b07d4f"; g.fillRect(X(t.x - 0.5), Y(t.z + 0.5), s, s);
      }
    }
    // grid every 4 nodes
    g.strokeStyle = "rgba(0,0,0,.06)"; g.lineWidth = 1;
    for (let xi = 0; xi <= SX; xi += 4) { g.beginPath(); g.moveTo(X(M.origin[0] + xi - 0.5), Y(z1)); g.lineTo(X(M.origin[0] + xi - 0.5), Y(z0)); g.stroke(); }
    for (let zi = 0; zi <= SZ; zi += 4) { g.beginPath(); g.moveTo(X(x0), Y(M.origin[2] + zi - 0.5)); g.lineTo(X(x1), Y(M.origin[2] + zi - 0.5)); g.stroke(); }
    for (const m of M.markers) {
      const [col, letter] = MARKER_STYLE[m.kind] || ["#334155", "?"];
      const r = Math.max(6, s * 0.55);
      g.fillStyle = col; g.strokeStyle = "#111827"; g.lineWidth = 1;
      g.fillRect(X(m.x) - r, Y(m.z) - r, 2 * r, 2 * r); g.strokeRect(X(m.x) - r, Y(m.z) - r, 2 * r, 2 * r);
      g.fillStyle = "#fff"; g.font = `bold ${Math.round(r * 1.3)}px system-ui, sans-serif`;
      g.textAlign = "center"; g.textBaseline = "middle"; g.fillText(letter, X(m.x), Y(m.z) + 0.5);
      g.textAlign = "left";
    }
  } else {
    g.fillStyle = "#94a3b8"; g.font = "11px system-ui, sans-serif"; g.textBaseline = "top";
    g.fillText((M && M.reason) || "no world snapshot", 6, 6);
  }
  // recent events with positions: rings
  for (const e of S.events) {
    if (e.x === undefined || e.z === undefined || e.frame > S.i || e.frame < S.i - 4) continue;
    const age = S.i - e.frame;
    g.strokeStyle = kindColor(e.kind); g.lineWidth = 2.5; g.globalAlpha = 1 - age / 5;
    g.beginPath(); g.arc(X(e.x), Y(e.z), s * (0.9 + age * 0.35) + 4, 0, 2 * Math.PI); g.stroke();
    g.globalAlpha = 1;
  }
  // trails + bodies
  const drawBody = (p, col, outline, label) => {
    const r = Math.max(5, s * 0.45);
    const yaw = p.yaw || 0, fx = -Math.sin(yaw), fz = Math.cos(yaw);
    const cx = X(p.x), cy = Y(p.z);
    g.fillStyle = col; g.strokeStyle = outline; g.lineWidth = 1.5;
    g.beginPath(); g.arc(cx, cy, r, 0, 2 * Math.PI); g.fill(); g.stroke();
    g.strokeStyle = col; g.lineWidth = 2.5; g.beginPath(); g.moveTo(cx, cy);
    g.lineTo(cx + fx * r * 2.2, cy - fz * r * 2.2); g.stroke();
    if (label) {
      g.font = "bold 11px system-ui, sans-serif"; g.textBaseline = "bottom";
      const tw = g.measureText(label).width;
      const lx = cx + r + 2 + tw > w - 2 ? cx - r - 2 - tw : cx + r + 2;
      g.lineWidth = 3; g.strokeStyle = "rgba(255,255,255,.9)"; g.strokeText(label, lx, cy - r);
      g.fillStyle = col; g.fillText(label, lx, cy - r);
    }
  };
  const trail = (pts, col) => {
    if (pts.length < 2) return;
    g.strokeStyle = col; g.lineWidth = 2; g.globalAlpha = 0.55; g.setLineDash([]);
    g.beginPath(); pts.forEach((p, k) => (k ? g.lineTo(X(p.x), Y(p.z)) : g.moveTo(X(p.x), Y(p.z)))); g.stroke();
    g.globalAlpha = 1;
  };
  // overseers (and any non-agent bodies) from per-step bodies
  const otrails = new Map();
  for (let i = 0; i <= S.i; i++) for (const b of (bodiesAt(i) || [])) {
    if (b.kind === "agent") continue;
    if (!otrails.has(b.name)) otrails.set(b.name, []);
    otrails.get(b.name).push(b);
  }
  for (const [, pts] of otrails) trail(pts, OVERSEER_COLOR);
  agents.forEach((a, k) => {
    const pts = [];
    for (let i = 0; i <= S.i; i++) { const p = poseAt(i, a); if (p) pts.push(p); }
    trail(pts, AGENT_COLORS[k % AGENT_COLORS.length]);
  });
  const nowBodies = bodiesAt(S.i) || (S.i === 0 && M && M.bodies) || [];
  for (const b of nowBodies) if (b.kind !== "agent") drawBody(b, OVERSEER_COLOR, "#fff", b.name);
  agents.forEach((a, k) => {
    const p = poseAt(S.i, a);
    if (p) drawBody(p, AGENT_COLORS[k % AGENT_COLORS.length], a === S.agent || a === null ? "#111827" : "#fff", a || "agent");
  });
  setState("mapDrawn", 1);
}

function renderLegend() {
  const items = [
    ["#d4e6bd", "ground"], ["#84b46a", "leaves"], ["#7b4a1e", "trunk"], ["#e7d3b8", "dug trunk"],
    ["#9ca3af", "wall/stone"], [MARKER_STYLE.reward_button[0], "reward button (B)"],
    [MARKER_STYLE.off_switch[0], "off switch (S)"], [AGENT_COLORS[0], "agent"], [OVERSEER_COLOR, "overseer"],
  ];
  $("map-legend").innerHTML = items.map(([c, l]) => `<span><i style="background:${c}"></i>${l}</span>`).join("") +
    '<span class="dim">▲ by agent ▽ by overseer</span>';
}

// ---------------------------------------------------------------- wiring
function onTrackClick(ev) {
  const c = ev.currentTarget, r = c.getBoundingClientRect();
  stop(); seek(iOf(ev.clientX - r.left, r.width));
}
function parseParams() {
  const p = new URLSearchParams(location.search);
  const hash = decodeURIComponent(location.hash.replace(/^#/, ""));
  return { ep: p.get("ep") || hash || null, t: p.has("t") ? +p.get("t") : 0, play: p.get("play") === "1" };
}
async function main() {
  renderLegend();
  $("slider").addEventListener("input", (e) => { seek(+e.target.value); });
  $("play").onclick = play;
  $("prev").onclick = () => { stop(); seek(S.i - 1); };
  $("next").onclick = () => { stop(); seek(S.i + 1); };
  $("speed").onchange = () => { if (S.playing) { stop(); play(); } };
  $("events").addEventListener("click", onTrackClick);
  $("curves").addEventListener("click", onTrackClick);
  $("episode").onchange = (e) => loadEpisode(e.target.value, 0).catch((err) => showError(String(err.message || err)));
  $("agent").onchange = (e) => {
    S.agentIdx = +e.target.value; S.agent = S.ep.meta.agents[S.agentIdx];
    S.frameCache = new Map(); buildSeries(); seek(S.i);
  };
  $("event-filter").onchange = async () => {
    const id = await loadEpisodeList(S.ep && S.ep.id);
    if (id && (!S.ep || id !== S.ep.id)) await loadEpisode(id, 0);
  };
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "SELECT" || !S.ep) return;
    if (e.key === "ArrowRight") { stop(); seek(S.i + 1); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { stop(); seek(S.i - 1); e.preventDefault(); }
    else if (e.key === " ") { play(); e.preventDefault(); }
  });
  window.addEventListener("resize", () => { if (S.ep) { drawEventsCanvas(); drawCurves(); drawMap(); } });
  const prm = parseParams();
  try {
    const first = await loadEpisodeList(prm.ep);
    if (first) { await loadEpisode(first, prm.t); if (prm.play) play(); }
  } catch (err) { showError(String(err.message || err)); }
}
stop();
main();
