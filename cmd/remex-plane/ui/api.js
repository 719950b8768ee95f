// The admin API as the UI uses it: same-origin fetch with the session cookie,
// the session's CSRF token on every request that is not a GET. The CSRF token
// lives in this module only (never in the page, a URL or storage).
let csrf = null;
let onLoggedOut = () => {};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function setLoggedOutHandler(fn) {
  onLoggedOut = fn;
}

async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') {
    if (csrf) headers['X-CSRF-Token'] = csrf;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  let data = null;
  const text = await res.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw new ApiError(res.status, 'bad_reply', `${method} ${path}: reply is not JSON`);
    }
  }
  if (!res.ok) {
    const err = (data && data.error) || {};
    if (res.status === 401 && path !== '/api/v1/ui/session') {
      csrf = null;
      onLoggedOut();
    }
    throw new ApiError(res.status, err.code || 'http', err.message || `HTTP ${res.status}`);
  }
  return data;
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body);
export const patch = (path, body) => call('PATCH', path, body);

export const enc = encodeURIComponent;

// Returns true when the browser holds a live session (and loads its CSRF token).
export async function resume() {
  try {
    const s = await call('GET', '/api/v1/ui/session');
    csrf = s.csrf_token;
    return true;
  } catch (e) {
    if (e.status === 401 || e.status === 409) return false;
    throw e;
  }
}

export async function login(token) {
  const s = await call('POST', '/api/v1/ui/session', { token });
  csrf = s.csrf_token;
}

export async function logout() {
  try {
    await call('DELETE', '/api/v1/ui/session');
  } finally {
    csrf = null;
  }
}
