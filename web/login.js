/* global document, location, history, fetch */
// The login link is http://HOST:PORT/login#TOKEN: the token is in the fragment, which the browser
// never sends to a server, a proxy or a Referer. It is spent here once for a session cookie.
const status = document.getElementById('login-status');
const token = location.hash.slice(1);
// Out of the address bar and the history before anything else.
history.replaceState(null, '', '/login');

async function login() {
  if (!token) {
    status.textContent = 'This link carries no login token.';
    return;
  }
  const res = await fetch('/api/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token }),
    credentials: 'same-origin',
  });
  if (res.ok) {
    location.replace('/');
    return;
  }
  const body = await res.json().catch(() => ({}));
  status.textContent = `Not logged in: ${body.message ?? `HTTP ${res.status}`}`;
  status.classList.add('error');
}

login().catch((err) => {
  status.textContent = `Not logged in: ${err.message}`;
  status.classList.add('error');
});
