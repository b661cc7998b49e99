// The dashboard: follows the server's event stream (GET /api/v1/events) and re-reads the JSON it
// serves when something happened, patching the page in place (dom.js) so focus, selection and
// scroll survive. Without a stream (an older server, a proxy that buffers) it polls. Same origin only.
import { morphChildren } from './dom.js';
import { deviceCountText, h, renderDevices, renderEvents, renderRegions, renderRevisions } from './render.js';

/** Polling period when there is no event stream. */
const POLL_MS = 1500;
/** With a stream: counters still move between events (devices converging), this often while a rollout moves ... */
const MOVING_REFRESH_MS = 2000;
/** ... and this often when nothing moves (ages, staleness). */
const IDLE_REFRESH_MS = 15_000;
/** Events arriving together cause one refresh. */
const EVENT_COALESCE_MS = 150;
const SEARCH_DEBOUNCE_MS = 200;
const EVENTS_SHOWN = 30;

const $ = (id) => document.getElementById(id);
let query = '';
let searchTimer = null;
let failures = 0;
let moving = false;
let streaming = false;
let refreshTimer = null;
let refreshDueAt = Infinity;
let inFlight = null;
const events = [];

async function getJson(path) {
  const response = await fetch(path, { credentials: 'same-origin', headers: { accept: 'application/json' }, cache: 'no-store' });
  if (!response.ok) {
    let message = `${response.status}`;
    try {
      const body = await response.json();
      if (body.error) message = `${response.status}: ${body.error.message}`;
    } catch {
      // not JSON
    }
    throw new Error(message);
  }
  return response.json();
}

function setLive(text, ok) {
  const live = $('live');
  if (live.textContent !== text) live.textContent = text;
  live.classList.toggle('live-error', !ok);
}

/** Replaces the children of a container by a rendered tree, in place. */
function show(id, node) {
  morphChildren($(id), h('div', {}, node));
}

async function refreshOverview() {
  const data = await getJson('/api/v1/dashboard');
  const scope = data.mode === 'region' && data.regions[0] ? `region ${data.regions[0].region}` : 'fleet';
  if ($('scope').textContent !== `· ${scope}`) $('scope').textContent = `· ${scope}`;
  if (document.title !== `Cascade · ${scope}`) document.title = `Cascade · ${scope}`;
  show('regions', renderRegions(data.regions, data.at));
  show('rollouts', renderRevisions(data.revisions));
  moving = data.revisions.some((r) => r.state === 'Progressing' && !r.superseded);
  const halted = data.revisions.filter((r) => r.state === 'Halted' && !r.superseded).length;
  const how = streaming ? 'Live' : 'Polling';
  setLive(`${how} · updated ${new Date(data.at).toLocaleTimeString()}${halted ? ` · ${halted} halted` : ''}`, true);
}

async function refreshDevices() {
  const asked = query;
  const result = await getJson(`/api/v1/dashboard/devices?q=${encodeURIComponent(asked)}`);
  if (asked !== query) return; // a newer search is on its way
  show('devices', renderDevices(result));
  const count = deviceCountText(result, asked);
  if ($('device-count').textContent !== count) $('device-count').textContent = count;
}

function showDevicesError(err) {
  $('devices').replaceChildren();
  $('device-count').textContent = `Cannot list devices (${err.message}).`;
}

/** One refresh at a time; a request while one runs is served by one more after it. */
function refresh() {
  if (inFlight) {
    inFlight.again = true;
    return inFlight.promise;
  }
  const state = { again: false, promise: null };
  state.promise = (async () => {
    try {
      await Promise.all([refreshOverview(), refreshDevices().catch(showDevicesError)]);
      failures = 0;
    } catch (err) {
      failures++;
      setLive(`Cannot reach the server (${err.message}); retrying…`, false);
    } finally {
      inFlight = null;
      if (state.again) refresh();
      schedule();
    }
  })();
  inFlight = state;
  return state.promise;
}

/** The next refresh without an event: polling without a stream, a slower beat with one. */
function schedule(delay) {
  clearTimeout(refreshTimer);
  refreshDueAt = Infinity;
  const base = streaming ? (moving ? MOVING_REFRESH_MS : IDLE_REFRESH_MS) : POLL_MS;
  // Back off a little while the server is away, never beyond 10 s.
  const wait = delay ?? Math.min(base * 2 ** Math.min(failures, 3), Math.max(base, 10_000));
  refreshDueAt = Date.now() + wait;
  refreshTimer = setTimeout(() => {
    refreshDueAt = Infinity;
    refresh();
  }, wait);
}

function onEvent(message) {
  let event;
  try {
    event = JSON.parse(message.data);
  } catch {
    return;
  }
  if (events.some((e) => e.id === event.id)) return;
  events.push(event);
  if (events.length > EVENTS_SHOWN) events.splice(0, events.length - EVENTS_SHOWN);
  show('events', renderEvents(events));
  // A burst of events brings one refresh, soon: later events never push it further away.
  if (refreshDueAt > Date.now() + EVENT_COALESCE_MS) schedule(EVENT_COALESCE_MS);
}

const EVENT_TYPES = ['revision.applied', 'revision.refused', 'rollout.wave-started', 'rollout.baking', 'rollout.halted', 'rollout.complete', 'device.failed'];

function connect() {
  if (typeof EventSource !== 'function') return;
  const source = new EventSource('/api/v1/events', { withCredentials: true });
  let opened = false;
  source.addEventListener('open', () => {
    opened = true;
    streaming = true;
    if (events.length === 0) show('events', h('p', { class: 'empty' }, 'No event yet: revisions, waves, halts and failed devices show here as they happen.'));
    refresh();
  });
  for (const type of EVENT_TYPES) source.addEventListener(type, onEvent);
  // Events were missed (the server restarted or moved on): read everything again.
  source.addEventListener('gap', () => refresh());
  source.addEventListener('error', () => {
    streaming = false;
    if (source.readyState === EventSource.CLOSED) {
      // Refused outright (no events route, an error status): poll, and try the stream again later.
      show('events', h('p', { class: 'empty' }, opened ? 'Event stream lost; polling.' : 'No event stream from this server; polling.'));
      setTimeout(connect, 30_000);
    }
    schedule();
  });
}

function onSearch() {
  query = $('device-query').value.trim();
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => refreshDevices().catch(showDevicesError), SEARCH_DEBOUNCE_MS);
}

$('device-query').addEventListener('input', onSearch);
$('device-search').addEventListener('submit', (event) => {
  event.preventDefault();
  onSearch();
});
refresh();
connect();
