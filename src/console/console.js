// Switchboard operator console: sign-in, live overview and charts (pushed
// over /api/admin/live), paged lists with sortable columns (the live
// presence among them), a connection's detail, and the disconnect / remove /
// unban / publish actions. Every piece of broker data reaches the DOM as
// text, never as HTML.

const KEY_STORAGE = 'switchboard.console.key';
const WINDOW_MS = 5 * 60 * 1000;
const MIN_SPAN_MS = 60 * 1000; // a young broker's charts cover at least a minute
const PAGE_SIZE = 50;
const LIST_REFRESH_MS = 5000;
const RUNTIME_REFRESH_MS = 2000;
const SEARCH_DEBOUNCE_MS = 250;
const LIVE_SILENCE_MS = 5000; // samples come every second; this much silence means a dead feed
const DEFAULT_REASON = 'disconnected by an operator';
const MAX_REASON_BYTES = 123;
const MAX_CHIPS = 24;

const $ = (id) => document.getElementById(id);
const numberFormat = new Intl.NumberFormat();
const rateFormat = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

const state = {
  key: null,
  samples: [],
  activeTab: null,
  refreshTimer: null,
  runtimeTimer: null,
};

// ---------------------------------------------------------------- helpers

/**
 * Builds an element; children are nodes or text (strings become text nodes).
 * `style` is an object applied through the CSSOM: the page's CSP forbids style attributes.
 */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'style') Object.entries(value).forEach(([prop, v]) => node.style.setProperty(prop, v));
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const formatCount = (n) => (Number.isFinite(n) ? numberFormat.format(n) : '–');
const formatRate = (n) => (Number.isFinite(n) ? rateFormat.format(n) : '–');
const plural = (n, word) => `${formatCount(n)} ${word}${n === 1 ? '' : 's'}`;

function formatBytes(n) {
  if (!Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? rateFormat.format(value) : formatCount(value)} ${units[unit]}`;
}

/** What a close code means (RFC 6455 and PROTOCOLS.md's own 4xxx codes). */
const CLOSE_CODES = {
  1000: 'normal', 1001: 'going away', 1002: 'protocol error', 1003: 'unsupported data',
  1007: 'invalid payload', 1008: 'policy', 1009: 'too big', 1011: 'server error', 1013: 'try again later',
};

function formatDuration(totalSeconds) {
  if (!Number.isFinite(totalSeconds) || totalSeconds < 0) return '–';
  const s = Math.floor(totalSeconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, '0');
  if (d > 0) return `${d}d ${pad(h)}h`;
  if (h > 0) return `${h}h ${pad(m)}m`;
  if (m > 0) return `${m}m ${pad(s % 60)}s`;
  return `${s}s`;
}

function formatDate(text) {
  const t = Date.parse(text);
  return Number.isFinite(t) ? dateTimeFormat.format(t) : String(text ?? '–');
}

function byteLength(text) {
  return new TextEncoder().encode(text).length;
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function toast(message, kind = 'ok') {
  const box = $('toasts');
  const item = el('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status', 'data-testid': `toast-${kind}` }, message);
  box.append(item);
  while (box.children.length > 4) box.firstElementChild.remove();
  setTimeout(() => item.remove(), kind === 'error' ? 8000 : 5000);
}

// ---------------------------------------------------------------- HTTP API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Calls the admin API with the key; a 401 on the signed-in key signs out. */
async function api(method, path, body, key = state.key) {
  const headers = { Authorization: `Bearer ${key}` };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'The broker cannot be reached.');
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const detail = data && typeof data.error === 'string' && data.error ? data.error : `HTTP ${response.status}`;
    if (response.status === 401 && state.key && key === state.key) {
      signOut('The admin key was refused. Sign in again.');
    }
    throw new ApiError(response.status, detail);
  }
  return data;
}

function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

const segment = (text) => encodeURIComponent(String(text));

// ---------------------------------------------------------------- sign-in

function showLogin(error) {
  $('app').hidden = true;
  $('login').hidden = false;
  const box = $('login-error');
  box.textContent = error ?? '';
  box.hidden = !error;
  const submit = $('login-submit');
  submit.disabled = false;
  submit.textContent = 'Sign in';
  $('login-key').focus();
}

async function signIn(key) {
  const overview = await api('GET', '/api/admin/overview', undefined, key);
  state.key = key;
  sessionStorage.setItem(KEY_STORAGE, key);
  $('login').hidden = true;
  $('login-key').value = '';
  $('app').hidden = false;
  $('broker-host').textContent = location.host;
  renderStats(overview);
  charts.forEach((chart) => chart.draw());
  live.start();
  activateTab(tabFromHash() ?? state.activeTab ?? 'connections');
  state.refreshTimer = setInterval(refreshVisibleList, LIST_REFRESH_MS);
  loadRuntime();
  state.runtimeTimer = setInterval(loadRuntime, RUNTIME_REFRESH_MS);
  updatePublishForm();
}

function signOut(message) {
  state.key = null;
  sessionStorage.removeItem(KEY_STORAGE);
  live.stop();
  clearInterval(state.refreshTimer);
  state.refreshTimer = null;
  clearInterval(state.runtimeTimer);
  state.runtimeTimer = null;
  state.samples = [];
  charts.forEach((chart) => chart.setData([]));
  for (const list of Object.values(lists)) list.reset();
  if ($('confirm-dialog').open) $('confirm-dialog').close();
  if ($('detail-dialog').open) $('detail-dialog').close();
  showLogin(message);
}

async function onLoginSubmit(event) {
  event.preventDefault();
  const key = $('login-key').value.trim();
  if (!key) {
    showLogin('Enter the admin key.');
    return;
  }
  const submit = $('login-submit');
  submit.disabled = true;
  submit.textContent = 'Signing in…';
  $('login-error').hidden = true;
  try {
    await signIn(key);
  } catch (error) {
    showLogin(error.status === 401 ? 'That key was refused (401). Check admin.api_key.' : error.message);
  }
}

// ---------------------------------------------------------------- overview

function setStat(id, text, value) {
  const node = $(id);
  node.textContent = text;
  if (value !== undefined) node.dataset.value = String(value);
}

function renderStats(o) {
  const c = o.connections ?? {};
  setStat('stat-connections', formatCount(c.total), c.total);
  const parts = Object.entries(c)
    .filter(([name]) => name !== 'total')
    .map(([name, n]) => `${name} ${formatCount(n)}`);
  $('stat-connections-detail').textContent = parts.join(' · ') || '\u00a0';
  setStat('stat-in-rate', formatRate(o.messages_in_per_second), o.messages_in_per_second);
  setStat('stat-out-rate', formatRate(o.messages_out_per_second), o.messages_out_per_second);
  $('stat-in-total').textContent = `${formatCount(o.messages_in_total)} total`;
  $('stat-out-total').textContent = `${formatCount(o.messages_out_total)} total`;
  setStat('stat-chat-rooms', formatCount(o.chat_rooms), o.chat_rooms);
  setStat('stat-rooms', formatCount(o.rooms), o.rooms);
  setStat('stat-services', formatCount(o.services), o.services);
  setStat('stat-sessions', formatCount(o.sessions), o.sessions);
  setStat('stat-published', formatCount(o.published_total), o.published_total);
  setStat('stat-dropped', formatCount(o.dropped_total), o.dropped_total);
  setStat('stat-restarts', formatCount(o.actor_restarts_total), o.actor_restarts_total);
  setStat('stat-uptime', formatDuration(o.uptime_seconds), o.uptime_seconds);
  $('stat-started').textContent = o.started_at ? `since ${formatDate(o.started_at)}` : '\u00a0';
  setStat('stat-version', o.version ? `v${o.version}` : '–', o.version);
  $('stat-dropped').closest('.stat').classList.toggle('alert', o.dropped_total > 0);
  $('stat-restarts').closest('.stat').classList.toggle('alert', o.actor_restarts_total > 0);
  const counts = { connections: c.total, chat: o.chat_rooms, rooms: o.rooms, services: o.services, sessions: o.sessions };
  for (const [tab, n] of Object.entries(counts)) $(`count-${tab}`).textContent = Number.isFinite(n) ? formatCount(n) : '';
}

/** The process, store and closes figures of GET /api/admin/runtime. */
function renderRuntime(r) {
  setStat('stat-rss', formatBytes(r.rss_bytes), r.rss_bytes);
  setStat('stat-cpu', formatRate(r.cpu_seconds), r.cpu_seconds);
  setStat('stat-fds', formatCount(r.open_fds), r.open_fds);
  setStat('stat-store-latency', Number.isFinite(r.store_latency_ms) ? rateFormat.format(r.store_latency_ms) : '–', r.store_latency_ms ?? '');
  renderCloses(r.closes_by_code);
}

async function loadRuntime() {
  try {
    renderRuntime(await api('GET', '/api/admin/runtime'));
  } catch {
    // The live status and the lists already show a broker that cannot be reached.
  }
}

/** The closes by code as horizontal bars, longest first. */
function renderCloses(closes) {
  const box = $('chart-closes');
  const entries = Object.entries(closes ?? {}).filter(([, n]) => Number.isFinite(n) && n > 0);
  const body = JSON.stringify(entries);
  if (box.dataset.body === body) return;
  box.dataset.body = body;
  box.dataset.codes = String(entries.length);
  if (!entries.length) {
    box.replaceChildren(el('p', { class: 'muted' }, 'No connection closed by the server yet.'));
    return;
  }
  entries.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const peak = entries[0][1];
  box.replaceChildren(...entries.map(([code, n]) => {
    const meaning = CLOSE_CODES[code] ?? (code >= 4000 ? 'protocol-specific' : '');
    return el('div', { class: 'bar-row', 'data-testid': 'close-code', 'data-code': code, 'data-count': n },
      el('span', { class: 'bar-label', title: `${code} ${meaning}` }, `${code}${meaning ? ` ${meaning}` : ''}`),
      el('span', { class: 'bar-track' }, el('span', { class: 'bar', style: { display: 'block', width: `${Math.max(1, (n / peak) * 100)}%` } })),
      el('span', { class: 'bar-count' }, formatCount(n)));
  }));
}

// ---------------------------------------------------------------- charts

/**
 * A time-series line chart drawn on a canvas: the span of the samples held,
 * at least MIN_SPAN_MS and at most WINDOW_MS, ending at the newest sample.
 */
class LineChart {
  constructor(canvas, legend, caption, series, { decimals }) {
    this.canvas = canvas;
    this.caption = caption;
    this.series = series;
    this.decimals = decimals;
    this.points = [];
    this.hover = null;
    this.legendValues = series.map((s) => {
      const value = el('span', { class: 'legend-value' });
      legend.append(el('span', { class: 'legend-item' }, el('span', { class: 'swatch', style: { background: `var(${s.color})` } }), s.label, value));
      return value;
    });
    this.legendTime = el('span', { class: 'legend-time' });
    legend.append(this.legendTime);
    new ResizeObserver(() => this.draw()).observe(canvas);
    canvas.addEventListener('mousemove', (event) => this.onHover(event));
    canvas.addEventListener('mouseleave', () => {
      this.hover = null;
      this.draw();
    });
  }

  /** points: [{t: ms, values: [number per series]}], oldest first. */
  setData(points) {
    this.points = points;
    this.canvas.dataset.samples = String(points.length);
    this.draw();
  }

  format(value) {
    return this.decimals ? rateFormat.format(value) : formatCount(Math.round(value));
  }

  layout() {
    const width = this.canvas.clientWidth;
    const height = this.canvas.clientHeight;
    const plot = { left: 44, right: width - 12, top: 8, bottom: height - 22 };
    const end = this.points.length ? this.points[this.points.length - 1].t : Date.now();
    const first = this.points.length ? this.points[0].t : end;
    const span = Math.min(WINDOW_MS, Math.max(MIN_SPAN_MS, end - first));
    return { width, height, plot, start: end - span, end, span };
  }

  onHover(event) {
    if (!this.points.length) return;
    const { plot, start, span } = this.layout();
    const rect = this.canvas.getBoundingClientRect();
    const t = start + ((event.clientX - rect.left - plot.left) / (plot.right - plot.left)) * span;
    let best = 0;
    for (let i = 1; i < this.points.length; i++) {
      if (Math.abs(this.points[i].t - t) < Math.abs(this.points[best].t - t)) best = i;
    }
    this.hover = best;
    this.draw();
  }

  draw() {
    const { canvas } = this;
    const { width, height, plot, start, end, span } = this.layout();
    if (!width || !height) return;
    this.caption.textContent = `last ${Math.round(span / 60000)} min`;
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const css = getComputedStyle(document.documentElement);
    const color = (name) => css.getPropertyValue(name).trim();
    ctx.font = `11px ${css.getPropertyValue('--font-ui')}`;

    const visible = this.points.filter((p) => p.t >= start);
    const peak = Math.max(0, ...visible.flatMap((p) => p.values.filter(Number.isFinite)));
    const { max, step } = niceScale(peak, this.decimals ? 1 : 4);
    const x = (t) => plot.left + ((t - start) / span) * (plot.right - plot.left);
    const y = (v) => plot.bottom - (v / max) * (plot.bottom - plot.top);

    // Grid and axes.
    ctx.strokeStyle = color('--grid');
    ctx.fillStyle = color('--text-muted');
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let v = 0; v <= max + step / 2; v += step) {
      const py = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(plot.left, py);
      ctx.lineTo(plot.right, py);
      ctx.stroke();
      ctx.fillText(step < 1 ? rateFormat.format(v) : formatCount(v), plot.left - 6, py);
    }
    ctx.textBaseline = 'alphabetic';
    const tick = span <= 60000 ? 15000 : span <= 150000 ? 30000 : 60000;
    for (let ago = 0; ago <= span; ago += tick) {
      const label = ago === 0 ? 'now' : ago % 60000 === 0 ? `−${ago / 60000} min` : `−${ago / 1000} s`;
      ctx.textAlign = ago === 0 ? 'right' : ago + tick > span ? 'left' : 'center';
      ctx.fillText(label, x(end - ago), height - 6);
    }

    if (!visible.length) {
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText('Waiting for samples…', (plot.left + plot.right) / 2, (plot.top + plot.bottom) / 2);
      this.renderLegend(null);
      return;
    }

    // Series: an optional filled area, then the line, broken across gaps in the feed.
    this.series.forEach((series, index) => {
      const stroke = color(series.color);
      const runs = [];
      let run = [];
      for (const p of visible) {
        const v = p.values[index];
        if (!Number.isFinite(v) || (run.length && p.t - run[run.length - 1].t > 3000)) {
          if (run.length) runs.push(run);
          run = [];
        }
        if (Number.isFinite(v)) run.push({ t: p.t, v });
      }
      if (run.length) runs.push(run);
      for (const points of runs) {
        if (series.fill) {
          ctx.beginPath();
          ctx.moveTo(x(points[0].t), plot.bottom);
          for (const p of points) ctx.lineTo(x(p.t), y(p.v));
          ctx.lineTo(x(points[points.length - 1].t), plot.bottom);
          ctx.closePath();
          ctx.globalAlpha = 0.12;
          ctx.fillStyle = stroke;
          ctx.fill();
          ctx.globalAlpha = 1;
        }
        ctx.beginPath();
        points.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.v)) : ctx.moveTo(x(p.t), y(p.v))));
        ctx.strokeStyle = stroke;
        ctx.lineWidth = 1.75;
        ctx.lineJoin = 'round';
        ctx.stroke();
      }
    });

    const focus = this.hover !== null && this.points[this.hover] ? this.points[this.hover] : null;
    if (focus && focus.t >= start) {
      const px = Math.round(x(focus.t)) + 0.5;
      ctx.strokeStyle = color('--text-muted');
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(px, plot.top);
      ctx.lineTo(px, plot.bottom);
      ctx.stroke();
      ctx.setLineDash([]);
      this.series.forEach((series, index) => {
        const v = focus.values[index];
        if (!Number.isFinite(v)) return;
        ctx.fillStyle = color(series.color);
        ctx.beginPath();
        ctx.arc(px, y(v), 3, 0, Math.PI * 2);
        ctx.fill();
      });
    }
    this.renderLegend(focus ?? visible[visible.length - 1], Boolean(focus));
  }

  renderLegend(point, hovered = false) {
    this.legendValues.forEach((node, index) => {
      const v = point ? point.values[index] : NaN;
      node.textContent = Number.isFinite(v) ? this.format(v) : '–';
    });
    this.legendTime.textContent = point && hovered ? timeFormat.format(point.t) : '';
  }
}

/** A round axis maximum and step with at most `ticks` steps above zero. */
function niceScale(peak, minimum) {
  const ticks = 4;
  const target = Math.max(peak, minimum) / ticks;
  const magnitude = 10 ** Math.floor(Math.log10(target));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * magnitude).find((s) => s >= target - 1e-9);
  return { step, max: step * ticks };
}

const charts = [
  new LineChart($('chart-connections'), $('legend-connections'), $('span-connections'), [{ label: 'Open', color: '--chart-1', fill: true }], { decimals: false }),
  new LineChart($('chart-messages'), $('legend-messages'), $('span-messages'), [
    { label: 'In', color: '--chart-2', fill: true },
    { label: 'Out', color: '--chart-3', fill: false },
  ], { decimals: true }),
];

function toPoint(sample) {
  return { t: Date.parse(sample.time), sample };
}

function setSamples(samples) {
  state.samples = samples.map(toPoint).filter((p) => Number.isFinite(p.t));
  renderSamples();
}

function addSample(sample) {
  const point = toPoint(sample);
  if (!Number.isFinite(point.t)) return;
  state.samples.push(point);
  const oldest = point.t - WINDOW_MS - 2000;
  while (state.samples.length && state.samples[0].t < oldest) state.samples.shift();
  renderSamples();
}

function renderSamples() {
  const points = state.samples;
  charts[0].setData(points.map((p) => ({ t: p.t, values: [p.sample.connections?.total] })));
  charts[1].setData(points.map((p) => ({ t: p.t, values: [p.sample.messages_in_per_second, p.sample.messages_out_per_second] })));
  if (points.length) renderStats(points[points.length - 1].sample);
}

// ---------------------------------------------------------------- live feed

/** The /api/admin/live WebSocket: key first, then history and one sample a second. */
const live = {
  socket: null,
  stopped: true,
  attempt: 0,
  retryAt: 0,
  retryTimer: null,
  countdown: null,
  silence: null,

  start() {
    this.stopped = false;
    this.attempt = 0;
    this.connect();
  },

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.silence);
    clearInterval(this.countdown);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000, 'signed out');
    this.setStatus('connecting');
  },

  connect() {
    clearTimeout(this.retryTimer);
    clearInterval(this.countdown);
    this.setStatus('connecting');
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let socket;
    try {
      socket = new WebSocket(`${scheme}//${location.host}/api/admin/live`);
    } catch {
      this.retry();
      return;
    }
    this.socket = socket;
    socket.addEventListener('open', () => {
      socket.send(JSON.stringify({ key: state.key }));
      this.watch(socket);
    });
    socket.addEventListener('message', (event) => {
      if (socket !== this.socket) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.watch(socket);
      if (frame.type === 'history') {
        this.attempt = 0;
        this.setStatus('live');
        setSamples(Array.isArray(frame.samples) ? frame.samples : []);
      } else if (frame.type === 'sample') {
        this.setStatus('live');
        addSample(frame);
      }
    });
    socket.addEventListener('close', (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      clearTimeout(this.silence);
      if (this.stopped) return;
      if (event.code === 1008 && /invalid/i.test(event.reason)) {
        signOut('The admin key was refused by the live feed. Sign in again.');
        return;
      }
      this.retry();
    });
  },

  /** Drops a feed that went silent (half-open TCP) and reconnects. */
  watch(socket) {
    clearTimeout(this.silence);
    this.silence = setTimeout(() => {
      if (socket !== this.socket) return;
      this.socket = null;
      socket.close();
      this.retry();
    }, LIVE_SILENCE_MS);
  },

  retry() {
    if (this.stopped) return;
    const delay = Math.min(30000, 1000 * 2 ** this.attempt) * (0.8 + Math.random() * 0.4);
    this.attempt = Math.min(this.attempt + 1, 5);
    this.retryAt = Date.now() + delay;
    this.retryTimer = setTimeout(() => this.connect(), delay);
    const tick = () => this.setStatus('offline', Math.max(1, Math.ceil((this.retryAt - Date.now()) / 1000)));
    tick();
    clearInterval(this.countdown);
    this.countdown = setInterval(tick, 1000);
  },

  setStatus(status, seconds) {
    const node = $('live-status');
    node.dataset.state = status;
    $('live-label').textContent = status === 'live' ? 'Live' : status === 'offline' ? `Offline · retry in ${seconds} s` : 'Connecting…';
    node.title = status === 'live' ? 'Samples arrive every second' : 'The live feed is not connected; figures are stale';
    $('overview').classList.toggle('stale', status !== 'live');
  },
};

// ---------------------------------------------------------------- lists

function protocolBadge(protocol) {
  return el('span', { class: `badge proto-${String(protocol).replace(/[^a-z]/g, '')}` }, protocol);
}

function ageSince(text) {
  const t = Date.parse(text);
  if (!Number.isFinite(t)) return el('span', {}, '–');
  return el('time', { datetime: text, title: formatDate(text), 'data-age': '' }, formatDuration((Date.now() - t) / 1000));
}

/** Brings the "for how long" cells of rows that did not change up to date. */
function refreshAges(root) {
  for (const node of root.querySelectorAll('time[data-age]')) {
    node.textContent = formatDuration((Date.now() - Date.parse(node.getAttribute('datetime'))) / 1000);
  }
}

function mono(text, extra = {}) {
  return el('span', { class: 'mono', title: text, ...extra }, text);
}

/** Members as chips with a remove button each; long lists expand on demand. */
function memberChips(members, expanded, onExpand, onRemove, context) {
  const list = Array.isArray(members) ? members : [];
  if (!list.length) return el('span', { class: 'muted' }, 'nobody');
  const shown = expanded ? list : list.slice(0, MAX_CHIPS);
  const chips = shown.map((member) =>
    el('span', { class: 'chip', 'data-testid': 'member', 'data-member': member },
      el('span', { class: 'chip-label', title: member }, member),
      el('button', {
        type: 'button', class: 'chip-remove', 'data-testid': 'remove-member',
        title: `Remove ${member} from ${context}`, 'aria-label': `Remove ${member} from ${context}`,
        onclick: () => onRemove(member),
      }, '×')));
  if (list.length > shown.length) {
    chips.push(el('button', { type: 'button', class: 'chip chip-more', onclick: onExpand }, `+${formatCount(list.length - shown.length)} more`));
  }
  return el('div', { class: 'chips' }, chips);
}

const LIST_SPECS = {
  connections: {
    path: '/api/admin/connections',
    search: 'Search id, protocol, peer or identity',
    noun: 'connection',
    filter: {
      name: 'protocol',
      label: 'Protocol',
      options: [['', 'All protocols'], ['chat', 'Chat'], ['concierge', 'Concierge'], ['live', 'Live'], ['rooms', 'Rooms'], ['sessions', 'Session list']],
    },
    columns: [
      { label: 'ID', width: '72px', class: 'num', sort: (c) => c.id, cell: (c) => el('button', { type: 'button', class: 'link', 'data-testid': 'connection-detail', title: 'Show this connection', onclick: () => showConnection(c.id) }, formatCount(c.id)) },
      { label: 'Protocol', width: '104px', sort: (c) => c.protocol, cell: (c) => protocolBadge(c.protocol) },
      { label: 'Identity', sort: (c) => c.identity ?? '', cell: (c) => (c.identity == null ? el('span', { class: 'muted' }, 'anonymous') : mono(c.identity, { 'data-testid': 'identity' })) },
      { label: 'Peer', width: '170px', sort: (c) => c.peer ?? '', cell: (c) => mono(c.peer ?? '–') },
      { label: 'Connected for', width: '120px', sort: (c) => -Date.parse(c.connected_since), cell: (c) => ageSince(c.connected_since) },
      { label: 'In', width: '84px', class: 'num', sort: (c) => c.messages_in, cell: (c) => formatCount(c.messages_in) },
      { label: 'Out', width: '84px', class: 'num', sort: (c) => c.messages_out, cell: (c) => formatCount(c.messages_out) },
      { label: 'Queue', width: '72px', class: 'num', sort: (c) => c.queue_depth, cell: (c) => el('span', { class: c.queue_depth > 0 ? 'warn' : '' }, formatCount(c.queue_depth)) },
      { label: '', width: '128px', class: 'actions', cell: (c) => el('button', { type: 'button', class: 'button small danger-ghost', 'data-testid': 'disconnect', onclick: () => disconnect(c) }, 'Disconnect') },
    ],
    rowAttrs: (c) => ({ 'data-testid': 'connection-row', 'data-id': c.id, 'data-identity': c.identity ?? '' }),
  },
  chat: {
    path: '/api/admin/chat/rooms',
    search: 'Search chat rooms',
    noun: 'chat room',
    columns: [
      { label: 'Room', width: '22%', sort: (r) => r.name, cell: (r) => el('strong', {}, r.name) },
      { label: 'Creator', width: '16%', sort: (r) => r.creator, cell: (r) => r.creator },
      { label: 'Users', width: '80px', class: 'num', sort: (r) => r.users?.length ?? 0, cell: (r) => formatCount(r.users?.length ?? 0) },
      { label: 'Members', cell: (r, list) => memberChips(r.users, list.expanded.has(r.name), () => list.expand(r.name), (user) => removeChatUser(r.name, user), r.name) },
    ],
    rowAttrs: (r) => ({ 'data-testid': 'chat-room-row', 'data-room': r.name }),
  },
  rooms: {
    path: '/api/admin/rooms',
    search: 'Search permissioned rooms',
    noun: 'permissioned room',
    columns: [
      { label: 'Name', width: '18%', sort: (r) => r.name, cell: (r) => el('strong', {}, r.name) },
      { label: 'Room ID', width: '300px', sort: (r) => r.room_id, cell: (r) => mono(r.room_id) },
      { label: 'State', width: '84px', sort: (r) => (r.closed ? 1 : 0), cell: (r) => el('span', { class: `badge ${r.closed ? 'badge-closed' : 'badge-open'}` }, r.closed ? 'closed' : 'open') },
      { label: 'Members in the room', sort: (r) => r.members?.length ?? 0, cell: (r, list) => memberChips(r.members, list.expanded.has(r.room_id), () => list.expand(r.room_id), (user) => removeRoomMember(r, user), r.name) },
      { label: '', width: '96px', class: 'actions', cell: (r) => el('button', { type: 'button', class: 'button small', 'data-testid': 'room-bans', onclick: () => showBans(r) }, 'Bans…') },
    ],
    rowAttrs: (r) => ({ 'data-testid': 'room-row', 'data-room-id': r.room_id }),
  },
  services: {
    path: '/api/admin/services',
    search: 'Search services',
    noun: 'service',
    columns: [
      { label: 'Service', width: '26%', sort: (s) => s.name, cell: (s) => el('strong', {}, s.name) },
      { label: 'Nickname', sort: (s) => s.nickname ?? '', cell: (s) => s.nickname ?? '' },
      { label: 'Owner', width: '22%', sort: (s) => s.owner ?? '', cell: (s) => mono(s.owner ?? '–') },
      { label: 'Subscribers', width: '110px', class: 'num', sort: (s) => s.subscribers, cell: (s) => formatCount(s.subscribers) },
    ],
    rowAttrs: (s) => ({ 'data-testid': 'service-row', 'data-service': s.name }),
  },
  sessions: {
    path: '/api/admin/sessions',
    search: 'Search sessions',
    noun: 'session',
    columns: [
      { label: 'Session', sort: (s) => s.session_name, cell: (s) => el('strong', {}, s.session_name) },
      { label: 'ID', width: '22%', sort: (s) => s.session_id, cell: (s) => mono(s.session_id) },
      { label: 'Host', width: '16%', sort: (s) => s.host_username, cell: (s) => s.host_username },
      { label: 'Active', width: '80px', class: 'num', sort: (s) => s.active_users, cell: (s) => formatCount(s.active_users) },
      { label: 'Joined', width: '80px', class: 'num', sort: (s) => s.joined_users, cell: (s) => formatCount(s.joined_users) },
      { label: 'Running for', width: '120px', sort: (s) => -Date.parse(s.session_begin_time), cell: (s) => ageSince(s.session_begin_time) },
    ],
    rowAttrs: (s) => ({ 'data-testid': 'session-row', 'data-session-id': s.session_id }),
  },
  presence: {
    path: '/api/admin/presence',
    search: 'Search users or games',
    noun: 'user online',
    emptyNoun: 'live users online',
    columns: [
      { label: 'User', width: '24%', sort: (u) => u.name, cell: (u) => el('strong', {}, u.name) },
      { label: 'User ID', width: '30%', sort: (u) => u.user_id, cell: (u) => mono(u.user_id) },
      { label: 'Now playing', sort: (u) => u.playing ?? '', cell: (u) => (u.playing == null ? el('span', { class: 'muted' }, '–') : el('span', { 'data-testid': 'playing' }, u.playing)) },
      { label: 'Connections', width: '120px', class: 'num', sort: (u) => u.connections, cell: (u) => formatCount(u.connections) },
    ],
    rowAttrs: (u) => ({ 'data-testid': 'presence-row', 'data-user-id': u.user_id, 'data-connections': u.connections }),
  },
};

/** Orders `items` by a column's sort key, in `dir` (1 or -1); ties keep the server's order. */
function sortItems(items, key, dir) {
  const keyed = items.map((item, index) => ({ item, index, value: key(item) }));
  keyed.sort((a, b) => {
    const x = a.value;
    const y = b.value;
    const order = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
    return order * dir || a.index - b.index;
  });
  return keyed.map((k) => k.item);
}

/** One paged, searchable list in its tab panel. */
class ListView {
  constructor(name, spec) {
    this.name = name;
    this.spec = spec;
    this.panel = $(`panel-${name}`);
    this.expanded = new Set();
    this.seq = 0;
    this.build();
    this.reset();
  }

  reset() {
    this.q = '';
    this.offset = 0;
    this.filterValue = '';
    this.total = null;
    this.lastBody = null;
    this.expanded.clear();
    this.sortColumn = null;
    this.sortDir = 1;
    this.updateSortHeaders();
    this.search.value = '';
    if (this.filter) this.filter.value = '';
    this.tbody.replaceChildren();
    this.pager.textContent = '–';
    this.empty.hidden = true;
    this.error.hidden = true;
    this.prev.disabled = true;
    this.next.disabled = true;
  }

  build() {
    const { name, spec } = this;
    this.search = el('input', {
      type: 'search', class: 'search', id: `search-${name}`, 'data-testid': `search-${name}`,
      placeholder: spec.search, 'aria-label': spec.search, spellcheck: 'false',
    });
    const searchNow = debounce(() => {
      this.q = this.search.value.trim();
      this.offset = 0;
      this.load();
    }, SEARCH_DEBOUNCE_MS);
    this.search.addEventListener('input', searchNow);
    const tools = [el('div', { class: 'search-box' }, this.search)];
    if (spec.filter) {
      this.filter = el('select', { id: `filter-${name}`, 'data-testid': `filter-${name}`, 'aria-label': spec.filter.label },
        spec.filter.options.map(([value, label]) => el('option', { value }, label)));
      this.filter.addEventListener('change', () => {
        this.filterValue = this.filter.value;
        this.offset = 0;
        this.load();
      });
      tools.push(this.filter);
    }
    this.pager = el('span', { class: 'pager-text', id: `pager-${name}`, 'data-testid': `pager-${name}` }, '–');
    this.prev = el('button', { type: 'button', class: 'button small ghost', 'aria-label': 'Previous page', 'data-testid': `prev-${name}`, onclick: () => this.page(-1) }, '‹ Prev');
    this.next = el('button', { type: 'button', class: 'button small ghost', 'aria-label': 'Next page', 'data-testid': `next-${name}`, onclick: () => this.page(1) }, 'Next ›');
    this.refresh = el('button', { type: 'button', class: 'button small', 'data-testid': `refresh-${name}`, onclick: () => this.load() }, 'Refresh');
    tools.push(el('span', { class: 'spacer' }), this.pager, el('span', { class: 'pager-buttons' }, this.prev, this.next), this.refresh);

    this.error = el('p', { class: 'list-error', role: 'alert', 'data-testid': `error-${name}`, hidden: true });
    this.tbody = el('tbody', { 'data-testid': `rows-${name}` });
    const table = el('table', { class: 'grid' },
      el('colgroup', {}, spec.columns.map((c) => el('col', { style: c.width ? { width: c.width } : null }))),
      el('thead', {}, el('tr', {}, spec.columns.map((c, index) => this.header(c, index)))),
      this.tbody);
    this.empty = el('p', { class: 'empty', hidden: true, 'data-testid': `empty-${name}` });
    this.panel.append(el('div', { class: 'toolbar' }, tools), this.error, el('div', { class: 'table-wrap' }, table, this.empty));
  }

  /** A column's header: a sort button when the column sorts. */
  header(column, index) {
    if (!column.sort) return el('th', { class: column.class, scope: 'col' }, column.label);
    const button = el('button', {
      type: 'button', class: 'sort', 'data-testid': `sort-${this.name}`, 'data-column': column.label,
      title: `Sort this page by ${column.label.toLowerCase()}`, onclick: () => this.sortBy(index),
    }, column.label);
    this.sortButtons = this.sortButtons ?? [];
    this.sortButtons[index] = button;
    return el('th', { class: column.class, scope: 'col', 'aria-sort': 'none' }, button);
  }

  /** Sorts the rows shown by column `index`: ascending, then descending on a second click. */
  sortBy(index) {
    this.sortDir = this.sortColumn === index ? -this.sortDir : 1;
    this.sortColumn = index;
    this.updateSortHeaders();
    this.lastBody = null;
    if (this.lastPage) this.render(this.lastPage);
  }

  updateSortHeaders() {
    (this.sortButtons ?? []).forEach((button, index) => {
      if (!button) return;
      const active = index === this.sortColumn;
      const dir = this.sortDir > 0 ? 'asc' : 'desc';
      if (active) button.dataset.dir = dir;
      else delete button.dataset.dir;
      button.parentElement?.setAttribute('aria-sort', active ? (dir === 'asc' ? 'ascending' : 'descending') : 'none');
    });
  }

  page(direction) {
    const offset = this.offset + direction * PAGE_SIZE;
    if (offset < 0 || (this.total !== null && offset >= this.total)) return;
    this.offset = offset;
    this.load();
  }

  expand(key) {
    this.expanded.add(key);
    this.lastBody = null;
    this.load();
  }

  async load() {
    const seq = ++this.seq;
    this.panel.classList.add('loading');
    const params = { q: this.q, offset: this.offset, limit: PAGE_SIZE };
    if (this.spec.filter) params[this.spec.filter.name] = this.filterValue;
    try {
      const page = await api('GET', withQuery(this.spec.path, params));
      if (seq !== this.seq) return;
      this.error.hidden = true;
      // A page past the end (rows went away): step back to the last page.
      if (page.items.length === 0 && page.total > 0 && this.offset > 0) {
        this.offset = Math.max(0, Math.floor((page.total - 1) / PAGE_SIZE) * PAGE_SIZE);
        this.load();
        return;
      }
      this.render(page);
    } catch (error) {
      if (seq !== this.seq || !state.key) return;
      this.error.textContent = `Could not load: ${error.message}`;
      this.error.hidden = false;
    } finally {
      if (seq === this.seq) this.panel.classList.remove('loading');
    }
  }

  render(page) {
    this.lastPage = page;
    this.total = page.total;
    const first = page.items.length ? page.offset + 1 : 0;
    const last = page.offset + page.items.length;
    this.pager.textContent = page.items.length
      ? `${formatCount(first)}–${formatCount(last)} of ${formatCount(page.total)}`
      : `0 of ${formatCount(page.total)}`;
    this.pager.dataset.total = String(page.total);
    this.prev.disabled = page.offset <= 0;
    this.next.disabled = last >= page.total;
    // Unchanged data keeps the DOM as it is: no flicker, no lost hover.
    const body = JSON.stringify(page.items);
    if (body === this.lastBody) {
      refreshAges(this.tbody);
      return;
    }
    this.lastBody = body;
    const column = this.spec.columns[this.sortColumn];
    const items = column?.sort ? sortItems(page.items, column.sort, this.sortDir) : page.items;
    this.tbody.replaceChildren(...items.map((item) =>
      el('tr', this.spec.rowAttrs(item), this.spec.columns.map((c) => el('td', { class: c.class }, c.cell(item, this))))));
    this.empty.hidden = page.items.length > 0;
    this.empty.textContent = this.q ? `No ${this.spec.noun} matches “${this.q}”.` : `No ${this.spec.emptyNoun ?? `${this.spec.noun}s`} right now.`;
  }
}

const lists = Object.fromEntries(Object.entries(LIST_SPECS).map(([name, spec]) => [name, new ListView(name, spec)]));

function refreshVisibleList() {
  const list = lists[state.activeTab];
  if (!list || document.visibilityState !== 'visible' || $('confirm-dialog').open || $('detail-dialog').open) return;
  list.load();
}

// ---------------------------------------------------------------- tabs

const TABS = ['connections', 'chat', 'rooms', 'services', 'sessions', 'presence', 'publish'];

function tabFromHash() {
  const name = location.hash.slice(1);
  return TABS.includes(name) ? name : null;
}

function activateTab(name) {
  state.activeTab = name;
  for (const tab of TABS) {
    const button = $(`tab-${tab}`);
    const selected = tab === name;
    button.setAttribute('aria-selected', String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`panel-${tab}`).hidden = !selected;
  }
  history.replaceState(null, '', `#${name}`);
  if (lists[name]) lists[name].load();
  if (name === 'publish') loadPublishTargets();
}

function onTabKey(event) {
  const index = TABS.indexOf(state.activeTab);
  const step = event.key === 'ArrowRight' ? 1 : event.key === 'ArrowLeft' ? -1 : 0;
  if (!step) return;
  const next = TABS[(index + step + TABS.length) % TABS.length];
  activateTab(next);
  $(`tab-${next}`).focus();
}

// ---------------------------------------------------------------- confirmation dialog

/**
 * Asks for confirmation (and optional inputs), then runs `action(values)`
 * with the dialog still open; a failure is shown in the dialog, success closes it.
 */
function confirmAction({ title, body = [], fields = [], confirmLabel = 'Confirm', danger = false, action }) {
  const dialog = $('confirm-dialog');
  const ok = $('confirm-ok');
  const cancel = $('confirm-cancel');
  const error = $('confirm-error');
  $('confirm-title').textContent = title;
  $('confirm-body').replaceChildren(...body);
  error.hidden = true;
  ok.textContent = confirmLabel;
  ok.className = `button ${danger ? 'danger' : 'primary'}`;
  ok.disabled = false;
  cancel.disabled = false;

  const inputs = fields.map((field) => {
    const id = `confirm-field-${field.name}`;
    if (field.type === 'checkbox') {
      const input = el('input', { type: 'checkbox', id, 'data-testid': `confirm-${field.name}`, checked: field.value ? true : null });
      return { field, input, node: el('label', { class: 'check' }, input, field.label) };
    }
    const input = el('input', { type: 'text', id, 'data-testid': `confirm-${field.name}`, spellcheck: 'false' });
    input.value = field.value ?? '';
    return { field, input, node: el('label', { class: 'field' }, el('span', {}, field.label), input, field.hint ? el('small', { class: 'muted' }, field.hint) : null) };
  });
  $('confirm-fields').replaceChildren(...inputs.map((i) => i.node));

  let busy = false;
  const form = $('confirm-form');
  const cleanup = () => {
    form.removeEventListener('submit', onSubmit);
    cancel.removeEventListener('click', onCancel);
    dialog.removeEventListener('cancel', onEscape);
  };
  const onCancel = () => {
    if (busy) return;
    cleanup();
    dialog.close();
  };
  const onEscape = (event) => {
    event.preventDefault();
    onCancel();
  };
  async function onSubmit(event) {
    event.preventDefault();
    if (busy) return;
    const values = {};
    for (const { field, input } of inputs) {
      const value = field.type === 'checkbox' ? input.checked : input.value.trim();
      if (field.maxBytes && byteLength(value) > field.maxBytes) {
        error.textContent = `${field.label} is at most ${field.maxBytes} bytes (this is ${byteLength(value)}).`;
        error.hidden = false;
        input.focus();
        return;
      }
      values[field.name] = value;
    }
    busy = true;
    ok.disabled = true;
    cancel.disabled = true;
    error.hidden = true;
    try {
      await action(values);
      cleanup();
      dialog.close();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    } finally {
      busy = false;
      ok.disabled = false;
      cancel.disabled = false;
    }
  }
  form.addEventListener('submit', onSubmit);
  cancel.addEventListener('click', onCancel);
  dialog.addEventListener('cancel', onEscape);
  dialog.showModal();
  (inputs[0]?.input ?? ok).focus();
}

// ---------------------------------------------------------------- actions

function describe(...lines) {
  return lines.filter(Boolean).map((line) => el('p', {}, line));
}

function disconnect(connection) {
  const who = connection.identity ?? 'an anonymous client';
  confirmAction({
    title: `Disconnect connection #${connection.id}?`,
    body: describe(
      el('span', {}, protocolBadge(connection.protocol), ' ', el('strong', {}, who), ` from ${connection.peer ?? 'an unknown peer'}`),
      'The client gets a close frame with code 1008 and the reason below.'),
    fields: [{ name: 'reason', label: 'Reason', value: DEFAULT_REASON, maxBytes: MAX_REASON_BYTES, hint: 'Sent to the client in the close frame (at most 123 bytes).' }],
    confirmLabel: 'Disconnect',
    danger: true,
    action: async ({ reason }) => {
      await api('POST', `/api/admin/connections/${segment(connection.id)}/disconnect`, { reason: reason || DEFAULT_REASON });
      toast(`Disconnected #${connection.id} (${who}).`);
      lists.connections.load();
    },
  });
}

function removeChatUser(room, username) {
  confirmAction({
    title: `Remove ${username} from ${room}?`,
    body: describe(`Their chat connection is closed (1008, “removed from room ${room} by an operator”) and the room sees them leave.`),
    confirmLabel: 'Remove',
    danger: true,
    action: async () => {
      await api('DELETE', `/api/admin/chat/rooms/${segment(room)}/members/${segment(username)}`);
      toast(`Removed ${username} from ${room}.`);
      lists.chat.load();
    },
  });
}

function removeRoomMember(room, userId) {
  confirmAction({
    title: `Remove ${userId} from ${room.name}?`,
    body: describe('Works like a kick by the room’s admin: the user gets the message below and the room sees them exit.'),
    fields: [
      { name: 'message', label: 'Message to the user', value: 'Removed by an operator' },
      { name: 'permanent', label: 'Ban: they cannot enter this room again', type: 'checkbox', value: false },
    ],
    confirmLabel: 'Remove',
    danger: true,
    action: async ({ message, permanent }) => {
      await api('DELETE', `/api/admin/rooms/${segment(room.room_id)}/members/${segment(userId)}`, { message, permanent });
      toast(`Removed ${userId} from ${room.name}${permanent ? ' (banned)' : ''}.`);
      lists.rooms.load();
    },
  });
}

// ---------------------------------------------------------------- detail views

/** Opens the detail dialog (or replaces what it shows). */
function showDetail(title, body, actions = []) {
  $('detail-title').textContent = title;
  $('detail-body').replaceChildren(...body);
  $('detail-actions').replaceChildren(...actions);
  const dialog = $('detail-dialog');
  if (!dialog.open) dialog.showModal();
  $('detail-close').focus();
}

function facts(rows) {
  return el('dl', { class: 'facts' }, rows.flatMap(([label, value, testid]) => [
    el('dt', {}, label),
    value instanceof Node && value.tagName === 'DD' ? value : el('dd', { 'data-testid': testid }, value),
  ]));
}

const notSent = () => el('span', { class: 'muted' }, 'not sent');

/** One connection, as the registry knows it, with a close button. */
async function showConnection(id) {
  let c;
  try {
    c = await api('GET', `/api/admin/connections/${segment(id)}`);
  } catch (error) {
    toast(`Connection #${id}: ${error.message}`, 'error');
    lists.connections.load();
    return;
  }
  const joined = el('dd', { 'data-testid': 'detail-joined' }, el('span', { class: 'muted' }, 'looking…'));
  const close = el('button', {
    type: 'button', class: 'button danger', 'data-testid': 'detail-disconnect',
    onclick: () => {
      $('detail-dialog').close();
      disconnect(c);
    },
  }, 'Close connection…');
  showDetail(`Connection #${c.id}`, [facts([
    ['Protocol', protocolBadge(c.protocol), 'detail-protocol'],
    ['Identity', c.identity ?? el('span', { class: 'muted' }, 'anonymous'), 'detail-identity'],
    ['Peer', mono(c.peer ?? '–'), 'detail-peer'],
    ['Connected since', `${formatDate(c.connected_since)} (${formatDuration((Date.now() - Date.parse(c.connected_since)) / 1000)} ago)`, 'detail-since'],
    ['Messages in / out', `${formatCount(c.messages_in)} / ${formatCount(c.messages_out)}`, 'detail-messages'],
    ['Queue depth', formatCount(c.queue_depth), 'detail-queue'],
    ['Rooms / services', joined],
    ['Origin', c.origin ?? notSent(), 'detail-origin'],
    ['User agent', c.user_agent ?? notSent(), 'detail-user-agent'],
    ['Bytes in / out', `${formatBytes(c.bytes_in)} / ${formatBytes(c.bytes_out)}`, 'detail-bytes'],
  ])], [close]);
  joined.replaceChildren(await joinedBy(c));
}

/** The rooms or services of a connection's user, looked up in the lists by its identity. */
async function joinedBy(c) {
  const none = (text) => el('span', { class: 'muted' }, text);
  if (c.identity == null) return none('none known (no identity yet)');
  const lookups = {
    chat: ['/api/admin/chat/rooms', (r) => (r.users ?? []).includes(c.identity), (r) => r.name],
    rooms: ['/api/admin/rooms', (r) => (r.members ?? []).includes(c.identity), (r) => r.name],
    concierge: ['/api/admin/services', (s) => s.owner === c.identity, (s) => `${s.name} (owner)`],
  };
  const lookup = lookups[c.protocol];
  if (!lookup) return none(`not tracked for ${c.protocol} connections`);
  const [path, has, name] = lookup;
  try {
    const page = await api('GET', withQuery(path, { q: c.identity, limit: 500 }));
    const names = page.items.filter(has).map(name);
    return names.length ? names.join(', ') : none('none');
  } catch (error) {
    return none(`could not look up: ${error.message}`);
  }
}

/** A permissioned room's bans, each with a button that lifts it. */
async function showBans(room) {
  const list = el('ul', { class: 'ban-list', 'data-testid': 'ban-list' }, el('li', { class: 'muted' }, 'Loading…'));
  showDetail(`Bans in ${room.name}`, [
    el('p', {}, 'Users an operator or an admin kicked out permanently. Lifting a ban deletes it from the store; the user may enter again (a closed room needs a new invite).'),
    list,
  ]);
  await loadBans(room, list);
}

async function loadBans(room, list) {
  try {
    const { banned } = await api('GET', `/api/admin/rooms/${segment(room.room_id)}/bans`);
    list.replaceChildren(...(banned.length
      ? banned.map((user) => el('li', { 'data-testid': 'ban', 'data-user': user }, mono(user),
        el('button', { type: 'button', class: 'button small', 'data-testid': 'lift-ban', onclick: (event) => liftBan(room, user, list, event.currentTarget) }, 'Lift ban')))
      : [el('li', { class: 'muted', 'data-testid': 'no-bans' }, 'Nobody is banned from this room.')]));
  } catch (error) {
    list.replaceChildren(el('li', { class: 'form-error', role: 'alert' }, `Could not load the bans: ${error.message}`));
  }
}

async function liftBan(room, user, list, button) {
  button.disabled = true;
  try {
    await api('DELETE', `/api/admin/rooms/${segment(room.room_id)}/bans/${segment(user)}`);
    toast(`Lifted the ban of ${user} in ${room.name}.`);
  } catch (error) {
    toast(`Could not lift the ban: ${error.message}`, 'error');
  }
  await loadBans(room, list);
}

// ---------------------------------------------------------------- publish

const PUBLISH = {
  chat: { target: 'Room name', placeholder: 'Global', message: 'Message', hint: 'Every member of the room receives a system event with this text and severity. Not stored in the history.', noun: 'chat room' },
  concierge: { target: 'Service name', placeholder: 'weather', message: 'Data', hint: 'Sent to every subscriber as a MESSAGE from @server. Valid JSON is sent as JSON; anything else as a JSON string.', noun: 'service' },
  rooms: { target: 'Room ID', placeholder: '00000000-0000-0000-0000-000000000000', message: 'Message', hint: 'Every member who entered the room receives it as a message from @server.', noun: 'permissioned room' },
};

function updatePublishForm() {
  const protocol = $('publish-protocol').value;
  const spec = PUBLISH[protocol];
  $('publish-target-label').textContent = spec.target;
  $('publish-target').placeholder = spec.placeholder;
  $('publish-message-label').textContent = spec.message;
  $('publish-hint').textContent = spec.hint;
  $('publish-severity-field').classList.toggle('invisible', protocol !== 'chat');
  $('publish-severity').disabled = protocol !== 'chat';
}

/** Fills the target suggestions from the current rooms and services. */
async function loadPublishTargets() {
  const protocol = $('publish-protocol').value;
  const source = { chat: '/api/admin/chat/rooms', concierge: '/api/admin/services', rooms: '/api/admin/rooms' }[protocol];
  try {
    const page = await api('GET', withQuery(source, { limit: 500 }));
    if ($('publish-protocol').value !== protocol) return;
    const options = page.items.map((item) =>
      protocol === 'rooms' ? el('option', { value: item.room_id }, item.name) : el('option', { value: item.name }, item.nickname ?? ''));
    $('publish-targets').replaceChildren(...options);
  } catch {
    $('publish-targets').replaceChildren();
  }
}

function setPublishResult(text, kind, recipients) {
  const node = $('publish-result');
  node.textContent = text;
  node.className = `result result-${kind}`;
  if (recipients === undefined) delete node.dataset.recipients;
  else node.dataset.recipients = String(recipients);
}

function onPublishSubmit(event) {
  event.preventDefault();
  const protocol = $('publish-protocol').value;
  const spec = PUBLISH[protocol];
  const target = $('publish-target').value.trim();
  const text = $('publish-message').value;
  if (!target) {
    setPublishResult(`Enter the ${spec.target.toLowerCase()}.`, 'error');
    $('publish-target').focus();
    return;
  }
  if (!text.trim()) {
    setPublishResult(`Enter the ${spec.message.toLowerCase()}.`, 'error');
    $('publish-message').focus();
    return;
  }
  const body = { protocol, target, data: text };
  let how = '';
  if (protocol === 'chat') {
    body.severity = $('publish-severity').value;
    how = `as a “${body.severity}” system message`;
  } else if (protocol === 'concierge') {
    try {
      body.data = JSON.parse(text);
      how = 'as JSON';
    } catch {
      how = 'as a JSON string';
    }
  }
  confirmAction({
    title: `Publish to ${spec.noun} ${target}?`,
    body: [
      el('p', {}, `Every member receives this ${how || 'message'}:`),
      el('pre', { class: 'preview' }, protocol === 'concierge' && how === 'as JSON' ? JSON.stringify(body.data, null, 2) : text),
    ],
    confirmLabel: 'Publish',
    action: async () => {
      try {
        const result = await api('POST', '/api/publish', body);
        setPublishResult(`Delivered to ${plural(result.recipients, 'recipient')} in ${spec.noun} ${result.target}.`, 'ok', result.recipients);
      } catch (error) {
        setPublishResult(error.status ? `Refused (${error.status}): ${error.message}` : error.message, 'error');
      }
    },
  });
}

// ---------------------------------------------------------------- start

function init() {
  $('login-form').addEventListener('submit', onLoginSubmit);
  $('sign-out').addEventListener('click', () => signOut());
  $('detail-close').addEventListener('click', () => $('detail-dialog').close());
  $('tabs').addEventListener('click', (event) => {
    const tab = event.target.closest('[data-tab]');
    if (tab) activateTab(tab.dataset.tab);
  });
  $('tabs').addEventListener('keydown', onTabKey);
  $('publish-form').addEventListener('submit', onPublishSubmit);
  $('publish-protocol').addEventListener('change', () => {
    updatePublishForm();
    loadPublishTargets();
  });
  document.addEventListener('visibilitychange', refreshVisibleList);
  updatePublishForm();

  const stored = sessionStorage.getItem(KEY_STORAGE);
  if (!stored) {
    showLogin();
    return;
  }
  $('login').hidden = false;
  $('login-submit').disabled = true;
  $('login-submit').textContent = 'Signing in…';
  signIn(stored).catch((error) => {
    sessionStorage.removeItem(KEY_STORAGE);
    showLogin(error.status === 401 ? 'The saved key was refused. Sign in again.' : error.message);
  });
}

init();
