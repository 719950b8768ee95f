// The remex web UI: a hash router over the pages, the login page, and the
// one live-refresh loop (a page's refresh function is called every
// REFRESH_MS while the tab is visible, one call at a time; a new page stops
// the previous page's loop).
import * as api from './api.js';
import { h, flash, focusMemo } from './util.js';
import { agentsPage, dagsPage } from './pages.js';
import { dagPage } from './dag.js';
import { runPage, tiPage } from './ti.js';

const REFRESH_MS = 2000;
let loop = { gen: 0 };

const routes = [
  [/^#\/agents$/, agentsPage, 'Agents'],
  [/^#\/dags$/, dagsPage, 'DAGs'],
  [/^#\/dags\/([^/]+)$/, dagPage, 'DAG'],
  [/^#\/dags\/([^/]+)\/runs\/([^/]+)$/, runPage, 'Run'],
  [/^#\/dags\/([^/]+)\/runs\/([^/]+)\/tasks\/([^/]+)$/, tiPage, 'Task instance'],
];

function header(loggedIn) {
  const top = document.getElementById('top');
  top.replaceChildren(
    h('a.skip', { href: '#main' }, 'Skip to content'),
    h('span.brand', {}, 'remex'),
    loggedIn
      ? h('nav', { 'aria-label': 'Main' },
        h('a', { href: '#/dags' }, 'DAGs'), h('a', { href: '#/agents' }, 'Agents'),
        h('button', { type: 'button', id: 'logout', onclick: doLogout }, 'Log out'))
      : null,
    h('span', { id: 'live', class: 'live', 'aria-live': 'polite' }),
    h('div', { id: 'flash', class: 'flash', role: 'status', hidden: true }));
}

async function doLogout() {
  stop();
  try {
    await api.logout();
  } catch (e) {
    // the cookie is cleared or expired either way
  }
  showLogin('Logged out.');
}

function stop() {
  loop.gen += 1;
}

function showLogin(note) {
  stop();
  header(false);
  document.title = 'Log in · remex';
  const main = document.getElementById('main');
  const input = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'current-password',
    required: true, spellcheck: 'false', 'aria-describedby': 'login-help',
  });
  const err = h('p', { id: 'login-error', class: 'error', role: 'alert' });
  const form = h('form', { id: 'login', class: 'card narrow' },
    h('h1', {}, 'Log in'),
    h('label', { for: 'token' }, 'Admin token'), input,
    h('p', { id: 'login-help', class: 'muted' },
      'The plane\'s admin token (admin_token_file, e.g. var/admin.token). It is exchanged for a '
      + 'session cookie and not kept by the page.'),
    h('button', { type: 'submit' }, 'Log in'), err);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    try {
      await api.login(input.value.trim());
      input.value = '';
      if (!location.hash || location.hash === '#/login') location.hash = '#/dags';
      render();
    } catch (e) {
      err.textContent = e.status === 401 ? 'Wrong admin token.' : `Login failed: ${e.message}`;
      input.select();
    }
  });
  main.replaceChildren(note ? h('p.muted', {}, note) : '', form);
  input.focus();
}

async function render() {
  stop();
  const gen = loop.gen;
  const hash = location.hash || '#/dags';
  const route = routes.find(([re]) => re.test(hash));
  header(true);
  const main = document.getElementById('main');
  if (!route) {
    location.hash = '#/dags';
    return;
  }
  const [re, page, title] = route;
  const args = hash.match(re).slice(1).map(decodeURIComponent);
  document.title = `${args.length ? args[args.length - 1] : title} · remex`;
  const view = h('div', { class: 'page', 'data-page': title.toLowerCase().replace(' ', '-') });
  main.replaceChildren(view);
  let refresh;
  try {
    refresh = await page(view, ...args);
  } catch (e) {
    if (gen === loop.gen) view.replaceChildren(h('p.error', { role: 'alert' }, e.message));
    return;
  }
  const tick = async () => {
    if (gen !== loop.gen) return;
    if (!document.hidden && refresh) {
      const restore = focusMemo();
      try {
        await refresh();
        restore();
        document.getElementById('live').textContent = `updated ${new Date().toLocaleTimeString()}`;
      } catch (e) {
        if (gen === loop.gen) flash(e.message, true);
      }
    }
    if (gen === loop.gen) setTimeout(tick, REFRESH_MS);
  };
  setTimeout(tick, REFRESH_MS);
}

api.setLoggedOutHandler(() => showLogin('Your session ended; log in again.'));
window.addEventListener('hashchange', () => render());

(async () => {
  try {
    if (await api.resume()) render();
    else showLogin();
  } catch (e) {
    showLogin(`The plane did not answer: ${e.message}`);
  }
})();
