/**
 * `npm run demo`: the LAN demo (src/demo/lan-demo.ts) where this machine can build network
 * namespaces (root, iproute2); otherwise, saying why, the loopback demo (src/demo/http-demo.ts), which
 * needs neither but cannot show mDNS: that must never touch the machine's real interfaces.
 */
import { netnsAvailable } from '../testnet/netlan.js';

const a = netnsAvailable();
if (a.ok) {
  const { runLanDemoMain } = await import('./lan-demo.js');
  await runLanDemoMain();
} else {
  const why = a.reason.split(';')[0];
  console.log(`${why}: running the loopback demo instead (mDNS needs network namespaces)\n`);
  await import('./http-demo.js');
}
