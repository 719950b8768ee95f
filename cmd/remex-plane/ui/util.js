// DOM helpers, formatting and the state badges shared by every page.

// h('a.cls', {href: '#/x'}, 'text', child...) -> element. Text is never HTML.
export function h(tag, attrs, ...kids) {
  const [name, ...cls] = tag.split('.');
  const el = document.createElement(name);
  if (cls.length) el.className = cls.join(' ');
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ESC[c]);

// A glyph per state, so that no state is told by its colour alone.
export const GLYPH = {
  success: '✓', failed: '✗', upstream_failed: '⊘', up_for_retry: '↻', running: '▶',
  offered: '→', queued: '…', scheduled: '·', deferred: '⏸', skipped: '↷', removed: '–',
  none: '○', healthy: '✓', starting: '…', draining: '↘', maintenance: '⚙', lost: '✗',
  offline: '○', ok: '✓', degraded: '!', failing: '✗', paused: '⏸', active: '▶',
};

export const stateClass = (s) => `st st-${String(s || 'none').replace(/[^a-z_]/g, '')}`;

export function badge(state, label) {
  const s = state || 'none';
  return h(`span.${stateClass(s).replace(' ', '.')}`, {}, h('span.glyph', { 'aria-hidden': 'true' },
    GLYPH[s] || '•'), ` ${label || s}`);
}

export function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function fmtAge(iso, now = Date.now()) {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

export function fmtDuration(sec) {
  if (sec === null || sec === undefined) return '–';
  if (sec < 60) return `${sec.toFixed(sec < 10 ? 2 : 1)}s`;
  return `${Math.floor(sec / 60)}m${Math.round(sec % 60)}s`;
}

// Remembers the focused element of <main>; the returned function focuses its
// twin (same tag, id, label, link and text) once a refresh replaced it, so a
// keyboard user keeps their place while the page updates itself.
export function focusMemo() {
  const main = document.getElementById('main');
  const el = document.activeElement;
  if (!main || !el || el === main || !main.contains(el)) return () => {};
  const key = (x) => [x.tagName, x.id, x.getAttribute('aria-label'), x.getAttribute('href'),
    x.textContent].join('\u0000');
  const want = key(el);
  return () => {
    if (el.isConnected) return;
    const twin = [...main.querySelectorAll(el.tagName)].find((x) => key(x) === want);
    if (twin) twin.focus();
  };
}

// A button that runs an async action, disabled while it runs; errors go to msg.
export function action(label, fn, opts = {}) {
  const b = h('button', { type: 'button', class: opts.cls || null, 'aria-label': opts.aria || null },
    label);
  b.addEventListener('click', async () => {
    b.disabled = true;
    const restore = focusMemo();
    try {
      await fn();
    } catch (e) {
      flash(e.message || String(e), true);
    } finally {
      b.disabled = false;
      restore();
    }
  });
  return b;
}

export function flash(text, isError) {
  const el = document.getElementById('flash');
  if (!el) return;
  el.textContent = text;
  el.className = isError ? 'flash error' : 'flash';
  el.hidden = false;
  clearTimeout(flash.t);
  flash.t = setTimeout(() => { el.hidden = true; }, isError ? 8000 : 3000);
}

export function table(headers, rows, caption) {
  return h('table', {},
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows));
}
