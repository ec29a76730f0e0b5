// charts.js — the dashboard's two pictures, drawn as SVG: the last hour's throughput
// and queue (`statsChart`, from `jobs.stats`) and a workflow run's DAG (`dagChart`,
// placed by `layoutDag`). Sizes and positions are SVG attributes and colours come
// from style.css through classes, so nothing needs an inline style (the CSP forbids
// them). The layout and scale helpers are pure, so they can be tested without a DOM.

const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}

const num = (n) => Number(n ?? 0).toLocaleString();

/** A round upper bound for an axis: the first of 1, 2, 5 × 10^k that is at least `max`. */
export function niceMax(max) {
  if (!(max > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 5, 10]) if (m * p >= max - 1e-9) return m * p;
  return 10 * p;
}

/** The one-sentence account of `jobs.stats` (also what a screen reader gets). */
export function statsSummary(stats) {
  const minutes = stats?.minutes ?? [];
  const sum = (k) => minutes.reduce((a, m) => a + (Number(m[k]) || 0), 0);
  return `${num(sum('ended'))} jobs ended in the last hour (${num(sum('submitted'))} submitted); ` +
    `queue ${num(stats?.queue_depth)}; running ${num(stats?.running)}.`;
}

function hhmm(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/**
 * Bars of jobs ended per minute (left axis) and a line of the queue depth (right
 * axis), oldest minute first. The SVG is decorative (`aria-hidden`): the page shows
 * `statsSummary` as text next to it.
 */
export function statsChart(stats) {
  const minutes = stats?.minutes ?? [];
  const W = 960, H = 190, L = 44, R = 44, T = 10, B = 24;
  const pw = W - L - R, ph = H - T - B;
  const slot = pw / Math.max(minutes.length, 1);
  const barW = Math.max(1, slot * 0.7);
  const endedMax = niceMax(Math.max(0, ...minutes.map((m) => Number(m.ended) || 0)));
  const queueMax = niceMax(Math.max(0, ...minutes.map((m) => Number(m.queue_depth) || 0)));
  const y = (v, max) => T + ph - (ph * Math.min(v, max)) / max;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart stats-chart', 'aria-hidden': 'true', focusable: 'false' });

  for (const f of [0, 0.5, 1]) {
    const gy = T + ph - ph * f;
    root.append(svg('line', { x1: L, x2: W - R, y1: gy, y2: gy, class: f === 0 ? 'axis' : 'grid' }));
    root.append(svg('text', { x: L - 6, y: gy + 4, 'text-anchor': 'end', class: 'tick tick-ended' }, num(endedMax * f)));
    root.append(svg('text', { x: W - R + 6, y: gy + 4, 'text-anchor': 'start', class: 'tick tick-queue' }, num(queueMax * f)));
  }
  minutes.forEach((m, i) => {
    const ended = Number(m.ended) || 0;
    const top = y(ended, endedMax);
    const title = `${hhmm(m.at)}: ${num(ended)} ended, ${num(m.started)} started, ${num(m.submitted)} submitted, queue ${num(m.queue_depth)}`;
    root.append(svg('rect', {
      x: (L + i * slot + (slot - barW) / 2).toFixed(1), y: top.toFixed(1),
      width: barW.toFixed(1), height: Math.max(0, T + ph - top).toFixed(1), class: 'bar',
    }, svg('title', {}, title)));
  });
  if (minutes.length > 0) {
    const points = minutes.map((m, i) => `${(L + (i + 0.5) * slot).toFixed(1)},${y(Number(m.queue_depth) || 0, queueMax).toFixed(1)}`);
    root.append(svg('polyline', { points: points.join(' '), class: 'line' }));
    const marks = [[0, 'start'], [Math.floor(minutes.length / 2), 'middle'], [minutes.length - 1, 'end']];
    for (const [i, anchor] of marks) {
      const x = anchor === 'start' ? L : anchor === 'end' ? W - R : L + (i + 0.5) * slot;
      root.append(svg('text', { x, y: H - 6, 'text-anchor': anchor, class: 'tick' }, hhmm(minutes[i].at)));
    }
  }
  return root;
}

// ---- the workflow DAG

export const BOX_W = 220, BOX_H = 92, GAP_X = 56, GAP_Y = 18, PAD = 12;

/**
 * Places steps (`{name, needs}`) in columns by depth (a step sits one column right of
 * the deepest step it needs), ordered in each column by the mean row of what they
 * need, each column centred vertically. Returns `{nodes: Map(name → {x, y, level}),
 * edges: [[from, to]], width, height}`. Unknown needs and cycles are ignored.
 */
export function layoutDag(steps) {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const level = new Map();
  const depth = (name, seen = new Set()) => {
    if (level.has(name)) return level.get(name);
    if (seen.has(name)) return 0;
    seen.add(name);
    const needs = (byName.get(name)?.needs ?? []).filter((n) => byName.has(n) && n !== name);
    const d = needs.length ? 1 + Math.max(...needs.map((n) => depth(n, seen))) : 0;
    level.set(name, d);
    return d;
  };
  steps.forEach((s) => depth(s.name));
  const columns = [];
  for (const s of steps) (columns[level.get(s.name)] ??= []).push(s.name);
  const row = new Map();
  columns.forEach((col, c) => {
    if (c > 0) {
      const mean = (n) => {
        const rows = (byName.get(n).needs ?? []).filter((p) => row.has(p)).map((p) => row.get(p));
        return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Infinity;
      };
      const keyed = col.map((n, i) => [mean(n), i, n]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      col.splice(0, col.length, ...keyed.map((k) => k[2]));
    }
    col.forEach((n, r) => row.set(n, r));
  });
  const tallest = Math.max(1, ...columns.map((c) => c.length));
  const height = PAD * 2 + tallest * BOX_H + (tallest - 1) * GAP_Y;
  const nodes = new Map();
  columns.forEach((col, c) => {
    const colH = col.length * BOX_H + (col.length - 1) * GAP_Y;
    const top = (height - colH) / 2;
    col.forEach((n, r) => nodes.set(n, { x: PAD + c * (BOX_W + GAP_X), y: top + r * (BOX_H + GAP_Y), level: c }));
  });
  const edges = [];
  for (const s of steps) for (const n of s.needs ?? []) if (nodes.has(n) && n !== s.name) edges.push([n, s.name]);
  const width = PAD * 2 + Math.max(1, columns.length) * BOX_W + Math.max(0, columns.length - 1) * GAP_X;
  return { nodes, edges, width, height };
}

/** Task statuses in the order a step's counts are told. */
export const TASK_ORDER = ['success', 'running', 'dispatched', 'pending', 'failed', 'cancelled'];

/** `{status: n}` of a step's tasks. */
export function countTasks(tasks) {
  const counts = {};
  for (const t of tasks ?? []) counts[t.status] = (counts[t.status] ?? 0) + 1;
  return counts;
}

/** `["48 success", "2 running"]`, in `TASK_ORDER` (then any other status). */
export function countsParts(counts) {
  const order = [...TASK_ORDER, ...Object.keys(counts).filter((s) => !TASK_ORDER.includes(s))];
  return order.filter((s) => counts[s]).map((s) => `${num(counts[s])} ${s}`);
}

/** "48 success / 2 running". */
export const countsText = (counts) => countsParts(counts).join(' / ');

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * The run's steps (`{name, status, tasks, needs, total}`) as boxes with arrows from
 * each step to those that need it. Each box shows the name, the step's status, tasks
 * ended of all, and the count of tasks per status.
 */
export function dagChart(steps, label) {
  const { nodes, edges, width, height } = layoutDag(steps);
  const root = svg('svg', {
    viewBox: `0 0 ${width} ${height}`, width, height, class: 'chart dag', role: 'img', 'aria-label': label,
  });
  root.append(svg('defs', {}, svg('marker', {
    id: 'dag-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse',
  }, svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow-head' }))));
  for (const [from, to] of edges) {
    const a = nodes.get(from), b = nodes.get(to);
    const x1 = a.x + BOX_W, y1 = a.y + BOX_H / 2, x2 = b.x - 2, y2 = b.y + BOX_H / 2;
    const mx = (x1 + x2) / 2;
    root.append(svg('path', { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: 'edge', 'marker-end': 'url(#dag-arrow)' }));
  }
  for (const s of steps) {
    const p = nodes.get(s.name);
    const counts = countTasks(s.tasks);
    const ended = (counts.success ?? 0) + (counts.failed ?? 0) + (counts.cancelled ?? 0);
    const total = Math.max(s.total ?? 0, s.tasks?.length ?? 0);
    const parts = countsParts(counts);
    const text = parts.join(' / ') || 'no tasks yet';
    const g = svg('g', { class: `dag-step status-${s.status}`, transform: `translate(${p.x},${p.y})`, 'data-step': s.name });
    g.append(
      svg('title', {}, `${s.name}: ${s.status}; ${text}`),
      svg('rect', { width: BOX_W, height: BOX_H, rx: 6, class: 'box' }),
      svg('rect', { width: 6, height: BOX_H, rx: 3, class: 'stripe' }),
      svg('text', { x: 14, y: 20, class: 'name' }, clip(s.name, 26)),
      svg('text', { x: 14, y: 38, class: 'state' }, `${s.status} · ${num(ended)}/${num(total)} ended`),
    );
    for (let i = 0; i < Math.max(1, parts.length); i += 2) {
      const line = parts.length ? parts.slice(i, i + 2).join(' / ') : text;
      g.append(svg('text', { x: 14, y: 56 + 14 * (i / 2), class: 'counts' }, clip(line, 36)));
    }
    root.append(g);
  }
  return root;
}
