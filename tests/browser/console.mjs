// The operator console end to end in headless Chromium (issue 9), against a
// running broker: sign in (a wrong key first), watch the connection count
// rise as real clients connect, publish into a chat room through the form
// and its confirmation, disconnect a client from the Connections list,
// remove a user from the chat room on the Chat rooms tab, see a live user
// and its game on the Live presence tab, open a connection's detail and
// close it from there, sort a column, ban a user from a permissioned room
// and lift the ban, check the process figures and the closes-by-code chart,
// and save a screenshot. Exits 0 on success, 1 with the reason on any failure.
//
// Environment: SWITCHBOARD_URL (http://127.0.0.1:PORT), SWITCHBOARD_ADMIN_KEY,
// SCREENSHOT (PNG path), SWITCHBOARD_TOKENS (JSON: {live, owner, guest}, each
// {id, name, token}, JWTs the broker accepts). Run by tests/console_browser.rs.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { chromium } from 'playwright-core';
import WebSocket from 'ws';

const TOTAL_TIMEOUT_MS = 150_000;
const STEP_TIMEOUT_MS = 15_000;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const baseUrl = requireEnv('SWITCHBOARD_URL').replace(/\/+$/, '');
const adminKey = requireEnv('SWITCHBOARD_ADMIN_KEY');
const screenshotPath = path.resolve(requireEnv('SCREENSHOT'));
const tokens = JSON.parse(requireEnv('SWITCHBOARD_TOKENS'));
const wsBase = baseUrl.replace(/^http/, 'ws');

// Unique names, so the script also runs against a broker that is in use.
const tag = Math.random().toString(36).slice(2, 7);
const room = `console-${tag}`;
const chatNames = [1, 2, 3, 4].map((n) => `probe-${tag}-${n}`);
const published = `Maintenance at 22:00 UTC (${tag})`;
const reason = `console test ${tag}: please reconnect later`;
const game = `Chess ${tag}`;
const bansRoom = `bans-${tag}`;

const clients = [];
let context = null;
let profileDir = null;

function requireEnv(name) {
  const value = process.env[name];
  if (!value) fail(`${name} is not set`);
  return value;
}

function log(message) {
  console.log(`[console.mjs] ${message}`);
}

function fail(message) {
  console.error(`[console.mjs] FAILED: ${message}`);
  process.exit(1);
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A real WebSocket client that queues what it receives. */
class Client {
  constructor(name, url) {
    this.name = name;
    this.frames = [];
    this.waiters = [];
    this.socket = new WebSocket(url);
    this.socket.on('message', (data) => {
      this.frames.push(data.toString());
      this.waiters.splice(0).forEach((wake) => wake());
    });
    this.closed = new Promise((resolve) => {
      this.socket.on('close', (code, why) => {
        resolve({ code, reason: why.toString() });
        this.waiters.splice(0).forEach((wake) => wake());
      });
    });
    this.socket.on('error', (error) => log(`${name}: socket error: ${error.message}`));
    clients.push(this);
  }

  opened() {
    return withTimeout(new Promise((resolve, reject) => {
      this.socket.once('open', resolve);
      this.socket.once('error', reject);
    }), STEP_TIMEOUT_MS, `${this.name} connecting`);
  }

  send(value) {
    this.socket.send(typeof value === 'string' ? value : JSON.stringify(value));
  }

  /** The next frame, as text. */
  async next(what = 'a frame') {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    while (!this.frames.length) {
      if (this.socket.readyState === WebSocket.CLOSED) throw new Error(`${this.name} closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name}: no ${what} within ${STEP_TIMEOUT_MS} ms`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.frames.shift();
  }

  async nextJson(what) {
    const text = await this.next(what);
    try {
      return JSON.parse(text);
    } catch {
      throw new Error(`${this.name}: expected JSON for ${what}, got ${text}`);
    }
  }

  /** Skips frames until one matches `predicate`. */
  async until(predicate, what) {
    for (;;) {
      const frame = await this.nextJson(what);
      if (predicate(frame)) return frame;
    }
  }

  close() {
    if (this.socket.readyState === WebSocket.OPEN || this.socket.readyState === WebSocket.CONNECTING) {
      this.socket.terminate();
    }
  }
}

/** Joins `room` as `username` over the chat protocol (PROTOCOLS.md §2). */
async function joinChat(username) {
  const client = new Client(username, `${wsBase}/chat/ws/${encodeURIComponent(room)}`);
  await client.opened();
  client.send({ event_type: 'connection_request', username });
  const response = await client.nextJson('connection_response');
  assert.equal(response.event_type, 'connection_response', `${username}: ${JSON.stringify(response)}`);
  assert.equal(response.username, username);
  await client.until((f) => f.event_type === 'user_join' && f.username === username, 'its own user_join');
  return client;
}

/** A session-list watcher (PROTOCOLS.md §3): the first frame is `reset`. */
async function watchSessions() {
  const client = new Client('session watcher', `${wsBase}/sessions`);
  await client.opened();
  const first = await client.next('reset');
  assert.match(first, /^reset\n/, `session watcher: ${JSON.stringify(first)}`);
  return client;
}

/** Lists a session through the host API, so the Sessions tab has a row. */
async function listSession() {
  const id = `session-${tag}`;
  const response = await fetch(`${baseUrl}/api/sessions/${id}`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${adminKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({
      session_name: `Friday raid ${tag}`,
      active_users: 3,
      joined_users: 5,
      host_username: 'hostess',
      host_registration_date: '2020-05-06T07:08:09Z',
      host_is_patron: true,
      host_is_mentor: false,
      session_begin_time: new Date(Date.now() - 25 * 60_000).toISOString().replace(/\.\d+Z$/, 'Z'),
      users: [],
    }),
  });
  assert.ok(response.ok, `PUT /api/sessions/${id} answered ${response.status}: ${await response.text()}`);
}

/** A live-presence user (PROTOCOLS.md §4), online once it answered a ping. */
async function goLive({ name, token }) {
  const client = new Client(`live ${name}`, `${wsBase}/live?token=${encodeURIComponent(token)}`);
  await client.opened();
  client.send({ type: 'ping' });
  const pong = await client.nextJson('pong');
  assert.equal(pong.type, 'pong', JSON.stringify(pong));
  return client;
}

/** A permissioned-rooms user (PROTOCOLS.md §5) and its session key. */
async function roomsUser({ name, token }) {
  const client = new Client(`rooms ${name}`, `${wsBase}/rooms?token=${encodeURIComponent(token)}`);
  await client.opened();
  const session = await client.nextJson('session');
  assert.equal(session.type, 'session', JSON.stringify(session));
  client.key = session.key;
  client.command = (command) => client.send({ ...command, key: session.key });
  return client;
}

/** The ids of the connection rows, top to bottom. */
function shownIds(page) {
  return page.$$eval('[data-testid="connection-row"]', (rows) => rows.map((row) => Number(row.dataset.id)));
}

/** The connection total the console shows (the card's raw value). */
async function shownTotal(page) {
  const value = await page.getByTestId('stat-connections').getAttribute('data-value');
  return value === null ? NaN : Number(value);
}

async function waitForTotal(page, want, what) {
  await page.waitForFunction(
    (n) => document.querySelector('[data-testid="stat-connections"]')?.dataset.value === String(n),
    want,
    { timeout: STEP_TIMEOUT_MS },
  ).catch(async () => {
    throw new Error(`the console shows ${await shownTotal(page)} connections, expected ${want} (${what})`);
  });
}

async function main() {
  profileDir = mkdtempSync(path.join(tmpdir(), 'switchboard-console-'));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1366, height: 900 },
    deviceScaleFactor: 1,
    colorScheme: 'light',
    timeout: STEP_TIMEOUT_MS * 2,
  });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const page = context.pages()[0] ?? (await context.newPage());

  // Any script error or CSP refusal on the page fails the test; the 401 of
  // the deliberately wrong key below is the only failed request expected.
  const pageErrors = [];
  let wrongKeyPhase = false;
  page.on('pageerror', (error) => pageErrors.push(`uncaught: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = message.text();
    if (/status of 401/.test(text) && wrongKeyPhase) return;
    pageErrors.push(`console: ${text}`);
  });
  const checkPage = () => assert.deepEqual(pageErrors, [], 'the page logged errors');

  log(`opening ${baseUrl}/console`);
  const response = await page.goto(`${baseUrl}/console`, { waitUntil: 'load' });
  assert.equal(response?.status(), 200, '/console did not answer 200');

  // A wrong key is refused with a visible error, and the app stays hidden.
  wrongKeyPhase = true;
  await page.getByTestId('login-key').fill(`${adminKey}-wrong`);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('login-error').waitFor({ state: 'visible' });
  assert.match(await page.getByTestId('login-error').textContent(), /refused|401/i);
  assert.equal(await page.getByTestId('app').isVisible(), false, 'the app showed with a wrong key');
  wrongKeyPhase = false;

  log('signing in');
  await page.getByTestId('login-key').fill(adminKey);
  await page.getByTestId('login-submit').click();
  const loginError = page.getByTestId('login-error');
  await Promise.race([page.getByTestId('app').waitFor(), loginError.waitFor()]);
  if (await loginError.isVisible()) throw new Error(`the console refused SWITCHBOARD_ADMIN_KEY: ${await loginError.textContent()}`);
  await page.waitForSelector('[data-testid="live-status"][data-state="live"]', { timeout: STEP_TIMEOUT_MS });
  // Wait for a pushed sample, so the baseline is the live figure.
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="chart-connections"]').dataset.samples) >= 1);
  const baseline = await shownTotal(page);
  assert.ok(Number.isInteger(baseline), `no connection count on the page (${baseline})`);
  log(`console shows ${baseline} connections`);

  // Real clients: four chat users in one room and a session-list watcher.
  const chat = [];
  for (const name of chatNames) chat.push(await joinChat(name));
  const watcher = await watchSessions();
  await listSession();
  const added = chat.length + 1;
  await waitForTotal(page, baseline + added, `after ${added} clients connected`);
  log(`console shows ${baseline + added} connections after ${added} clients connected`);

  // The chat tab lists the room with its four users.
  await page.getByTestId('tab-chat').click();
  const roomRow = page.locator(`[data-testid="chat-room-row"][data-room="${room}"]`);
  await page.getByTestId('search-chat').fill(room);
  await roomRow.waitFor();
  await page.waitForFunction((r) => document.querySelectorAll(
    `[data-testid="chat-room-row"][data-room="${r}"] [data-testid="member"]`).length === 4, room);

  // Publish into the room through the form and its confirmation dialog.
  const [first] = chat;
  await first.until((f) => f.event_type === 'user_join' && f.username === chatNames[3], `${chatNames[3]}'s user_join`);
  first.frames.length = 0;
  await page.getByTestId('tab-publish').click();
  await page.getByTestId('publish-protocol').selectOption('chat');
  await page.getByTestId('publish-target').fill(room);
  await page.getByTestId('publish-severity').selectOption('info');
  await page.getByTestId('publish-message').fill(published);
  await page.getByTestId('publish-submit').click();
  const dialog = page.getByTestId('confirm-dialog');
  await dialog.waitFor({ state: 'visible' });
  assert.match(await page.getByTestId('confirm-title').textContent(), new RegExp(room));
  assert.equal(first.frames.length, 0, 'a frame arrived before the publish was confirmed');
  await page.getByTestId('confirm-ok').click();
  await dialog.waitFor({ state: 'hidden' });
  const result = page.getByTestId('publish-result');
  await page.waitForFunction(() => document.querySelector('[data-testid="publish-result"]').textContent !== '');
  assert.equal(await result.getAttribute('data-recipients'), '4', `publish result: ${await result.textContent()}`);
  const system = await first.nextJson('the published system event');
  assert.deepEqual(system, { event_type: 'system', severity: 'info', message: published });
  for (const other of chat.slice(1)) {
    const frame = await other.until((f) => f.event_type === 'system', 'the published system event');
    assert.deepEqual(frame, { event_type: 'system', severity: 'info', message: published }, other.name);
  }
  log(`published into ${room}: ${await result.textContent()}`);

  // Disconnect the third chat user from the Connections list, with a reason.
  const victim = chat[2];
  await page.getByTestId('tab-connections').click();
  await page.getByTestId('search-connections').fill(victim.name);
  const rows = page.locator('[data-testid="connection-row"]');
  await page.waitForFunction((name) => {
    const found = [...document.querySelectorAll('[data-testid="connection-row"]')];
    return found.length === 1 && found[0].dataset.identity === name;
  }, victim.name).catch(async () => {
    throw new Error(`searching for ${victim.name} did not show exactly its row (rows: ${await rows.count()})`);
  });
  await rows.first().getByTestId('disconnect').click();
  await dialog.waitFor({ state: 'visible' });
  const reasonInput = page.getByTestId('confirm-reason');
  assert.equal(await reasonInput.inputValue(), 'disconnected by an operator', 'the default reason');
  await reasonInput.fill(reason);
  await page.getByTestId('confirm-ok').click();
  await dialog.waitFor({ state: 'hidden' });
  const close = await withTimeout(victim.closed, STEP_TIMEOUT_MS, `${victim.name}'s close frame`);
  assert.deepEqual(close, { code: 1008, reason }, `${victim.name}'s close frame`);
  await waitForTotal(page, baseline + added - 1, 'after the disconnect');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="connection-row"]').length === 0);
  log(`${victim.name} got close 1008 "${reason}"`);

  // Remove the fourth chat user from the room through its chip on the Chat
  // rooms tab: it is closed with 1008 naming the room, the room sees it leave.
  const removed = chat[3];
  await page.getByTestId('tab-chat').click();
  await page.getByTestId('search-chat').fill(room);
  const chip = page.locator(`[data-testid="chat-room-row"][data-room="${room}"] [data-testid="member"][data-member="${removed.name}"]`);
  await chip.waitFor();
  first.frames.length = 0;
  await chip.getByTestId('remove-member').click();
  await dialog.waitFor({ state: 'visible' });
  assert.match(await page.getByTestId('confirm-title').textContent(), new RegExp(`${removed.name}.*${room}`));
  assert.equal(first.frames.length, 0, 'a frame arrived before the removal was confirmed');
  await page.getByTestId('confirm-ok').click();
  await dialog.waitFor({ state: 'hidden' });
  const removedClose = await withTimeout(removed.closed, STEP_TIMEOUT_MS, `${removed.name}'s close frame`);
  assert.deepEqual(removedClose, { code: 1008, reason: `removed from room ${room} by an operator` }, `${removed.name}'s close frame`);
  const left = await first.until((f) => f.event_type === 'user_leave' && f.username === removed.name, `${removed.name}'s user_leave`);
  assert.deepEqual(left, { event_type: 'user_leave', username: removed.name });
  await waitForTotal(page, baseline + added - 2, 'after the removal');
  await chip.waitFor({ state: 'detached' });
  log(`${removed.name} removed from ${room}: close 1008 "${removedClose.reason}"`);

  // The overview shows the process's figures, and the closes-by-code chart
  // shows the codes the admin API's runtime figures count (the two operator
  // closes above are 1008s once the broker counts server closes per code).
  for (const id of ['stat-rss', 'stat-fds']) {
    const value = Number(await page.getByTestId(id).getAttribute('data-value'));
    assert.ok(value > 0, `${id} shows ${value}`);
  }
  const runtime = await (await fetch(`${baseUrl}/api/admin/runtime`, { headers: { Authorization: `Bearer ${adminKey}` } })).json();
  const codes = Object.entries(runtime.closes_by_code).filter(([, n]) => n > 0).map(([code]) => code).sort();
  await page.waitForFunction((want) => {
    const shown = [...document.querySelectorAll('[data-testid="close-code"]')].map((bar) => bar.dataset.code).sort();
    return JSON.stringify(shown) === JSON.stringify(want);
  }, codes).catch(() => {
    throw new Error(`the closes chart does not show the codes ${JSON.stringify(codes)}`);
  });
  log(`overview: closes by code shows ${JSON.stringify(runtime.closes_by_code)}`);

  // The Live presence tab: a live user online on one connection, its game.
  const liveUser = await goLive(tokens.live);
  liveUser.send({ type: 'now-playing', message: game });
  await page.getByTestId('tab-presence').click();
  await page.getByTestId('search-presence').fill(tokens.live.name);
  const presenceRow = page.locator(`[data-testid="presence-row"][data-user-id="${tokens.live.id}"]`);
  await presenceRow.waitFor();
  await page.waitForFunction(({ id, game: playing }) => {
    const row = document.querySelector(`[data-testid="presence-row"][data-user-id="${id}"]`);
    return row?.dataset.connections === '1' && row.querySelector('[data-testid="playing"]')?.textContent === playing;
  }, { id: tokens.live.id, game });
  log(`live presence shows ${tokens.live.name} playing ${game}`);

  // A connection's detail: the chat user's room, then the live user's
  // connection, closed from its detail view.
  await page.getByTestId('tab-connections').click();
  await page.getByTestId('search-connections').fill(first.name);
  await page.waitForFunction((name) => {
    const found = [...document.querySelectorAll('[data-testid="connection-row"]')];
    return found.length === 1 && found[0].dataset.identity === name;
  }, first.name);
  await rows.first().getByTestId('connection-detail').click();
  const detail = page.getByTestId('detail-dialog');
  await detail.waitFor({ state: 'visible' });
  assert.equal(await page.getByTestId('detail-protocol').textContent(), 'chat');
  assert.equal(await page.getByTestId('detail-identity').textContent(), first.name);
  await page.waitForFunction((r) => document.querySelector('[data-testid="detail-joined"]').textContent === r, room);
  await page.getByTestId('detail-close').click();
  await detail.waitFor({ state: 'hidden' });
  await page.getByTestId('filter-connections').selectOption('live');
  await page.getByTestId('search-connections').fill('');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="connection-row"]').length === 1);
  await rows.first().getByTestId('connection-detail').click();
  await detail.waitFor({ state: 'visible' });
  assert.equal(await page.getByTestId('detail-protocol').textContent(), 'live');
  assert.match(await page.getByTestId('detail-peer').textContent(), /^127\.0\.0\.1:\d+$/);
  await page.getByTestId('detail-disconnect').click();
  await detail.waitFor({ state: 'hidden' });
  await dialog.waitFor({ state: 'visible' });
  await page.getByTestId('confirm-ok').click();
  await dialog.waitFor({ state: 'hidden' });
  const liveClose = await withTimeout(liveUser.closed, STEP_TIMEOUT_MS, 'the live user\'s close frame');
  assert.deepEqual(liveClose, { code: 1008, reason: 'disconnected by an operator' });
  await page.getByTestId('tab-presence').click();
  await presenceRow.waitFor({ state: 'detached' });
  log('closed the live connection from its detail view; it left the presence list');

  // Sorting: the connections by id, ascending then descending.
  await page.getByTestId('tab-connections').click();
  await page.getByTestId('filter-connections').selectOption('');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="connection-row"]').length >= 3);
  const idHeader = page.locator('[data-testid="sort-connections"][data-column="ID"]');
  await idHeader.click();
  let ids = await shownIds(page);
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'ascending by id');
  await idHeader.click();
  ids = await shownIds(page);
  assert.deepEqual(ids, [...ids].sort((a, b) => b - a), 'descending by id');
  assert.equal(await idHeader.getAttribute('data-dir'), 'desc');
  assert.equal(await page.locator('th[aria-sort="descending"]').count(), 1);
  log(`sorted the connections by id: ${ids.join(', ')}`);

  // Unban: a permanent removal on the Permissioned rooms tab, then the ban
  // lifted from the room's Bans view; the user enters again.
  const owner = await roomsUser(tokens.owner);
  const guest = await roomsUser(tokens.guest);
  owner.command({ type: 'create', name: bansRoom, closed: false });
  const created = await owner.until((f) => f.type === 'created', 'created');
  const roomId = created.room_id;
  await owner.until((f) => f.type === 'enter', 'its own enter');
  guest.command({ type: 'enter', room_id: roomId });
  await guest.until((f) => f.type === 'enter' && f.user_id === tokens.guest.id, 'its enter');
  await page.getByTestId('tab-rooms').click();
  await page.getByTestId('search-rooms').fill(bansRoom);
  const roomsRow = page.locator(`[data-testid="room-row"][data-room-id="${roomId}"]`);
  const guestChip = roomsRow.locator(`[data-testid="member"][data-member="${tokens.guest.id}"]`);
  await guestChip.waitFor();
  await guestChip.getByTestId('remove-member').click();
  await dialog.waitFor({ state: 'visible' });
  await page.getByTestId('confirm-permanent').check();
  await page.getByTestId('confirm-ok').click();
  await dialog.waitFor({ state: 'hidden' });
  const kick = await guest.until((f) => f.type === 'kick', 'kick');
  assert.equal(kick.permanent, true, JSON.stringify(kick));
  await roomsRow.getByTestId('room-bans').click();
  await detail.waitFor({ state: 'visible' });
  const ban = page.locator(`[data-testid="ban"][data-user="${tokens.guest.id}"]`);
  await ban.waitFor();
  guest.command({ type: 'enter', room_id: roomId });
  assert.deepEqual(await guest.until((f) => f.type === 'error', 'the refusal'), { type: 'error', message: 'you are banned from this room' });
  await ban.getByTestId('lift-ban').click();
  await page.getByTestId('no-bans').waitFor();
  await page.getByTestId('detail-close').click();
  await detail.waitFor({ state: 'hidden' });
  guest.command({ type: 'enter', room_id: roomId });
  const back = await guest.until((f) => f.type === 'enter' || f.type === 'error', 'enter after the unban');
  assert.deepEqual(back, { type: 'enter', user_id: tokens.guest.id, room_id: roomId });
  log(`banned ${tokens.guest.id} from ${bansRoom}, lifted the ban, it entered again`);
  owner.close();
  guest.close();

  // The other tabs load without an error.
  for (const name of ['rooms', 'services', 'sessions']) {
    await page.getByTestId(`tab-${name}`).click();
    await page.waitForFunction((n) => /of/.test(document.querySelector(`[data-testid="pager-${n}"]`).textContent), name);
    assert.equal(await page.getByTestId(`error-${name}`).isVisible(), false, `the ${name} tab shows an error`);
  }
  assert.ok(await page.locator('[data-testid="session-row"]').count() >= 1, 'the listed session is not in the Sessions tab');

  // Screenshot: the Connections list, after the charts have some history;
  // the two chat users talk meanwhile, so the message chart has a shape.
  await page.getByTestId('tab-connections').click();
  await page.getByTestId('search-connections').fill('');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="connection-row"]').length >= 3);
  let said = 0;
  let chatter = null;
  const talk = () => {
    const speaker = chat[said % 2];
    said += 1;
    speaker.send({ event_type: 'message', username: speaker.name, message: `status check ${said}` });
    chatter = setTimeout(talk, 50 + Math.random() * 400);
  };
  talk();
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="chart-messages"]').dataset.samples) >= 20,
    undefined, { timeout: 30_000 }).finally(() => clearTimeout(chatter));
  await page.evaluate(() => document.activeElement?.blur());
  await page.mouse.move(0, 0);
  await page.screenshot({ path: screenshotPath, fullPage: true });
  log(`screenshot saved to ${screenshotPath}`);

  checkPage();
  watcher.close();
}

async function cleanup() {
  for (const client of clients) client.close();
  if (context) await withTimeout(context.close(), 10_000, 'closing Chromium').catch((e) => log(e.message));
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
}

const watchdog = setTimeout(() => {
  console.error(`[console.mjs] FAILED: the whole test took longer than ${TOTAL_TIMEOUT_MS} ms`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);

try {
  await main();
  await cleanup();
  clearTimeout(watchdog);
  log('passed');
  process.exit(0);
} catch (error) {
  console.error(`[console.mjs] FAILED: ${error.stack ?? error}`);
  await cleanup().catch(() => {});
  process.exit(1);
}
