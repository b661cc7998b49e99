// Pure rendering: data from /api/v1/dashboard in, DOM nodes out. No fetching, no timers.
// Every list item carries a data key (data-region, data-revision, data-device, ...) so dom.js can
// patch the page in place. Text from git and from devices only ever becomes text nodes.

/** Creates an element: h('p', { class: 'x' }, 'text', child). Null/false children are skipped. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const short = (sha) => (sha ? sha.slice(0, 8) : '–');

export function ago(ms, now) {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

/**
 * A stacked bar of counts, e.g. [['converged', 8], ['updating', 2]]. Widths are set through the
 * CSSOM (the page's CSP allows no inline style attributes). The label says the same in words.
 */
export function stackedBar(parts, total, label) {
  const bar = h('div', { class: 'bar', role: 'img', 'aria-label': label, title: label });
  for (const [kind, count] of parts) {
    if (count <= 0 || total <= 0) continue;
    const seg = h('span', { class: `seg seg-${kind}` });
    seg.style.width = `${(100 * count) / total}%`;
    bar.append(seg);
  }
  return bar;
}

function countsText(d) {
  const pending = d.pending ? `, ${d.pending} waiting` : '';
  return `${d.converged}/${d.total} converged, ${d.updating} updating${pending}, ${d.failed} failed, ${d.offline} offline`;
}

/** A commit's subject and author, when the region read them from git. */
export function commitLine(subject, author) {
  if (!subject && !author) return null;
  return h('span', { class: 'commit' }, subject ? h('span', { class: 'subject' }, subject) : null, author ? h('span', { class: 'author' }, author) : null);
}

export function renderRegions(regions, now) {
  if (regions.length === 0) return h('p', { class: 'empty' }, 'No region has reported yet.');
  const rows = regions.map((r) => {
    const d = r.devices;
    const refused = r.revision.error && r.revision.error.length > 0;
    return h(
      'tr',
      { class: r.stale ? 'region region-stale' : 'region', dataset: { region: r.region } },
      h('th', { scope: 'row' }, r.region),
      h(
        'td',
        {},
        r.stale
          ? h('span', { class: 'badge badge-stale' }, `stale · last heard ${ago(r.receivedAt, now)}`)
          : h('span', { class: 'badge badge-ok' }, `live · ${ago(r.receivedAt, now)}`),
        r.source.reachable ? null : h('span', { class: 'badge badge-warn', title: 'the region cannot reach git; it serves its last good revision' }, 'git unreachable'),
      ),
      h('td', { class: 'applied-cell' }, h('code', { class: 'sha', title: r.revision.applied ?? '' }, short(r.revision.applied)),
        refused ? h('span', { class: 'badge badge-refused', title: r.revision.error.join('\n') }, `refused ${short(r.revision.attempted)}`) : null,
        commitLine(r.revision.subject, r.revision.author)),
      h(
        'td',
        { class: 'devices-cell' },
        stackedBar(
          [['converged', d.converged], ['updating', d.updating], ['failed', d.failed], ['offline', d.offline], ['pending', d.pending ?? 0]],
          d.total,
          countsText(d),
        ),
        h('span', { class: 'counts', dataset: { converged: d.converged, total: d.total } }, countsText(d)),
      ),
    );
  });
  const total = { total: 0, converged: 0, updating: 0, pending: 0, failed: 0, offline: 0 };
  for (const r of regions) for (const key of Object.keys(total)) total[key] += r.devices[key] ?? 0;
  const stale = regions.filter((r) => r.stale).length;
  return h(
    'div',
    { class: 'table-scroll' },
    h(
      'table',
      { class: 'regions' },
      h('caption', {}, `${regions.length} region${regions.length === 1 ? '' : 's'}${stale ? `, ${stale} stale` : ''} · ${countsText(total)}`),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Region'), h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, 'Applied'), h('th', { scope: 'col' }, 'Devices'))),
      h('tbody', {}, rows),
    ),
  );
}

const STATE_CLASS = { Progressing: 'progressing', Complete: 'complete', Halted: 'halted', Refused: 'refused' };

function renderWave(wave) {
  const label = `wave ${wave.wave} (${wave.percent}%): ${wave.healthy}/${wave.devices} updated, ${wave.updating} updating, ${wave.failed} failed, ${wave.offline} offline, ${wave.pending} waiting${wave.new ? `, ${wave.new} new (no report yet)` : ''}`;
  return h(
    'li',
    { class: 'wave', dataset: { wave: wave.wave } },
    h('span', { class: 'wave-label' }, `Wave ${wave.wave} · ${wave.percent}%`),
    stackedBar(
      [['converged', wave.healthy], ['updating', wave.updating], ['failed', wave.failed], ['offline', wave.offline], ['pending', wave.pending]],
      wave.devices,
      label,
    ),
    h('span', { class: 'wave-count' }, `${wave.healthy}/${wave.devices}`),
  );
}

function renderDeployment(d) {
  return h(
    'div',
    { class: `deployment deployment-${d.state.toLowerCase()}`, dataset: { deployment: d.deployment, state: d.state } },
    h(
      'p',
      { class: 'deployment-head' },
      h('strong', {}, d.deployment),
      `${d.app !== d.deployment ? ` (${d.app})` : ''} → ${d.version}${d.rollback ? ' (rollback)' : ''} `,
      h('span', { class: `badge badge-${d.state.toLowerCase()}` }, d.state),
      d.message && d.state !== 'Halted' ? h('span', { class: 'muted' }, ` ${d.message}`) : null,
    ),
    d.waves.length > 0 ? h('ol', { class: 'waves' }, d.waves.map(renderWave)) : null,
  );
}

function renderUndo(rev) {
  if (!rev.undo) return null;
  return h(
    'div',
    { class: 'undo' },
    h('p', {}, 'To undo this commit:'),
    h('pre', {}, h('code', {}, rev.undo.revert)),
    rev.undo.rollbacks.length > 0 ? h('p', {}, 'or roll the Deployment back at once:') : null,
    rev.undo.rollbacks.length > 0 ? h('pre', {}, h('code', {}, rev.undo.rollbacks.join('\n'))) : null,
  );
}

export function renderRevision(rev) {
  const state = STATE_CLASS[rev.state] ?? 'progressing';
  const classes = ['rollout', `rollout-${state}`];
  if (rev.superseded) classes.push('rollout-superseded');
  const regionBlocks = rev.regions
    .filter((r) => r.applied || r.attempted || r.deployments.length > 0)
    .map((r) =>
      h(
        'div',
        { class: r.stale ? 'rollout-region region-stale' : 'rollout-region', dataset: { region: r.region } },
        h('h4', {}, r.region, r.stale ? h('span', { class: 'badge badge-stale' }, 'stale') : null,
          r.refused ? h('span', { class: 'badge badge-refused' }, 'refused') : null),
        r.refused && r.errors ? h('ul', { class: 'errors' }, r.errors.slice(0, 10).map((e) => h('li', {}, h('code', {}, e)))) : null,
        r.deployments.length === 0 && !r.refused ? h('p', { class: 'muted' }, 'Applied; it starts no rollout here.') : null,
        r.deployments.map(renderDeployment),
      ),
    );
  const elsewhere = rev.regions
    .filter((r) => !r.applied && !r.attempted && r.deployments.length === 0)
    .map((r) => `${r.region} (on ${short(r.current)})`);
  return h(
    'article',
    { class: classes.join(' '), dataset: { revision: rev.revision, state: rev.state }, 'aria-label': `commit ${short(rev.revision)}: ${rev.state}` },
    h(
      'header',
      { class: 'rollout-head' },
      h('h3', {}, h('code', { class: 'sha', title: rev.revision }, short(rev.revision))),
      h('span', { class: `badge badge-${state}` }, rev.state),
      rev.superseded ? h('span', { class: 'muted' }, 'superseded') : null,
      rev.subject || rev.author ? h('p', { class: 'rollout-commit' }, commitLine(rev.subject, rev.author)) : null,
      rev.firstSeenAt ? h('time', { class: 'muted', datetime: new Date(rev.firstSeenAt).toISOString() }, `first seen ${new Date(rev.firstSeenAt).toLocaleString()}`) : null,
    ),
    rev.halted.length > 0
      ? h('div', { class: 'halt', role: 'alert' }, rev.halted.map((x) => h('p', {}, h('strong', {}, `${x.deployment} ${x.version} halted in ${x.region}: `), x.reason)))
      : null,
    renderUndo(rev),
    regionBlocks,
    elsewhere.length > 0 && !rev.superseded ? h('p', { class: 'muted' }, `Not on this commit: ${elsewhere.join(', ')}`) : null,
  );
}

export function renderRevisions(revisions) {
  if (revisions.length === 0) return h('p', { class: 'empty' }, 'No commit seen yet.');
  return h('div', { class: 'rollouts' }, revisions.map((rev) => renderRevision(rev)));
}

const HELD_TITLE = (deployment) => `the rollout of ${deployment} halted: this device stays on its version until the halt is resolved (a revert, a fix, or cascade rollout retry)`;

function stateCell(d) {
  if (d.heldBy) return h('td', {}, h('span', { class: 'badge badge-held', title: HELD_TITLE(d.heldBy) }, 'held by halt'));
  return h('td', {}, h('span', { class: `badge badge-${d.state}` }, d.state));
}

/** What the device runs; for a failed app also the version that failed (not the one it went back to). */
function appCell(d, app) {
  const failed = d.failed ? d.failed[app] : undefined;
  if (failed === undefined) return h('td', { dataset: { key: app } }, d.apps[app] ?? '–');
  return h(
    'td',
    { class: 'app-failed', dataset: { key: app } },
    h('span', { class: 'running', title: 'running now' }, d.apps[app] ?? '–'),
    ' ',
    h('span', { class: 'failed-version', title: `${app} ${failed} failed on this device; it went back to ${d.apps[app] ?? 'nothing'}` }, `${app} ${failed} failed`),
  );
}

export function renderDevices(result) {
  if (result.devices.length === 0) return h('p', { class: 'empty' }, 'No device matches.');
  const apps = [...new Set(result.devices.flatMap((d) => [...Object.keys(d.apps), ...Object.keys(d.failed ?? {})]))].sort();
  return h(
    'div',
    { class: 'table-scroll' },
    h(
      'table',
      { class: 'devices' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Device'), h('th', { scope: 'col' }, 'Region'), h('th', { scope: 'col' }, 'State'), apps.map((a) => h('th', { scope: 'col', dataset: { key: a } }, a)))),
      h(
        'tbody',
        {},
        result.devices.map((d) =>
          h(
            'tr',
            { class: `device device-${d.state}${d.heldBy ? ' device-held' : ''}`, dataset: { device: d.id, key: `${d.region}/${d.id}` } },
            h('th', { scope: 'row' }, h('code', {}, d.id)),
            h('td', {}, d.region),
            stateCell(d),
            apps.map((a) => appCell(d, a)),
          ),
        ),
      ),
    ),
  );
}

const EVENT_CLASS = { 'revision.refused': 'bad', 'rollout.halted': 'bad', 'device.failed': 'bad', 'rollout.complete': 'good', 'revision.applied': 'good' };

/** The newest events first, as the event stream delivered them. */
export function renderEvents(events) {
  if (events.length === 0) return h('p', { class: 'empty' }, 'No event since the page opened.');
  return h(
    'ol',
    { class: 'events' },
    [...events].reverse().map((e) =>
      h(
        'li',
        { class: `event event-${EVENT_CLASS[e.type] ?? 'info'}`, dataset: { event: String(e.id) } },
        h('time', { datetime: new Date(e.at).toISOString() }, new Date(e.at).toLocaleTimeString()),
        h('span', { class: 'event-type' }, e.type),
        h('span', { class: 'event-message' }, e.message),
      ),
    ),
  );
}

export function deviceCountText(result, query) {
  const shown = result.devices.length;
  const base = query ? `${result.matched} of ${result.total} devices match “${query}”` : `${result.total} devices`;
  const more = result.matched > shown ? ` (showing the first ${shown})` : '';
  const truncated = result.truncatedRegions.length > 0 ? ` · ${result.truncatedRegions.join(', ')} list only their first devices` : '';
  return base + more + truncated;
}
