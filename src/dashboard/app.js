// The dashboard: polls the JSON the hub (or a region) serves and redraws. Same origin only.
import { deviceCountText, renderDevices, renderPending, renderRegions, renderRevisions } from './render.js';

const POLL_MS = 1500;
const SEARCH_DEBOUNCE_MS = 200;

const $ = (id) => document.getElementById(id);
let query = '';
let searchTimer = null;
let failures = 0;
let lastRevisions = '';

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
  live.textContent = text;
  live.classList.toggle('live-error', !ok);
}

async function refreshOverview() {
  const data = await getJson('/api/v1/dashboard');
  const scope = data.mode === 'region' && data.regions[0] ? `region ${data.regions[0].region}` : 'fleet';
  $('scope').textContent = `· ${scope}`;
  document.title = `Cascade · ${scope}`;
  $('regions').replaceChildren(renderRegions(data.regions, data.at));
  // Redrawn only when something changed, so a selected `git revert` command stays selected.
  const revisions = JSON.stringify(data.revisions);
  if (revisions !== lastRevisions) {
    lastRevisions = revisions;
    $('rollouts').replaceChildren(renderRevisions(data.revisions));
  }
  await refreshPending(data.mode);
  const halted = data.revisions.filter((r) => r.state === 'Halted' && !r.superseded).length;
  setLive(`Live · updated ${new Date(data.at).toLocaleTimeString()}${halted ? ` · ${halted} halted` : ''}`, true);
}

async function refreshDevices() {
  const asked = query;
  const result = await getJson(`/api/v1/dashboard/devices?q=${encodeURIComponent(asked)}`);
  if (asked !== query) return; // a newer search is on its way
  $('devices').replaceChildren(renderDevices(result));
  $('device-count').textContent = deviceCountText(result, asked);
}

// A region's devices waiting for approval; shown only when there are some (the hub has no such list).
async function refreshPending(mode) {
  if (mode !== 'region') return;
  let pending = [];
  try {
    pending = await getJson('/api/v1/dashboard/pending');
  } catch {
    // Needs the operator token, like the device list; nothing to show without it.
  }
  $('pending-section').hidden = pending.length === 0;
  $('pending').replaceChildren(pending.length ? renderPending(pending) : '');
}

function showDevicesError(err) {
  $('devices').replaceChildren();
  $('device-count').textContent = `Cannot list devices (${err.message}).`;
}

async function tick() {
  try {
    await Promise.all([refreshOverview(), refreshDevices().catch(showDevicesError)]);
    failures = 0;
  } catch (err) {
    failures++;
    setLive(`Cannot reach the server (${err.message}); retrying…`, false);
  }
  // Back off a little while the server is away, never beyond 10 s.
  setTimeout(tick, Math.min(POLL_MS * 2 ** Math.min(failures, 3), 10_000));
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
tick();
