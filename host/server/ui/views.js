// views.js — the dashboard's pages, one function per hash route (`VIEWS`), plus the
// small DOM and formatting helpers they share (`h`, `fmt*`, `parseRoute`, …).
//
// A view is `async (root, view, route)`: it draws into `root` and registers what it
// holds (subscriptions, timers) through `view` (made by app.js), which releases them
// when the route changes. Text is always set as text (never parsed as HTML), and
// nothing sets an inline style: widths are `<progress>` values or SVG attributes.
// Live updates come from `jobs.subscribe` events; a view's `onReady` refetches, so a
// reconnect or a `lagged` event never leaves a page stale.

import { rpc, rpcBatch, fetchArtifact } from './api.js';
import { statsChart, statsSummary, dagChart, countTasks, countsText } from './charts.js';

// ---------------------------------------------------------------- helpers

/** An element: `h('a', {href, class, onclick}, 'text', child, [more])`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === 'function' && k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  return fill(el, ...children);
}

/** Replaces `el`'s children with `children` (nested arrays flattened; null, undefined and false skipped). */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export const JOB_STATUSES = ['pending', 'starting', 'running', 'completed', 'failed', 'timed_out', 'cancelled', 'cleaning', 'cleaned'];
export const isLive = (status) => status === 'pending' || status === 'starting' || status === 'running';
const RUN_ENDED = new Set(['success', 'failed', 'cancelled']);
const PAGE = 50;

/** `#/jobs/<id>?status=x` → `{name: 'job', id, query}`; unknown paths name `not-found`. */
export function parseRoute(hash) {
  const raw = String(hash ?? '').replace(/^#\/?/, '');
  const cut = raw.indexOf('?');
  const path = cut < 0 ? raw : raw.slice(0, cut);
  const query = new URLSearchParams(cut < 0 ? '' : raw.slice(cut + 1));
  let parts;
  try {
    parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return { name: 'not-found', query };
  }
  const [top = 'jobs', id] = parts;
  if (parts.length === 2 && top === 'jobs') return { name: 'job', id, query };
  if (parts.length === 2 && top === 'runs') return { name: 'run', id, query };
  if (parts.length <= 1 && ['jobs', 'runs', 'uploads', 'plugins', 'models', 'workers'].includes(top)) {
    return { name: top, query };
  }
  return { name: 'not-found', query };
}

export function fmtDuration(ms) {
  if (!(ms >= 0)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.floor(s)} s`;
  const pad = (n) => String(n).padStart(2, '0');
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${pad(Math.floor(s % 60))} s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr} h ${pad(m % 60)} m`;
  return `${Math.floor(hr / 24)} d ${hr % 24} h`;
}

export function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n) || 0;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
  return u === 0 ? `${v} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

export const fmtNum = (n) => Number(n ?? 0).toLocaleString();

/** How long a job ran (so far, while it runs). */
export function jobDuration(job, now = Date.now()) {
  if (!job.started_at) return '';
  const end = job.completed_at ? Date.parse(job.completed_at) : isLive(job.status) ? now : NaN;
  return fmtDuration(end - Date.parse(job.started_at));
}

/** `key=value` → `[key, value]`, or null when there is no key. */
export function parseLabel(text) {
  const i = String(text ?? '').indexOf('=');
  return i > 0 ? [text.slice(0, i).trim(), text.slice(i + 1).trim()] : null;
}

/** Whether a job belongs in a list filtered by `{status, plugin, label}`. */
export function matchesFilters(job, f) {
  if (f.status && job.status !== f.status) return false;
  if (f.plugin && job.plugin !== f.plugin) return false;
  const label = f.label ? parseLabel(f.label) : null;
  return !label || job.labels?.[label[0]] === label[1];
}

export const shortId = (id) => (id && id.length > 16 ? `${id.slice(0, id.indexOf('_') + 1)}…${id.slice(-8)}` : id ?? '');
const words = (status) => String(status ?? '').replace(/_/g, ' ');

function time(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  const text = Number.isNaN(d.getTime()) ? iso : d.toLocaleString([], { dateStyle: 'short', timeStyle: 'medium' });
  return h('time', { datetime: iso, title: iso }, text);
}

function statusEl(status, attrs = {}) {
  return h('span', { class: `status status-${status}`, 'data-status': status, ...attrs }, words(status));
}

function setStatus(el, status) {
  el.className = `status status-${status}`;
  el.dataset.status = status;
  el.textContent = words(status);
}

const TITLES = { not_found: 'Not found.', forbidden: 'Not allowed.', unavailable: 'Unavailable.', unauthorized: 'Signed out.', invalid_params: 'Invalid request.', conflict: 'Conflict.', limit_exceeded: 'Limit reached.' };

/** A visible error: the server's message, and its kind as `data-kind`. */
export function errorBox(err, attrs = {}) {
  const kind = err?.kind ?? 'internal';
  return h('div', { class: 'notice error', role: 'alert', 'data-kind': kind, ...attrs },
    h('strong', {}, TITLES[kind] ?? 'Error.'), ' ', err?.message ?? String(err));
}

const heading = (...text) => h('h1', { tabindex: '-1' }, ...text);
const card = (title, ...children) => h('section', { class: 'card' }, title ? h('h2', {}, title) : null, ...children);
const field = (label, input) => h('div', { class: 'field' }, h('label', { for: input.id }, label), input);
const mono = (text, title) => h('span', { class: 'mono', title: title ?? text }, text);
const link = (href, text, title) => h('a', { href, class: 'mono', title }, text);
const jobLink = (id) => link(`#/jobs/${encodeURIComponent(id)}`, shortId(id), id);
const fact = (term, ...value) => [h('dt', {}, term), h('dd', {}, ...value)];
const td = (...content) => h('td', {}, ...content);
const num = (...content) => h('td', { class: 'num' }, ...content);
const empty = (text) => h('p', { class: 'empty muted' }, text);
const viewError = (e) => errorBox(e, { id: 'view-error' });

function table(headers, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' }, h('table', attrs,
    h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows)));
}

function labelsEl(labels) {
  const entries = Object.entries(labels ?? {});
  return entries.length ? h('span', { class: 'labels' }, entries.map(([k, v]) => h('span', { class: 'label' }, `${k}=${v}`))) : '';
}

/** A `<progress>` with its numbers as text; `bytes` formats them as sizes. */
function progressEl(p, bytes = false) {
  if (!p) return '';
  const f = bytes ? fmtBytes : fmtNum;
  const pct = p.total ? Math.min(100, Math.floor((100 * p.done) / p.total)) : null;
  const bar = p.total ? h('progress', { max: p.total, value: Math.min(p.done, p.total) }) : h('progress', {});
  const text = p.total ? `${f(p.done)} of ${f(p.total)} (${pct}%)` : f(p.done);
  bar.setAttribute('aria-label', text);
  return h('div', { class: 'progress' }, bar, h('span', { class: 'progress-text' }, text, p.message ? ` — ${p.message}` : ''));
}

/** Runs `fn` at most once per `ms`, after the last call asked for it (and not after the view left). */
function coalesce(view, fn, ms) {
  let timer = null;
  let running = false;
  let again = false;
  const run = async () => {
    timer = null;
    if (view.disposed) return;
    running = true;
    try { await fn(); } catch (e) { console.warn('jobhost:', e); } finally {
      running = false;
      if (again) { again = false; schedule(); }
    }
  };
  const schedule = () => {
    if (view.disposed) return;
    if (running) again = true;
    else timer ??= setTimeout(run, ms);
  };
  view.onDispose(() => clearTimeout(timer));
  return schedule;
}

// ---------------------------------------------------------------- #/jobs

function jobRow(job) {
  return h('tr', { 'data-job-id': job.id },
    td(jobLink(job.id)),
    td(job.plugin),
    h('td', { class: `status status-${job.status}`, 'data-status': job.status }, words(job.status)),
    td(time(job.created_at)),
    num(jobDuration(job)),
    td(labelsEl(job.labels)));
}

async function jobsView(root, view, route) {
  const q = route.query;
  const filters = { status: q.get('status') ?? '', plugin: q.get('plugin') ?? '', label: q.get('label') ?? '' };
  root.append(heading('Jobs'));

  // The last hour, refreshed once a minute.
  const chart = h('div', { class: 'chart-box', id: 'stats-chart' });
  const summary = h('p', { class: 'summary', id: 'stats-summary' });
  root.append(card('Last hour', chart,
    h('p', { class: 'legend muted', 'aria-hidden': 'true' },
      h('span', { class: 'key key-bar' }), ' jobs ended per minute (left axis) ',
      h('span', { class: 'key key-line' }), ' queue depth (right axis)'),
    summary));
  const loadStats = async () => {
    try {
      const stats = await rpc('jobs.stats', {});
      chart.replaceChildren(statsChart(stats));
      summary.textContent = statsSummary(stats);
    } catch (e) {
      chart.replaceChildren(errorBox(e));
      summary.textContent = '';
    }
  };
  loadStats();
  view.every(loadStats, 60_000);

  // Filters, kept in the URL so a filtered list can be bookmarked.
  const status = h('select', { id: 'filter-status', name: 'status' }, h('option', { value: '' }, 'any'),
    JOB_STATUSES.map((s) => h('option', { value: s, selected: s === filters.status }, words(s))));
  const plugin = h('input', { id: 'filter-plugin', name: 'plugin', type: 'text', value: filters.plugin, autocomplete: 'off', spellcheck: 'false' });
  const label = h('input', { id: 'filter-label', name: 'label', type: 'text', value: filters.label, placeholder: 'key=value', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'filter-label-error' });
  const labelError = h('p', { id: 'filter-label-error', class: 'field-error', role: 'alert' });
  const go = (next) => {
    const qs = new URLSearchParams(Object.entries(next).filter(([, v]) => v)).toString();
    const hash = `#/jobs${qs ? `?${qs}` : ''}`;
    if (location.hash === hash) load(true);
    else location.hash = hash;
  };
  const form = h('form', {
    class: 'filters', id: 'job-filters', role: 'search', 'aria-label': 'Filter jobs',
    onsubmit: (e) => {
      e.preventDefault();
      const next = { status: status.value, plugin: plugin.value.trim(), label: label.value.trim() };
      if (next.label && !parseLabel(next.label)) {
        labelError.textContent = 'A label filter is key=value.';
        label.focus();
        return;
      }
      go(next);
    },
  }, field('Status', status), field('Plugin', plugin), field('Label', label),
  h('div', { class: 'field buttons' }, h('button', { type: 'submit' }, 'Filter'),
    h('button', { type: 'button', onclick: () => go({}) }, 'Clear')), labelError);
  root.append(form);

  const tbody = h('tbody');
  const tableEl = h('table', { id: 'jobs-table', class: 'jobs' },
    h('caption', { class: 'sr-only' }, 'Your jobs, newest first'),
    h('thead', {}, h('tr', {}, ['Job', 'Plugin', 'Status', 'Created', 'Duration', 'Labels'].map((t) => h('th', { scope: 'col' }, t)))),
    tbody);
  const none = h('p', { class: 'empty muted', hidden: true }, 'No jobs match.');
  const more = h('button', { id: 'jobs-more', type: 'button', hidden: true }, 'More');
  const errors = h('div');
  const announce = h('p', { class: 'sr-only', 'aria-live': 'polite', id: 'jobs-announce' });
  root.append(errors, h('div', { class: 'table-wrap' }, tableEl), none, more, announce);

  const rows = new Map(); // id → {tr, job, live}
  let cursor = null;
  let generation = 0;

  const put = (job, where) => {
    const old = rows.get(job.id);
    const tr = jobRow(job);
    if (old) {
      old.tr.replaceWith(tr);
    } else if (where === 'end') {
      tbody.append(tr);
    } else {
      // Newest first: ids are time-ordered, so the first row with a smaller id follows it.
      const next = [...tbody.children].find((r) => r.dataset.jobId < job.id);
      if (next) tbody.insertBefore(tr, next);
      else if (cursor) return; // it belongs on a page not loaded yet
      else tbody.append(tr);
    }
    rows.set(job.id, { tr, job, live: where === 'live' || old?.live });
  };
  const remove = (id) => {
    rows.get(id)?.tr.remove();
    rows.delete(id);
  };

  async function load(first) {
    if (!first && !cursor) return;
    const mine = first ? ++generation : generation;
    more.disabled = true;
    try {
      const params = { limit: PAGE };
      for (const k of ['status', 'plugin', 'label']) if (filters[k]) params[k] = filters[k];
      if (!first) params.cursor = cursor;
      const page = await rpc('jobs.list', params);
      if (mine !== generation || view.disposed) return;
      if (first) {
        // Keep rows that events brought in after this page was read.
        const newest = page.jobs[0]?.id ?? '';
        const kept = [...rows.values()].filter((r) => r.live && r.job.id > newest && matchesFilters(r.job, filters));
        tbody.replaceChildren(...kept.map((r) => r.tr));
        rows.clear();
        for (const r of kept) rows.set(r.job.id, r);
      }
      for (const job of page.jobs) if (!rows.has(job.id)) put(job, 'end');
      cursor = page.next_cursor ?? null;
      errors.replaceChildren();
      tableEl.dataset.loaded = 'true';
    } catch (e) {
      if (mine === generation) errors.replaceChildren(viewError(e));
    } finally {
      if (mine === generation) {
        more.hidden = !cursor;
        more.disabled = false;
        none.hidden = rows.size > 0;
      }
    }
  }
  more.addEventListener('click', () => load(false));

  // Live: a status event updates its row at once; the job is then read again (in
  // batches) for its times, and an unknown job that matches the filters is inserted.
  const stale = new Set();
  const flush = coalesce(view, async () => {
    const ids = [...stale];
    stale.clear();
    if (ids.length > 200) return load(true);
    const answers = await rpcBatch(ids.map((id) => ['jobs.get', { id }]));
    if (view.disposed) return;
    answers.forEach((a, i) => {
      if (a.error) {
        if (a.error.kind === 'not_found') remove(ids[i]);
      } else if (matchesFilters(a.result, filters)) {
        put(a.result, 'live');
      } else {
        remove(a.result.id);
      }
    });
    none.hidden = rows.size > 0;
  }, 250);
  view.subscribe({}, {
    onReady: () => {
      tableEl.dataset.live = 'true';
      return load(true);
    },
    onEvent: (ev) => {
      if (ev.kind !== 'status' || !ev.job_id || !ev.status) return;
      const row = rows.get(ev.job_id);
      if (row) {
        const cell = row.tr.querySelector('td.status');
        if (cell && cell.dataset.status !== ev.status) {
          setStatus(cell, ev.status);
          announce.textContent = `Job ${shortId(ev.job_id)} ${words(ev.status)}`;
        }
      } else if (filters.status && ev.status !== filters.status) {
        return;
      }
      stale.add(ev.job_id);
      flush();
    },
  });
  await load(true);
}

// ---------------------------------------------------------------- #/jobs/<id>

/** A job's log: pages of `jobs.logs`, then live chunks, in `seq` order without repeats. */
class LogTail {
  constructor(pre, id) {
    Object.assign(this, { pre, id, next: 0, attempt: null, held: [], busy: null, again: false });
  }

  append(chunks) {
    const pre = this.pre;
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 32;
    const frag = document.createDocumentFragment();
    for (const c of chunks) {
      if (c.seq < this.next) continue;
      if (this.attempt !== null && c.attempt !== this.attempt) {
        frag.append(h('span', { class: 'log-attempt' }, `── attempt ${c.attempt} ──\n`));
      }
      this.attempt = c.attempt;
      frag.append(h('span', { class: `log-${c.stream}` }, c.data));
      this.next = c.seq + 1;
    }
    pre.append(frag);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  /** Reads every chunk from `next` on; concurrent calls share one read. */
  catchUp() {
    if (this.busy) {
      this.again = true;
      return this.busy;
    }
    this.busy = (async () => {
      try {
        do {
          this.again = false;
          for (;;) {
            const page = await rpc('jobs.logs', { id: this.id, since_seq: this.next, limit: 1000 });
            this.append(page.chunks);
            this.next = Math.max(this.next, page.next_seq);
            if (page.eof || page.chunks.length < 1000) break;
          }
        } while (this.again);
      } finally {
        this.busy = null;
        const held = this.held.sort((a, b) => a.seq - b.seq);
        this.held = [];
        this.append(held);
      }
    })();
    return this.busy;
  }

  live(chunk) {
    if (this.busy) this.held.push(chunk);
    else if (chunk.seq === this.next) this.append([chunk]);
    else if (chunk.seq > this.next) {
      this.held.push(chunk); // something is missing before it: read it first
      this.catchUp().catch((e) => console.warn('jobhost:', e));
    }
  }
}

async function download(jobId, name, button, note) {
  button.disabled = true;
  note.textContent = `Downloading ${name}…`;
  try {
    const blob = await fetchArtifact(jobId, name);
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: name.split('/').pop() || 'artifact', hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    note.textContent = `Downloaded ${name} (${fmtBytes(blob.size)}).`;
  } catch (e) {
    note.textContent = `Download of ${name} failed: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

async function jobView(root, view, route) {
  const id = route.id;
  root.append(heading('Job ', mono(id)));
  let job;
  try {
    job = await rpc('jobs.get', { id });
  } catch (e) {
    root.append(viewError(e), h('p', {}, h('a', { href: '#/jobs' }, 'Back to jobs')));
    return;
  }
  if (view.disposed) return;

  const statusLine = h('p', { class: 'status-line', 'aria-live': 'polite' }, 'Status: ', statusEl(job.status, { id: 'job-status' }));
  const statusBadge = statusLine.querySelector('#job-status');
  const facts = h('dl', { class: 'facts' });
  const progress = h('div', { id: 'job-progress' });
  const timeline = h('ol', { class: 'timeline', id: 'job-timeline' });
  const problem = h('div', { id: 'job-error' });
  const attempts = h('div', { id: 'job-attempts' });
  const artifacts = h('div', { id: 'job-artifacts' });
  const note = h('p', { class: 'muted', role: 'status', id: 'download-note' });
  const actionMsg = h('span', { class: 'action-msg', role: 'status' });
  const cancel = h('button', { id: 'cancel-job', type: 'button', class: 'danger' }, 'Cancel job');
  const confirm = h('button', { id: 'confirm-cancel', type: 'button', class: 'danger', hidden: true }, 'Confirm cancel');
  const keep = h('button', { id: 'keep-job', type: 'button', hidden: true }, 'Keep it');
  const actions = h('div', { class: 'actions', id: 'job-actions' }, cancel, confirm, keep, actionMsg);
  const asking = (on) => { cancel.hidden = on; confirm.hidden = !on; keep.hidden = !on; };
  cancel.addEventListener('click', () => { asking(true); actionMsg.textContent = ''; confirm.focus(); });
  keep.addEventListener('click', () => { asking(false); cancel.focus(); });
  confirm.addEventListener('click', async () => {
    confirm.disabled = true;
    try {
      render(await rpc('jobs.cancel', { id }));
      actionMsg.textContent = 'Cancelled.';
    } catch (e) {
      actionMsg.textContent = `Not cancelled: ${e.message}`;
    } finally {
      confirm.disabled = false;
      asking(false);
    }
  });

  const pre = h('pre', { id: 'log', class: 'log', tabindex: '0', 'aria-label': 'Log output' });
  const legend = h('p', { class: 'legend muted' }, 'Streams: ',
    ['stdout', 'stderr', 'log', 'system'].map((s) => h('span', { class: `legend-item legend-${s}` }, s)));
  root.append(
    h('section', { class: 'card' }, statusLine, actions, progress, facts),
    card('Timeline', timeline, attempts),
    problem,
    card('Log', legend, pre),
    card('Artifacts', artifacts, note),
  );

  // Once the job has ended, its artifacts, attempts and last log chunks are read.
  let settled = !isLive(job.status);
  const logs = new LogTail(pre, id);
  const ended = () => Promise.all([loadArtifacts(), loadAttempts(), logs.catchUp()]).catch((e) => console.warn('jobhost:', e));

  function render(j) {
    job = j;
    setStatus(statusBadge, j.status);
    if (!settled && !isLive(j.status)) {
      settled = true;
      ended();
    }
    actions.hidden = !isLive(j.status);
    if (!isLive(j.status)) asking(false);
    renderProgress(j.progress);
    fill(facts,
      fact('Plugin', j.kind === 'container' ? `${j.plugin} (container)` : j.plugin),
      j.args?.length ? fact('Arguments', mono(j.args.join(' '))) : null,
      fact('Kind', j.kind),
      fact('Attempt', `${j.attempt} of ${j.max_attempts}`),
      j.exit_code !== null && j.exit_code !== undefined ? fact('Exit code', String(j.exit_code)) : null,
      fact('Limits', `${j.cpus} CPU · ${fmtNum(j.memory_mb)} MiB · ${fmtDuration(j.timeout_s * 1000)}`),
      j.gpus ? fact('GPUs', `${j.gpus}${j.gpu_type ? ` × ${j.gpu_type}` : ''}${j.gpu_devices?.length ? ` (devices ${j.gpu_devices.join(', ')})` : ''}`) : null,
      Object.keys(j.labels ?? {}).length ? fact('Labels', labelsEl(j.labels)) : null,
      j.requires?.length ? fact('Requires', j.requires.join(', ')) : null,
      j.worker_id ? fact('Worker', mono(j.worker_id)) : null,
      j.run_id ? fact('Workflow run', link(`#/runs/${encodeURIComponent(j.run_id)}`, shortId(j.run_id), j.run_id),
        ` step ${j.step ?? '?'} task ${j.task_index ?? '?'}`) : null,
      j.waiting ? fact('Waiting', j.waiting) : null,
      j.run_at ? fact('Held until', time(j.run_at)) : null,
    );
    const since = (a, b) => (a && b ? ` (${fmtDuration(Date.parse(b) - Date.parse(a))})` : '');
    fill(timeline,
      h('li', { class: 'done' }, h('strong', {}, 'Created '), time(j.created_at)),
      h('li', { class: j.started_at ? 'done' : '' }, h('strong', {}, 'Started '),
        j.started_at ? [time(j.started_at), since(j.created_at, j.started_at)] : 'not yet'),
      h('li', { class: j.completed_at ? 'done' : '' }, h('strong', {}, isLive(j.status) ? 'Ended ' : `${words(j.status)} `),
        j.completed_at ? [time(j.completed_at), since(j.started_at, j.completed_at)] : isLive(j.status) ? 'not yet' : ''),
    );
    problem.replaceChildren(...(j.error || j.detail ? [card('Error',
      j.error ? h('p', { class: 'error-text' }, j.error) : null,
      j.detail ? h('pre', { class: 'detail' }, j.detail) : null)] : []));
  }
  function renderProgress(p) {
    progress.replaceChildren(progressEl(p, job.kind === 'pull'));
  }
  async function loadAttempts() {
    try {
      const { attempts: list } = await rpc('jobs.attempts', { id });
      attempts.replaceChildren(...(list.length > 1 ? [h('h3', {}, 'Attempts'), table(
        ['#', 'Status', 'Exit', 'Started', 'Ended', 'Worker', 'Error'],
        list.map((a) => h('tr', {}, td(String(a.attempt)), td(statusEl(a.status)),
          td(a.exit_code ?? ''), td(time(a.started_at)), td(time(a.ended_at)),
          td(a.worker_id ? mono(shortId(a.worker_id), a.worker_id) : ''), td(a.error ?? ''))))] : []));
    } catch (e) {
      attempts.replaceChildren(errorBox(e));
    }
  }
  async function loadArtifacts() {
    try {
      const { artifacts: list } = await rpc('artifacts.list', { job_id: id });
      if (!list.length) {
        artifacts.replaceChildren(h('p', { class: 'muted' }, isLive(job.status) ? 'None yet: artifacts are recorded when the job ends.' : 'None.'));
        return;
      }
      artifacts.replaceChildren(table(['Name', 'Size', 'SHA-256', ''], list.map((a) => {
        const button = h('button', { type: 'button', 'data-artifact': a.name, 'aria-label': `Download ${a.name}` }, 'Download');
        button.addEventListener('click', () => download(id, a.name, button, note));
        return h('tr', {}, td(mono(a.name)), num(fmtBytes(a.size_bytes)),
          td(mono(a.sha256.slice(0, 12), a.sha256)), td(button));
      }), { id: 'artifacts-table' }));
    } catch (e) {
      artifacts.replaceChildren(errorBox(e));
    }
  }

  render(job);
  const refresh = coalesce(view, async () => {
    const j = await rpc('jobs.get', { id });
    if (!view.disposed) render(j);
  }, 100);
  view.subscribe({ id }, {
    onReady: () => {
      refresh();
      return logs.catchUp();
    },
    onEvent: (ev) => {
      if (ev.job_id !== id) return;
      if (ev.kind === 'log' && ev.log) logs.live(ev.log);
      else if (ev.kind === 'progress' && ev.progress) renderProgress(ev.progress);
      else if (ev.kind === 'status' && ev.status) {
        if (ev.status !== statusBadge.dataset.status) setStatus(statusBadge, ev.status);
        refresh();
      }
    },
  });
  try {
    await Promise.all([logs.catchUp(), loadArtifacts(), loadAttempts()]);
  } catch (e) {
    pre.before(errorBox(e));
  }
}

// ---------------------------------------------------------------- #/uploads

async function uploadsView(root, view) {
  root.append(heading('Uploads'));
  const row = (u) => h('tr', { 'data-upload-id': u.id },
    td(mono(shortId(u.id), u.id)), td(statusEl(u.state)), num(fmtNum(u.file_count)), num(fmtBytes(u.size_bytes)),
    td(u.job_id ? jobLink(u.job_id) : ''), td(u.state === 'consumed' ? '—' : time(u.expires_at)), td(time(u.created_at)));
  const list = table(['Upload', 'State', 'Files', 'Size', 'Job', 'Expires', 'Created'], [], { id: 'uploads-table' });
  const tbody = list.querySelector('tbody');
  const more = h('button', { id: 'uploads-more', type: 'button', hidden: true }, 'More');
  const errors = h('div');
  const none = empty('No uploads.');
  root.append(errors, list, none, more);
  let cursor = null;
  const load = async () => {
    more.disabled = true;
    try {
      const page = await rpc('uploads.list', cursor ? { limit: PAGE, cursor } : { limit: PAGE });
      if (view.disposed) return;
      tbody.append(...page.uploads.map(row));
      cursor = page.next_cursor ?? null;
      errors.replaceChildren();
    } catch (e) {
      errors.replaceChildren(viewError(e));
    } finally {
      more.hidden = !cursor;
      more.disabled = false;
      none.hidden = tbody.children.length > 0 || errors.children.length > 0;
    }
  };
  more.addEventListener('click', load);
  await load();
}

// ---------------------------------------------------------------- #/plugins

async function pluginsView(root) {
  root.append(heading('Plugins'));
  try {
    const { plugins } = await rpc('plugins.list', {});
    root.append(plugins.length ? table(['Name', 'Kind', 'Digest', 'Size', 'Installed', 'Grants'], plugins.map((p) =>
      h('tr', {}, td(h('strong', {}, p.name)), td(p.kind), td(mono(p.digest.slice(0, 19), p.digest)),
        num(fmtBytes(p.size_bytes)), td(time(p.installed_at)), td((p.grants ?? []).join(', ') || '—'))),
    { id: 'plugins-table' }) : empty('No plugins installed.'));
  } catch (e) {
    root.append(viewError(e));
  }
}

// ---------------------------------------------------------------- #/models

async function modelsView(root, view) {
  root.append(heading('Models'));
  const cache = h('div');
  const pulls = h('div');
  root.append(card('Cache', cache), card('Pulls', pulls));
  try {
    const { models } = await rpc('models.list', {});
    cache.append(models.length ? table(['Repository', 'Revision', 'Commit', 'Size', 'Path'], models.map((m) =>
      h('tr', {}, td(h('strong', {}, m.repo)), td(m.revision), td(mono(m.commit.slice(0, 12), m.commit)),
        num(fmtBytes(m.size)), td(mono(m.path)))), { id: 'models-table' })
      : empty('No models in the cache.'));
  } catch (e) {
    cache.append(errorBox(e));
  }

  const bars = new Map(); // job id → progress cell
  const pullRow = (j) => {
    const cell = h('td', { class: 'progress-cell' }, progressEl(j.progress, true));
    bars.set(j.id, cell);
    return h('tr', { 'data-job-id': j.id },
      td(jobLink(j.id)),
      td(j.input?.model ?? ''), td(statusEl(j.status)), cell,
      td(time(j.created_at)), td(j.error ?? ''));
  };
  const load = async () => {
    try {
      const { jobs } = await rpc('jobs.list', { plugin: 'model-pull', limit: PAGE });
      if (view.disposed) return;
      bars.clear();
      pulls.replaceChildren(jobs.length ? table(['Job', 'Model', 'Status', 'Progress', 'Created', 'Error'], jobs.map(pullRow), { id: 'pulls-table' })
        : empty('No pulls yet (jobhost pull ORG/NAME).'));
    } catch (e) {
      pulls.replaceChildren(errorBox(e));
    }
  };
  const reload = coalesce(view, load, 500);
  view.subscribe({}, {
    onReady: reload,
    onEvent: (ev) => {
      if (ev.kind === 'progress' && bars.has(ev.job_id)) bars.get(ev.job_id).replaceChildren(progressEl(ev.progress, true));
      else if (ev.kind === 'status' && (bars.has(ev.job_id) || ev.status === 'pending')) reload();
    },
  });
  await load();
}

// ---------------------------------------------------------------- #/workers

function usageBar(used, total, text) {
  return h('div', { class: 'progress' }, total > 0 ? h('progress', { max: total, value: Math.min(used, total), 'aria-label': text }) : null,
    h('span', { class: 'progress-text' }, text));
}

async function workersView(root, view) {
  root.append(heading('Workers'));
  const here = h('div');
  const nodes = h('div');
  const refresh = h('button', { type: 'button', id: 'workers-refresh' }, 'Refresh');
  root.append(h('div', { class: 'actions' }, refresh), card('This node', here), card('Nodes', nodes));
  const gpuList = (usage) => (usage?.length ? h('ul', { class: 'plain' }, usage.map((g) =>
    h('li', {}, usageBar(g.used, g.total, `${g.type}: ${g.used} of ${g.total} in use`)))) : '—');
  const load = async () => {
    refresh.disabled = true;
    const [usage, workers] = await Promise.allSettled([rpc('resources.usage', {}), rpc('workers.list', {})]);
    refresh.disabled = false;
    if (view.disposed) return;
    if (usage.status === 'fulfilled') {
      const u = usage.value;
      here.replaceChildren(h('dl', { class: 'facts' },
        fact('Running jobs', fmtNum(u.running_jobs)),
        fact('CPUs', usageBar(u.used_cpus, u.capacity.cpus, `${u.used_cpus} of ${u.capacity.cpus} declared`)),
        fact('Memory', usageBar(u.used_memory_mb, u.capacity.memory_mb, `${fmtBytes(u.used_memory_mb * 1048576)} of ${fmtBytes(u.capacity.memory_mb * 1048576)} declared`)),
        fact('GPUs', gpuList(u.gpus))));
    } else {
      here.replaceChildren(errorBox(usage.reason));
    }
    if (workers.status === 'fulfilled') {
      const list = workers.value.workers;
      nodes.replaceChildren(list.length ? table(['Node', 'Status', 'Labels', 'Jobs', 'CPUs', 'Memory', 'GPUs', 'Version', 'Last seen'], list.map((w) =>
        h('tr', { 'data-worker-id': w.id },
          td(h('strong', {}, w.name), h('br'), mono(shortId(w.id), w.id)), td(statusEl(w.status)),
          td(w.labels.length ? h('span', { class: 'labels' }, w.labels.map((l) => h('span', { class: 'label' }, l))) : '—'),
          num(`${fmtNum(w.running_jobs)} / ${fmtNum(w.concurrency)}`),
          td(usageBar(w.used_millicpus, w.millicpus, `${w.used_millicpus / 1000} of ${w.millicpus / 1000}`)),
          td(usageBar(w.used_memory_mb, w.memory_mb, `${fmtBytes(w.used_memory_mb * 1048576)} of ${fmtBytes(w.memory_mb * 1048576)}`)),
          td(gpuList(w.gpu_usage)), td(w.version), td(time(w.last_seen)))), { id: 'workers-table' })
        : empty('No nodes.'));
    } else {
      nodes.replaceChildren(errorBox(workers.reason));
    }
  };
  refresh.addEventListener('click', () => load());
  await load();
}

// ---------------------------------------------------------------- #/runs and #/runs/<id>

async function runsView(root, view) {
  root.append(heading('Workflow runs'));
  const box = h('div');
  root.append(box);
  const load = async () => {
    try {
      const { runs } = await rpc('runs.list', {});
      if (view.disposed) return;
      box.replaceChildren(runs.length ? table(['Run', 'Workflow', 'Status', 'Trigger', 'Created', 'Started', 'Ended', 'Error'], runs.map((r) =>
        h('tr', { 'data-run-id': r.id },
          td(link(`#/runs/${encodeURIComponent(r.id)}`, shortId(r.id), r.id)), td(r.workflow),
          td(statusEl(r.status)), td(r.triggered_by), td(time(r.created_at)),
          td(time(r.started_at)), td(time(r.ended_at)), td(r.error ?? ''))), { id: 'runs-table' })
        : empty('No runs yet.'));
    } catch (e) {
      box.replaceChildren(viewError(e));
    }
  };
  const reload = coalesce(view, load, 2000);
  view.subscribe({}, { onReady: reload, onEvent: (ev) => { if (ev.kind === 'status') reload(); } });
  await load();
}

const TASK_RANK = { failed: 0, running: 1, dispatched: 2, pending: 3, cancelled: 4, success: 5 };
const TASKS_SHOWN = 100;

async function runView(root, view, route) {
  const id = route.id;
  root.append(heading('Run ', mono(id)));
  let run;
  try {
    run = await rpc('runs.get', { id });
  } catch (e) {
    root.append(viewError(e), h('p', {}, h('a', { href: '#/runs' }, 'Back to runs')));
    return;
  }
  // The run's steps carry no `needs`; the workflow's definition gives the arrows.
  let workflow = null;
  try { workflow = await rpc('workflows.get', { name: run.workflow_id }); } catch { /* deleted, or not ours */ }
  if (view.disposed) return;

  const statusLine = h('p', { class: 'status-line', 'aria-live': 'polite' }, 'Status: ', statusEl(run.status, { id: 'run-status' }));
  const facts = h('dl', { class: 'facts' });
  const picture = h('div', { class: 'dag-box', id: 'run-dag' });
  const steps = h('div', { id: 'run-steps' });
  root.append(h('section', { class: 'card' }, statusLine, facts), card('Steps', picture), steps);

  function render(r) {
    run = r;
    setStatus(statusLine.querySelector('#run-status'), r.status);
    fill(facts,
      fact('Workflow', r.workflow), fact('Triggered by', r.triggered_by),
      fact('Created', time(r.created_at)), fact('Started', time(r.started_at)), fact('Ended', time(r.ended_at)),
      r.params && Object.keys(r.params).length ? fact('Params', mono(JSON.stringify(r.params))) : null,
      r.error ? fact('Error', h('span', { class: 'error-text' }, r.error)) : null);
    const defs = new Map((workflow?.steps ?? []).map((s) => [s.name, s]));
    const list = (r.steps ?? []).map((s) => ({
      ...s, needs: s.needs ?? defs.get(s.name)?.needs ?? [], total: defs.get(s.name)?.task_count ?? s.tasks.length,
    }));
    picture.replaceChildren(list.length ? dagChart(list, `Steps of run ${r.id}: ${list.map((s) => `${s.name} ${s.status}`).join(', ')}`) : h('p', { class: 'muted' }, 'No steps.'));
    steps.replaceChildren(...list.map((s) => {
      const tasks = [...s.tasks].sort((a, b) => (TASK_RANK[a.status] ?? 9) - (TASK_RANK[b.status] ?? 9) || a.index - b.index);
      const shown = tasks.slice(0, TASKS_SHOWN);
      return h('section', { class: 'card step', 'data-step': s.name },
        h('h2', {}, s.name, ' ', statusEl(s.status)),
        h('p', { class: 'muted' }, s.needs.length ? `Needs ${s.needs.join(', ')}. ` : '', `${fmtNum(s.tasks.length)} of ${fmtNum(s.total)} tasks started`,
          s.tasks.length ? `: ${countsText(countTasks(s.tasks))}.` : '.'),
        shown.length ? table(['Task', 'Status', 'Attempt', 'Job', 'Started', 'Ended', 'Error'], shown.map((t) =>
          h('tr', { 'data-job-id': t.job_id }, num(String(t.index)), td(statusEl(t.status)),
            num(String(t.attempt)), td(jobLink(t.job_id)),
            td(time(t.started_at)), td(time(t.completed_at)), td(t.error ?? '')))) : null,
        tasks.length > TASKS_SHOWN ? h('p', { class: 'muted' }, `Showing ${TASKS_SHOWN} of ${fmtNum(tasks.length)} tasks (failed and running first).`) : null);
    }));
  }
  render(run);

  // Live: while the run has not ended, any job's status change may be one of its
  // tasks (new tasks have ids we do not know yet), so read the run again, at most
  // once a second.
  const refresh = coalesce(view, async () => {
    const r = await rpc('runs.get', { id });
    if (!view.disposed) render(r);
  }, 1000);
  view.subscribe({}, {
    onReady: refresh,
    onEvent: (ev) => { if (ev.kind === 'status' && !RUN_ENDED.has(run.status)) refresh(); },
  });
}

// ---------------------------------------------------------------- not found

async function notFoundView(root) {
  root.append(heading('Not found'), errorBox({ kind: 'not_found', message: 'There is no such page.' }, { id: 'view-error' }),
    h('p', {}, h('a', { href: '#/jobs' }, 'Go to the jobs')));
}

/** Route name → view. */
export const VIEWS = {
  jobs: jobsView, job: jobView, uploads: uploadsView, plugins: pluginsView, models: modelsView,
  workers: workersView, runs: runsView, run: runView, 'not-found': notFoundView,
};
