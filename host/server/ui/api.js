// api.js — how the dashboard talks to the jobhost server.
//
// - `rpc` / `rpcBatch`: JSON-RPC 2.0 over `POST /` (same origin) with
//   `Authorization: Bearer <token>`; errors become `RpcError` carrying the server's
//   `message` and `data.kind`. A refused token (HTTP 401 or kind `unauthorized`) also
//   calls the handler set with `onUnauthorized`, which signs the user out.
// - `fetchArtifact`: `GET /jobs/<id>/artifacts/<name>` with the same header, as a Blob.
// - `Live`: one shared WebSocket for `jobs.subscribe`. A browser cannot set headers on
//   a WebSocket, so each connection first asks `tokens.ticket` for a one-time ticket
//   and opens `ws(s)://<host>/?ticket=…`. When the socket closes it reconnects (new
//   ticket, backing off 1 s, 2 s, … 10 s) and subscribes again; every (re)subscription
//   and every `lagged` event calls the subscriber's `onReady`, which refetches, so no
//   event missed in between is lost.
//
// The token lives in sessionStorage under `jobhost.token` only: never in a URL, a
// cookie or localStorage.

const TOKEN_KEY = 'jobhost.token';

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** An error the server answered (or a transport failure), with its stable kind. */
export class RpcError extends Error {
  constructor(message, { code = 0, kind = 'internal', status = 0, field = null } = {}) {
    super(message);
    this.name = 'RpcError';
    Object.assign(this, { code, kind, status, field });
  }
}

const KIND_OF_STATUS = {
  400: 'invalid_params', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found',
  409: 'conflict', 413: 'limit_exceeded', 429: 'limit_exceeded', 503: 'unavailable',
};

let unauthorized = () => {};
/** Sets what happens when the server refuses the token. */
export function onUnauthorized(fn) { unauthorized = fn; }

/** An RpcError from a JSON-RPC error object (or an HTTP status without one). */
export function toError(err, status = 0) {
  const data = err && typeof err.data === 'object' && err.data !== null ? err.data : {};
  const kind = data.kind || KIND_OF_STATUS[status] || 'internal';
  const message = err?.message || (status ? `the server answered HTTP ${status}` : 'the server gave no answer');
  const e = new RpcError(message, { code: err?.code ?? 0, kind, status, field: data.field ?? null });
  if (kind === 'unauthorized') unauthorized(e);
  return e;
}

function authHeaders(extra = {}) {
  const t = token.get();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

async function send(url, init) {
  try {
    return await fetch(url, { cache: 'no-store', credentials: 'omit', ...init });
  } catch (e) {
    throw new RpcError(`the server could not be reached (${e.message})`, { kind: 'unavailable' });
  }
}

let nextId = 1;

/** Runs a subscriber's callback so that its failure (thrown or rejected) is only logged. */
function safely(fn, ...args) {
  try {
    const r = fn(...args);
    if (r && typeof r.catch === 'function') r.catch((e) => console.warn('jobhost:', e));
  } catch (e) {
    console.warn('jobhost:', e);
  }
}

async function post(body) {
  const resp = await send(new URL('/', location.href), {
    method: 'POST',
    headers: authHeaders({ 'Content-Type': 'application/json', Accept: 'application/json' }),
    body: JSON.stringify(body),
  });
  let json = null;
  try { json = await resp.json(); } catch { /* not JSON: judged by the status below */ }
  if (json === null || typeof json !== 'object') throw toError(null, resp.status || 500);
  // A refusal before any method ran (401, 413, …) is one error object, even for a batch.
  if (!Array.isArray(json) && json.error && (json.id === null || json.id === undefined || !resp.ok)) {
    throw toError(json.error, resp.status);
  }
  return json;
}

/** Calls one method; resolves with its result or rejects with an RpcError. */
export async function rpc(method, params = {}) {
  const id = nextId++;
  const json = await post({ jsonrpc: '2.0', id, method, params });
  if (Array.isArray(json)) throw new RpcError('the server answered a single call with a batch');
  if (json.error) throw toError(json.error);
  return json.result;
}

/** Calls several methods in one batch: `[[method, params], …]` → `[{result} | {error}]`. */
export async function rpcBatch(calls) {
  if (calls.length === 0) return [];
  const body = calls.map(([method, params]) => ({ jsonrpc: '2.0', id: nextId++, method, params: params ?? {} }));
  const json = await post(body);
  if (!Array.isArray(json)) throw toError(json.error);
  const byId = new Map(json.map((r) => [r.id, r]));
  return body.map(({ id }) => {
    const r = byId.get(id);
    return r && 'result' in r ? { result: r.result } : { error: toError(r?.error) };
  });
}

/** The URL path of an artifact, each part of its name percent-encoded. */
export function artifactPath(jobId, name) {
  return `/jobs/${encodeURIComponent(jobId)}/artifacts/${name.split('/').map(encodeURIComponent).join('/')}`;
}

/** An artifact's bytes, fetched with the bearer header. */
export async function fetchArtifact(jobId, name) {
  const resp = await send(new URL(artifactPath(jobId, name), location.href), { headers: authHeaders() });
  if (!resp.ok) {
    let body = null;
    try { body = await resp.json(); } catch { /* no JSON error */ }
    throw toError(body?.error, resp.status);
  }
  return resp.blob();
}

/** The shared WebSocket of live job events; see the header comment. */
export class Live {
  /** `onState(state, detail)`: `connecting`, `live` or `offline` (retrying in `detail` ms). */
  constructor(onState = () => {}) {
    Object.assign(this, { onState, subs: new Set(), byId: new Map(), calls: new Map() });
    this.ws = null;
    this.closed = false;
    this.delay = 1000;
    this.timer = null;
    this.seq = 1;
    this.connect();
  }

  /**
   * Subscribes to `jobs.subscribe` with `params` (`{}`: all the caller's jobs; `{id}`:
   * one job). `onEvent(JobEvent)` for each event, `onReady()` once subscribed (again
   * after a reconnect or a `lagged` event: refetch then), `onError(RpcError)` when the
   * server refuses it. Returns the function that unsubscribes.
   */
  subscribe(params, { onEvent = () => {}, onReady = () => {}, onError = () => {} }) {
    const sub = { params, onEvent, onReady, onError, id: null, dead: false, refused: false };
    this.subs.add(sub);
    if (this.ws?.readyState === WebSocket.OPEN) this.start(sub);
    return () => {
      sub.dead = true;
      this.subs.delete(sub);
      if (sub.id !== null) {
        this.byId.delete(String(sub.id));
        this.call('jobs.unsubscribe', [sub.id]).catch(() => {});
      }
    };
  }

  /** Closes the socket for good (sign-out). */
  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.subs.clear();
    this.byId.clear();
    const ws = this.ws;
    this.ws = null;
    // Closing a socket still connecting makes the browser log an error: close it once open.
    if (ws?.readyState === WebSocket.CONNECTING) ws.onopen = () => ws.close(1000, 'signed out');
    else if (ws) ws.close(1000, 'signed out');
  }

  async connect() {
    if (this.closed) return;
    safely(this.onState, 'connecting');
    let ticket;
    try {
      ({ ticket } = await rpc('tokens.ticket', {}));
    } catch (e) {
      if (!this.closed && e.kind !== 'unauthorized') this.retry();
      return;
    }
    if (this.closed) return;
    const url = new URL(`/?ticket=${encodeURIComponent(ticket)}`, location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.delay = 1000;
      safely(this.onState, 'live');
      for (const sub of this.subs) if (!sub.refused) this.start(sub);
    };
    ws.onmessage = (m) => { if (this.ws === ws) this.receive(m.data); };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.byId.clear();
      for (const sub of this.subs) sub.id = null;
      const calls = [...this.calls.values()];
      this.calls.clear();
      for (const c of calls) c.reject(new RpcError('the live connection closed', { kind: 'unavailable' }));
      if (!this.closed) this.retry();
    };
  }

  retry() {
    safely(this.onState, 'offline', this.delay);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, 10000);
  }

  call(method, params) {
    return new Promise((resolve, reject) => {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject(new RpcError('the live connection is not open', { kind: 'unavailable' }));
        return;
      }
      const id = this.seq++;
      this.calls.set(id, { resolve, reject });
      ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  async start(sub) {
    let id;
    try {
      id = await this.call('jobs.subscribe', sub.params);
    } catch (e) {
      // A closed socket subscribes again when it reconnects; a refusal is final.
      if (e.kind !== 'unavailable' && !sub.dead) {
        sub.refused = true;
        safely(sub.onError, e);
      }
      return;
    }
    if (sub.dead) {
      this.call('jobs.unsubscribe', [id]).catch(() => {});
      return;
    }
    sub.id = id;
    this.byId.set(String(id), sub);
    safely(sub.onReady);
  }

  receive(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    if (msg.id !== undefined && msg.id !== null && this.calls.has(msg.id)) {
      const c = this.calls.get(msg.id);
      this.calls.delete(msg.id);
      if (msg.error) c.reject(toError(msg.error));
      else c.resolve(msg.result);
      return;
    }
    if (msg.method !== 'jobs.event' || !msg.params) return;
    const sub = this.byId.get(String(msg.params.subscription));
    const ev = msg.params.result;
    if (!sub || sub.dead || !ev) return;
    if (ev.kind === 'lagged') safely(sub.onReady);
    else safely(sub.onEvent, ev);
  }
}
