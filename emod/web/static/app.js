"use strict";
// emod-view's page. A visible tab gets everything over one connection, /live (Server-Sent Events: history, stats,
// timeline, emotions and preview frames); a hidden tab closes it and polls /stats.json once a second (short
// requests, no connection held). A browser's 6 connections per host then serve 6 visible tabs and any number
// of hidden ones (emod/viewer/live.py).
const $ = (id) => document.getElementById(id);
const HISTORY_S = 300;
const COLORS = {angry: "#e5534b", disgust: "#8fbf4d", fear: "#b083f0", happy: "#f0c541", sad: "#5aa9f0",
                surprise: "#f0883e", neutral: "#8a94a3"};
let LABELS = Object.keys(COLORS);  // replaced by the server's order from /api/timeline
let history = [];
let timeline = null;
let latestEmotions = null, emotionsDirty = false;

function fmt(v, digits) { return (v === null || v === undefined) ? "n/a" : Number(v).toFixed(digits); }
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }

function setStatus(text, ok) { const st = $("status"); st.textContent = text; st.className = ok ? "ok" : "bad"; }

function show(s) {
  if (!s.ok) { setStatus(s.error || "no telemetry", false); return; }
  if (s.source_error) setStatus("source error: " + s.source_error, false);
  else setStatus("live", true);
  $("fps").textContent = fmt(s.fps, 1);
  $("watts").textContent = fmt(s.watts, 2);
  $("wunit").hidden = s.watts === null || s.watts === undefined;
  $("lat50").textContent = fmt(s.latency_p50, 0);
  $("lat95").textContent = fmt(s.latency_p95, 0);
  $("inf50").textContent = fmt(s.infer_p50, 1);
  $("inf95").textContent = fmt(s.infer_p95, 1);
  $("model").textContent = s.model || "n/a";
  $("uptime").textContent = s.uptime_s === null || s.uptime_s === undefined ? "n/a" : Math.round(s.uptime_s) + " s";
  $("vfps").textContent = fmt(s.viewer_fps, 1);
  $("source").textContent = s.source === "control" ? "local control socket" : "remote preview header";
  $("updated").textContent = new Date(s.t * 1000).toLocaleTimeString();
}

function canvasCtx(c) {
  const dpr = window.devicePixelRatio || 1, W = c.clientWidth, H = c.clientHeight;
  if (c.width !== W * dpr || c.height !== H * dpr) { c.width = W * dpr; c.height = H * dpr; }
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, W, H);
  g.font = "11px system-ui, sans-serif";
  return [g, W, H];
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 4, 8, 10]) if (m * p >= v) return m * p;  // quarters stay round
  return 10 * p;
}

function timeAxis(g, L, pw, H, now) {
  g.fillStyle = "#8a94a3";
  for (let m = 0; m <= 5; m++) {
    g.textAlign = m === 0 ? "right" : m === 5 ? "left" : "center";
    g.fillText(m === 0 ? "now" : "-" + m + " min", L + pw - pw * m * 60 / HISTORY_S, H - 4);
  }
}

function drawChart() {
  const [g, W, H] = canvasCtx($("chart"));
  const L = 36, R = 44, T = 8, B = 18, pw = W - L - R, ph = H - T - B;
  const now = Date.now() / 1000;
  const pts = history.filter((s) => now - s.t <= HISTORY_S);
  const fpsMax = niceMax(Math.max(1, ...pts.map((s) => s.fps || 0)));
  const msMax = niceMax(Math.max(1, ...pts.map((s) => Math.max(s.latency_p50 || 0, s.infer_p50 || 0))));
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = T + ph * i / 4;
    g.strokeStyle = "#2a313b"; g.beginPath(); g.moveTo(L, y); g.lineTo(L + pw, y); g.stroke();
    g.fillStyle = "#4cc38a"; g.textAlign = "right"; g.fillText(String(+(fpsMax * (1 - i / 4)).toFixed(2)), L - 4, y + 4);
    g.fillStyle = "#f0a441"; g.textAlign = "left"; g.fillText(String(+(msMax * (1 - i / 4)).toFixed(2)), L + pw + 4, y + 4);
  }
  timeAxis(g, L, pw, H, now);
  const x = (t) => L + pw - pw * (now - t) / HISTORY_S;
  function line(key, max, color) {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    let pen = false, prevT = null;
    for (const s of pts) {
      const v = s[key];
      if (v === null || v === undefined || (prevT !== null && s.t - prevT > 5)) pen = false;
      if (v !== null && v !== undefined) {
        const y = T + ph * (1 - Math.min(v, max) / max);
        if (pen) g.lineTo(x(s.t), y); else g.moveTo(x(s.t), y);
        pen = true;
      }
      prevT = s.t;
    }
    g.stroke();
  }
  line("infer_p50", msMax, "#5aa9f0");
  line("latency_p50", msMax, "#f0a441");
  line("fps", fpsMax, "#4cc38a");
}

// --- emotions: per-face readout -------------------------------------------------------------------------
function renderFaces() {
  if (!emotionsDirty) return;
  emotionsDirty = false;
  const box = $("faces"), m = latestEmotions;
  const faces = m ? [...m.faces].sort((a, b) => a.track - b.track) : [];
  $("nfaces").textContent = m ? "(" + faces.length + ")" : "";
  box.replaceChildren();
  if (!faces.length) { box.append(el("p", "dim", m ? "no face in view" : "waiting for emotions")); return; }
  for (const f of faces) {
    const card = el("div", "face"); card.id = "face-" + f.track;
    const head = el("div", "head");
    head.append(el("span", "track", "track " + f.track));
    const lab = el("span", "label", f.label); lab.style.color = COLORS[f.label] || "#e6e9ee";
    head.append(lab, el("span", "conf", Math.round(f.confidence * 100) + " %"), el("span", "track", Math.round(f.age_s) + " s"));
    const bars = el("div", "bars");
    for (const l of LABELS) {
      const p = (f.probs && f.probs[l]) || 0;
      const bar = el("div", "bar"), fill = el("i");
      fill.style.width = (100 * p).toFixed(1) + "%"; fill.style.background = COLORS[l];
      bar.append(fill);
      bars.append(el("span", "", l), bar, el("span", "pct", (100 * p).toFixed(0) + " %"));
    }
    card.append(head, bars);
    box.append(card);
  }
}

// --- emotions: the 5-minute timeline --------------------------------------------------------------------
function drawTimeline() {
  const [g, W, H] = canvasCtx($("timeline"));
  const L = 8, R = 8, T = 4, B = 16, pw = W - L - R, ph = H - T - B;
  const now = Date.now() / 1000;
  g.fillStyle = "#151a20"; g.fillRect(L, T, pw, ph);
  timeAxis(g, L, pw, H, now);
  if (!timeline) return;
  const bw = pw * timeline.bucket_s / HISTORY_S;
  for (const b of timeline.buckets) {
    const total = Object.values(b.face_s).reduce((a, v) => a + v, 0);
    const x = L + pw - pw * (now - b.t) / HISTORY_S;
    if (!(total > 0) || x + bw < L) continue;
    let y = T + ph;
    for (const l of LABELS) {
      const h = ph * (b.face_s[l] || 0) / total;
      if (h <= 0) continue;
      g.fillStyle = COLORS[l]; g.fillRect(Math.max(L, x), y - h, Math.max(1, bw - 1), h);
      y -= h;
    }
  }
}

function showShares() {
  const box = $("shares");
  box.replaceChildren();
  if (!timeline) return;
  const total = Object.values(timeline.face_s).reduce((a, v) => a + v, 0);
  if (!(total > 0)) { box.append(el("span", "dim", "no face-time yet")); return; }
  for (const l of LABELS) {
    const s = el("span", "", "\u25A0 " + l + " " + (100 * timeline.shares[l]).toFixed(0) + " %");
    s.id = "share-" + l; s.style.color = COLORS[l];
    box.append(s);
  }
}

// --- telemetry, emotions and the stream: one /live connection ----------------------------------------------
let live = null, frameUrl = null, statsUpdates = 0, framesShown = 0, poller = null;

function onStats(s) {
  show(s);
  statsUpdates += 1;  // read by tests: every tab updates its telemetry every second
  document.body.dataset.stats = String(statsUpdates);
  document.body.dataset.statsAt = String(Date.now());
  if (s.ok && (!history.length || history[history.length - 1].t !== s.t)) history.push(s);
  const cut = Date.now() / 1000 - HISTORY_S;
  while (history.length && history[0].t < cut) history.shift();
  drawChart();
}

function onTimeline(t) {
  if (t.ok) { timeline = t; LABELS = t.labels; } else timeline = null;
  showShares();
  drawTimeline();
}

function onFrame(b64) {
  const bin = atob(b64), bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const url = URL.createObjectURL(new Blob([bytes], {type: "image/jpeg"}));
  const img = $("stream"), old = frameUrl;
  frameUrl = url;
  img.src = url;
  if (old) setTimeout(() => URL.revokeObjectURL(old), 1000);  // after the new one is drawn
  $("videomsg").hidden = true;
  document.body.dataset.frames = String(++framesShown);  // read by tests, as dataset.stats
}

function json(handler) { return (ev) => { try { handler(JSON.parse(ev.data)); } catch (e) { /* skip a bad event */ } }; }

function startLive() {
  if (live) return;
  const es = live = new EventSource("/live");
  es.addEventListener("history", json((h) => { history = h; drawChart(); }));
  es.addEventListener("stats", json(onStats));
  es.addEventListener("timeline", json(onTimeline));
  es.addEventListener("frame", (ev) => onFrame(ev.data));
  es.addEventListener("video", json((e) => { $("videomsg").textContent = "no video: " + e.error; $("videomsg").hidden = false; }));
  es.onmessage = json((m) => { latestEmotions = m; emotionsDirty = true; });
  es.onerror = async () => {
    if (es.readyState !== EventSource.CLOSED) { setStatus("reconnecting", false); return; }  // the browser retries
    live = null; latestEmotions = null; emotionsDirty = true;
    try {  // refused: say why (a login needed, too many streams, ...)
      const r = await fetch("/stats.json", {cache: "no-store"});
      if (r.status === 401) { location.href = "/login"; return; }
      const s = await r.json();
      setStatus(s.error || "live stream refused", false);
    } catch (e) { setStatus("viewer unreachable", false); }
    if (!document.hidden) setTimeout(startLive, 3000);
  };
}

function stopLive() {
  if (live) { live.close(); live = null; }
}

async function pollStats() {  // a hidden tab: telemetry only, one short request a second
  try {
    const r = await fetch("/stats.json", {cache: "no-store"});
    if (r.status === 401) { location.href = "/login"; return; }
    onStats(await r.json());
  } catch (e) { setStatus("viewer unreachable", false); }
}

function onVisibility() {
  if (document.hidden) {
    stopLive();
    // 500 ms: Chromium wakes a hidden tab's timers on whole seconds only, so a 1000 ms interval that misses one
    // boundary waits for the next (gaps of 2 s seen); at 500 ms it runs on every boundary, once a second
    if (!poller) { poller = setInterval(pollStats, 500); pollStats(); }
  } else {
    if (poller) { clearInterval(poller); poller = null; }
    startLive();
  }
}

window.addEventListener("load", () => {
  if (document.body.dataset.auth === "on") $("logout").hidden = false;
  document.addEventListener("visibilitychange", onVisibility);
  onVisibility();
  setInterval(renderFaces, 250);
  drawChart();
  drawTimeline();
});
window.addEventListener("resize", () => { drawChart(); drawTimeline(); });
