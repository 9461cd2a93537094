/* global fetch */
// The page's JSON API (src/registrar/admin-web.ts): the session cookie rides along by itself; every
// change also carries the session's CSRF token in a header.
let csrf = '';

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error;
  }
}

async function call(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET') headers['x-muster-csrf'] = csrf;
  const res = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const parsed = await res.json().catch(() => undefined);
  if (!res.ok) throw new ApiError(res.status, parsed);
  return parsed;
}

export async function session() {
  const s = await call('GET', '/api/session');
  csrf = s.csrf;
  return s;
}

export const get = (path) => call('GET', path);
export const post = (path, body = {}) => call('POST', path, body);
export const del = (path) => call('DELETE', path);
