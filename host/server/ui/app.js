// app.js — the entry module: sign-in with an API token, the shell (navigation, the
// live-connection indicator, sign-out) and the hash router that mounts one view of
// views.js at a time, releasing the previous view's subscriptions and timers.
//
// The token is kept in sessionStorage (see api.js) and checked at sign-in with a call
// the server authenticates (`system.health`: a refused token is HTTP 401 on any
// path). Whenever the server later refuses it, the user is brought back here with
// the server's message.

import { token, rpc, onUnauthorized, Live } from './api.js';
import { VIEWS, parseRoute, errorBox, h } from './views.js';

const $ = (id) => document.getElementById(id);
let live = null;
let unmount = null;
let signedIn = false;
let shownRoute = null;

function showSignIn(message, kind = 'error') {
  signedIn = false;
  shownRoute = null;
  if (unmount) unmount();
  unmount = null;
  if (live) live.close();
  live = null;
  $('main').replaceChildren();
  $('shell').hidden = true;
  $('sign-in').hidden = false;
  const note = $('sign-in-message');
  note.textContent = message ?? '';
  note.className = `notice ${kind}`;
  note.hidden = !message;
  $('token').value = '';
  $('token').focus();
  document.title = 'Sign in · jobhost';
}

function setLiveState(state, retryMs) {
  const el = $('live-state');
  el.dataset.state = state;
  el.textContent = state === 'live' ? 'live' : state === 'offline' ? `offline, retrying in ${Math.round(retryMs / 1000)} s` : 'connecting…';
}

function startShell() {
  signedIn = true;
  $('sign-in').hidden = true;
  $('shell').hidden = false;
  live = new Live(setLiveState);
  rpc('system.health', {}).then((v) => { $('server-version').textContent = `jobhost ${v.version}`; }, () => {});
  route();
}

/** Mounts the view of the current hash, after releasing the previous one. */
function route() {
  if (!signedIn) return;
  if (unmount) unmount();
  const r = parseRoute(location.hash);
  const nav = r.name === 'job' ? 'jobs' : r.name === 'run' ? 'runs' : r.name;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.route === nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  setMenu(false);

  const disposers = [];
  const view = {
    disposed: false,
    onDispose: (fn) => disposers.push(fn),
    every: (fn, ms) => {
      const t = setInterval(() => { if (!view.disposed) fn(); }, ms);
      disposers.push(() => clearInterval(t));
    },
    subscribe: (params, handlers) => {
      if (!view.disposed && live) disposers.push(live.subscribe(params, handlers));
    },
  };
  unmount = () => {
    view.disposed = true;
    for (const fn of disposers.splice(0)) {
      try { fn(); } catch (e) { console.warn('jobhost:', e); }
    }
  };

  const root = h('div', { class: 'view', 'data-view': r.name });
  $('main').replaceChildren(root);
  const render = VIEWS[r.name] ?? VIEWS['not-found'];
  let done;
  try {
    done = render(root, view, r);
  } catch (e) {
    done = Promise.reject(e);
  }
  const title = root.querySelector('h1');
  document.title = `${title ? title.textContent : 'jobhost'} · jobhost`;
  // Moving to another page puts the focus on its heading (not a filter change).
  const where = `${r.name}/${r.id ?? ''}`;
  if (shownRoute !== null && shownRoute !== where && title) title.focus({ preventScroll: false });
  shownRoute = where;
  Promise.resolve(done).catch((e) => {
    if (!view.disposed && signedIn) root.append(errorBox(e));
  });
}

function setMenu(open) {
  $('menu-toggle').setAttribute('aria-expanded', String(open));
  $('nav').classList.toggle('open', open);
}

onUnauthorized((e) => {
  if (!signedIn) return; // the sign-in form reports it itself
  token.clear();
  showSignIn(`The server refused your token: ${e.message}. Sign in again.`);
});

$('sign-in-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const value = $('token').value.trim();
  const button = $('sign-in-button');
  if (!/^[\x21-\x7e]+$/.test(value)) {
    showSignIn(value ? 'A token is printable ASCII without spaces (jh_…).' : 'Enter an API token.');
    return;
  }
  button.disabled = true;
  token.set(value);
  try {
    await rpc('system.health', {});
  } catch (err) {
    token.clear();
    showSignIn(err.kind === 'unauthorized' ? `That token was refused: ${err.message}` : `Could not sign in: ${err.message}`);
    return;
  } finally {
    button.disabled = false;
  }
  $('token').value = '';
  if (!location.hash) history.replaceState(null, '', '#/jobs');
  startShell();
});

$('sign-out').addEventListener('click', () => {
  token.clear();
  showSignIn('Signed out.', 'info');
});

$('menu-toggle').addEventListener('click', () => setMenu($('menu-toggle').getAttribute('aria-expanded') !== 'true'));

$('skip-link').addEventListener('click', (e) => {
  e.preventDefault();
  $('main').focus();
});

window.addEventListener('hashchange', route);

if (token.get()) startShell();
else showSignIn();
