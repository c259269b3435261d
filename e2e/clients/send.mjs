// Sends events through the unchanged official client libraries to a Trustloop
// server: node send.mjs <library: segment|rudder> <base url> <write key> <n> <prefix>
// Every message gets messageId `${prefix}-${library}-${type}-${i}` so the test can
// find each one in the store. Exits non-zero if the library reports any failure.
import { Analytics } from '@segment/analytics-node';
import RudderAnalytics from '@rudderstack/rudder-sdk-node';

const [lib, url, writeKey, nStr, prefix] = process.argv.slice(2);
const n = Number(nStr);
const id = (type, i) => `${prefix}-${lib}-${type}-${i}`;

function calls(client) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const userId = `${prefix}-user-${i % 7}`;
    out.push(['identify', { userId, messageId: id('identify', i), traits: { email: `${prefix}.${i}@example.com`, plan: 'pro' } }]);
    out.push(['track', { userId, messageId: id('track', i), event: 'Product Viewed', properties: { product_id: String(1000 + i), price: 9.99 } }]);
    out.push(['page', { anonymousId: `${prefix}-anon-${i}`, messageId: id('page', i), name: 'Home', properties: { path: '/' } }]);
  }
  return out;
}

if (lib === 'segment') {
  const failures = [];
  const analytics = new Analytics({ writeKey, host: url, flushAt: 20, flushInterval: 200, maxRetries: 3 });
  analytics.on('error', (err) => failures.push(String(err && err.reason ? err.reason : err)));
  for (const [type, msg] of calls()) {
    analytics[type](msg);
  }
  await analytics.closeAndFlush({ timeout: 30000 });
  if (failures.length) {
    console.error('segment failures:', failures.slice(0, 5));
    process.exit(1);
  }
} else if (lib === 'rudder') {
  const errors = [];
  const client = new RudderAnalytics(writeKey, {
    dataPlaneUrl: url, flushAt: 20, flushInterval: 200, maxInternalQueueSize: 100000,
    errorHandler: (err) => errors.push(String(err)),
  });
  const sent = calls().map(([type, msg]) => new Promise((resolve) => {
    client[type](msg, (err) => { if (err) errors.push(String(err)); resolve(); });
  }));
  await client.flush();
  await Promise.all(sent);
  if (errors.length) {
    console.error('rudder failures:', errors.slice(0, 5));
    process.exit(1);
  }
} else {
  console.error('usage: node send.mjs segment|rudder <url> <write key> <n> <prefix>');
  process.exit(2);
}
console.log(`${lib}: sent ${n * 3} messages`);
