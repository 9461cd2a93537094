/* global document, Node, confirm, URLSearchParams, setTimeout, setInterval, EventSource, location */
// The admin web page (README "Admin web page"). Plain ES modules, no framework, no network beyond
// this registrar: every number comes from the JSON API in src/registrar/admin-web.ts.
import { ApiError, del, get, post, session } from './api.js';

const $ = (id) => document.getElementById(id);

/** An element with text (never innerHTML: node names and descriptions are data, not markup). */
function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function row(cells) {
  const tr = el('tr');
  for (const c of cells) {
    const td = el('td');
    if (c instanceof Node) td.append(c);
    else td.textContent = c ?? '';
    tr.append(td);
  }
  return tr;
}

function notice(err) {
  const n = $('notice');
  if (!err) {
    n.hidden = true;
    return;
  }
  if (err instanceof ApiError && err.status === 401) {
    n.textContent =
      'Logged out (the session expired or the registrar restarted): run muster admin url for a new link.';
  } else n.textContent = err.message;
  n.hidden = false;
}

/** Runs an action of a button, showing what went wrong; the button is disabled meanwhile. */
async function act(button, fn) {
  button.disabled = true;
  try {
    await fn();
    notice();
  } catch (err) {
    notice(err);
  } finally {
    button.disabled = false;
  }
}

/** "15m", "1h30m", "7d" -> milliseconds (as the CLI's --for). */
function duration(text) {
  const units = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  const parts = [...text.trim().matchAll(/(\d+)([smhd])/g)];
  if (!parts.length || parts.map((p) => p[0]).join('') !== text.trim())
    throw new Error(`${text}: not a duration such as 15m, 1h or 7d`);
  return parts.reduce((ms, [, n, u]) => ms + Number(n) * units[u], 0);
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : '');

function left(ms) {
  if (ms <= 0) return 'ending…';
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}h ${String(m).padStart(2, '0')}m ${ss}s left` : `${m}m ${ss}s left`;
}

// ---- install mode and counts ----

let installUntil = null;

async function refreshStatus() {
  const s = await get('/api/status');
  $('registrar').textContent = `cluster ${s.cluster} · registrar ${s.id}`;
  const im = s.installMode;
  $('im-state').textContent = im.on ? 'on' : 'off';
  $('im-state').classList.toggle('on', im.on);
  $('im-description').textContent = im.description;
  installUntil = im.on && im.until ? im.until : null;
  tick();
  const c = s.counts;
  $('node-counts').textContent = Object.entries(c)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${n} ${k}`)
    .join(' · ');
}

function tick() {
  $('im-countdown').textContent = installUntil ? left(installUntil - Date.now()) : '';
}

$('im-on').addEventListener('submit', (e) => {
  e.preventDefault();
  act($('im-on-button'), async () => {
    const max = $('im-max').value;
    await post('/api/install-mode', {
      on: true,
      forMs: duration($('im-for').value),
      ...(max ? { max: Number(max) } : {}),
    });
    await refreshStatus();
  });
});
$('im-off-button').addEventListener('click', () =>
  act($('im-off-button'), async () => {
    await post('/api/install-mode', { on: false });
    await refreshStatus();
  }),
);

// ---- pending nodes ----

async function refreshPending() {
  const { nodes } = await get('/api/pending');
  const body = $('pending-rows');
  body.replaceChildren(
    ...nodes.map((n) => {
      const approve = el('button', 'Approve', { type: 'button', class: 'approve', 'data-node': n.name });
      const reject = el('button', 'Reject', { type: 'button', class: 'reject', 'data-node': n.name });
      approve.addEventListener('click', () =>
        act(approve, async () => {
          await post(`/api/nodes/${encodeURIComponent(n.name)}/approve`);
          await Promise.all([refreshPending(), refreshNodes(), refreshStatus()]);
        }),
      );
      reject.addEventListener('click', () =>
        act(reject, async () => {
          if (!confirm(`Reject ${n.name}? It is refused until removed.`)) return;
          await post(`/api/nodes/${encodeURIComponent(n.name)}/reject`);
          await Promise.all([refreshPending(), refreshNodes(), refreshStatus()]);
        }),
      );
      const actions = el('span');
      actions.append(approve, ' ', reject);
      const fp = el('td', n.key, { class: 'fp', title: 'SHA-256 of the node key (compare with the node)' });
      const tr = row([
        n.name,
        n.role,
        (n.addresses ?? []).join(', '),
        null,
        n.pendingReason ?? '',
        when(n.times?.pending ?? n.times?.heard),
        actions,
      ]);
      tr.children[3].replaceWith(fp);
      tr.children[4].classList.add('wrap');
      tr.dataset.node = n.name;
      return tr;
    }),
  );
  $('pending-count').textContent = nodes.length ? `(${nodes.length})` : '';
  $('pending-empty').hidden = nodes.length > 0;
}

// ---- tokens ----

async function refreshTokens() {
  const { tokens } = await get('/api/tokens');
  $('token-rows').replaceChildren(
    ...tokens
      .slice()
      .reverse()
      .map((t) => {
        const revoke = el('button', 'Revoke', { type: 'button', class: 'revoke' });
        revoke.disabled = t.state !== 'valid';
        revoke.addEventListener('click', () =>
          act(revoke, async () => {
            await del(`/api/tokens/${encodeURIComponent(t.id)}`);
            await refreshTokens();
          }),
        );
        const tr = row([
          t.id,
          t.state,
          `${t.used}/${t.maxUses ?? '∞'}`,
          t.expiresAt === null ? 'never' : new Date(t.expiresAt).toLocaleString(),
          t.roles.join(', ') || 'any',
          t.description,
          revoke,
        ]);
        tr.dataset.token = t.id;
        return tr;
      }),
  );
}

$('token-create').addEventListener('submit', (e) => {
  e.preventDefault();
  act($('token-create-button'), async () => {
    const uses = $('token-uses').value;
    const role = $('token-role').value.trim();
    const description = $('token-description').value.trim();
    const t = await post('/api/tokens', {
      ttlMs: duration($('token-ttl').value),
      ...(uses ? { uses: Number(uses) } : {}),
      ...(role ? { roles: [role] } : {}),
      ...(description ? { description } : {}),
    });
    // Shown once: kept in this element only, never in storage, gone on reload.
    $('token-secret-value').textContent = t.token;
    $('token-secret').hidden = false;
    $('token-create').reset();
    await refreshTokens();
  });
});
$('token-secret-hide').addEventListener('click', () => {
  $('token-secret-value').textContent = '';
  $('token-secret').hidden = true;
});

// ---- nodes: index-backed pages (name prefix, state, group; role filters within a bounded walk) ----

let pages = [undefined];

function nodeQuery(after) {
  const q = new URLSearchParams({ limit: '50' });
  const put = (k, v) => v && q.set(k, v);
  put('prefix', $('node-search').value.trim());
  put('state', $('node-state').value);
  put('role', $('node-role').value.trim());
  put('group', $('node-group').value.trim());
  put('after', after);
  return q;
}

async function refreshNodes() {
  const after = pages[pages.length - 1];
  const { nodes, next } = await get(`/api/nodes?${nodeQuery(after)}`);
  $('node-rows').replaceChildren(
    ...nodes.map((n) => {
      const tr = row([n.name, n.state, n.role, n.group ?? '', when(n.notAfter), when(n.lastSeen)]);
      tr.classList.add('clickable');
      tr.dataset.node = n.name;
      tr.addEventListener('click', () => showNode(n.name).catch(notice));
      return tr;
    }),
  );
  $('node-next').disabled = next === undefined;
  $('node-next').dataset.after = next ?? '';
  $('node-first').disabled = pages.length === 1;
}

$('node-filter').addEventListener('submit', (e) => {
  e.preventDefault();
  pages = [undefined];
  refreshNodes().then(() => notice(), notice);
});
$('node-next').addEventListener('click', () => {
  pages.push($('node-next').dataset.after);
  refreshNodes().catch(notice);
});
$('node-first').addEventListener('click', () => {
  pages = [undefined];
  refreshNodes().catch(notice);
});

async function showNode(name) {
  const { node } = await get(`/api/nodes/${encodeURIComponent(name)}`);
  $('node-detail-name').textContent = node.name;
  const d = node.decision;
  const fields = [
    ['State', node.state],
    ['Deciding rule', d ? `${d.rule}: ${d.detail} (${when(d.at)})` : '(none yet)'],
    ['Certificate expires', node.notAfter ? when(node.notAfter) : '(no certificate)'],
    ['Last seen', when(node.lastSeen)],
    ['Role', node.role],
    ['Group', node.group ?? '(none)'],
    ['Key fingerprint', node.key],
    ['Addresses', (node.addresses ?? []).join(', ')],
    ['Serial', node.serial ?? ''],
  ];
  $('node-detail-fields').replaceChildren(...fields.flatMap(([k, v]) => [el('dt', k), el('dd', v)]));
  $('node-detail').hidden = false;
}
$('node-detail-close').addEventListener('click', () => ($('node-detail').hidden = true));

// ---- events: SSE, resumed by the browser from the last id (the event's sequence number) ----

function describeEvent(ev) {
  const d = ev.detail ?? {};
  const parts = Object.entries(d)
    .filter(([, v]) => v !== undefined && v !== null && typeof v !== 'object')
    // Times the store keeps as milliseconds (a token's expiresAt) read as dates.
    .map(([k, v]) => `${k}=${k.endsWith('At') && typeof v === 'number' ? new Date(v).toISOString() : v}`);
  return `${new Date(ev.at).toLocaleTimeString()}  ${ev.type}  ${ev.name ?? ''}  ${parts.join(' ')}`;
}

let refreshQueued = false;
/** One refresh of the lists after a burst of events (not one per event). */
function refreshSoon() {
  if (refreshQueued) return;
  refreshQueued = true;
  setTimeout(() => {
    refreshQueued = false;
    Promise.all([refreshStatus(), refreshPending(), refreshTokens(), refreshNodes()]).catch(notice);
  }, 300);
}

function follow() {
  const list = $('event-list');
  const state = $('events-state');
  const source = new EventSource('/api/events');
  source.addEventListener('open', () => {
    state.textContent = 'live';
    state.classList.add('live');
  });
  source.addEventListener('error', () => {
    state.textContent = 'reconnecting';
    state.classList.remove('live');
  });
  source.addEventListener('muster', (m) => {
    const ev = JSON.parse(m.data);
    const li = el('li', describeEvent(ev), { value: String(ev.seq), class: 'fresh' });
    li.dataset.seq = String(ev.seq);
    li.dataset.type = ev.type;
    list.prepend(li);
    while (list.children.length > 500) list.lastChild.remove();
    refreshSoon();
  });
}

// ---- start ----

async function start() {
  try {
    const s = await session();
    $('who').textContent = `acting as ${s.by}`;
  } catch (err) {
    notice(err);
    return;
  }
  $('logout').addEventListener('click', () =>
    act($('logout'), async () => {
      await post('/api/logout');
      location.replace('/login');
    }),
  );
  await Promise.all([refreshStatus(), refreshPending(), refreshTokens(), refreshNodes()]).catch(notice);
  setInterval(tick, 1000);
  // The countdown's end and expiries: re-read now and then even without events.
  setInterval(() => refreshStatus().catch(notice), 30_000);
  follow();
}

start();
