/**
 * `muster admin url` (issue 13): a one-time login link for the admin web page, minted over the admin
 * socket (so by whoever may use the socket; the page records its actions as that operator). The link
 * is printed alone on stdout and works once, for a few minutes (README "Admin web page").
 */
import { command } from './command.js';
import { out, printJson } from './output.js';

const adminUrl = command({
  name: 'admin url',
  describe: 'print a one-time login link for the admin web page (registrar started with --admin-listen)',
  scopes: ['admin', 'output'],
  examples: [['$0 admin url', 'open the printed link in a browser on this machine (or through ssh -L)']],
  async run(o) {
    const { AdminClient } = await import('../admin/client.js');
    const link = await new AdminClient(o['admin-socket']).request<{ url: string; expiresAt: string }>(
      'POST',
      '/v1/admin/web/login-link',
    );
    if (o.json) return printJson(link);
    out(link.url + '\n');
    process.stderr.write(`single use, valid until ${link.expiresAt}; do not share it\n`);
  },
});

export const adminCommands = [adminUrl];
