// Outpost's service worker: keeps the app shell in a versioned cache so the app opens with no
// network, and waits for the user's go-ahead before a new version takes over.
//
// Rendered by the server (webapp/shell.py) with the content hash of every static file; any
// changed file changes this script, so the browser installs a new worker. A module worker
// (registered with type "module", js/pwa.js): it imports the store's queue and meta layers for
// Background Sync, and so opens the device's databases through js/idb.js like the page does.
//   the shell    this version's cached copy first: a network that accepts and never answers
//                must not hold the cold start (issue 14); a new version comes as a new worker
//   navigations  network first; the cached shell when the network fails, errs or is slow
//   assets       cache first (when the URL's ?v= is this version's hash, or has none)
//   /api/*, WebSocket, everything else   network only, never cached
import { listStores, openDB } from {{ (js_url ~ "/idb.js")|tojson }};
import { PLAIN } from {{ (js_url ~ "/codec.js")|tojson }};
import * as meta from {{ (js_url ~ "/meta.js")|tojson }};
import * as queue from {{ (js_url ~ "/queue.js")|tojson }};

const VERSION = {{ version|tojson }};
const CACHE_PREFIX = {{ cache_prefix|tojson }};
const CACHE = CACHE_PREFIX + VERSION;
const SHELL_URL = {{ shell_url|tojson }};
const HASH_LENGTH = {{ hash_length|tojson }};
/** @type {Array<{url: string, hash: string}>} */
const PRECACHE = {{ precache|tojson }};
const HASHES = new Map(PRECACHE.map((entry) => [entry.url, entry.hash]));
const NAVIGATION_TIMEOUT_MS = 3000; // a network slower than this gets the cached shell
const NETWORK_ONLY = ['/api', '/admin', '/healthz', '/sw.js'];
// Forms' client scripts: content-addressed (?v=<hash>), so a cached copy is always right. The
// app fills this cache when it takes the offline updates (js/formscripts.js); it outlives
// app versions (its name does not start with CACHE_PREFIX).
const SCRIPTS_PATH = '/scripts/';
const SCRIPT_CACHE = 'outpost-scripts';

self.addEventListener('install', (event) => {
  // No skipWaiting here: a new version waits until the page asks (see the message handler).
  event.waitUntil(precache());
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      const names = await caches.keys();
      await Promise.all(names.filter((n) => n.startsWith(CACHE_PREFIX) && n !== CACHE).map((n) => caches.delete(n)));
      await self.clients.claim();
    })(),
  );
});

self.addEventListener('message', (event) => {
  if (event.data && event.data.type === 'SKIP_WAITING') self.skipWaiting();
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (NETWORK_ONLY.some((p) => url.pathname === p || url.pathname.startsWith(p + '/'))) return;
  if (url.pathname.startsWith(SCRIPTS_PATH) && url.searchParams.has('v')) {
    event.respondWith(clientScript(request));
  } else if (request.mode === 'navigate') {
    event.respondWith(navigate(request));
  } else if (HASHES.has(url.pathname) && url.pathname !== SHELL_URL) {
    event.respondWith(asset(request, url));
  }
});

/** Fetch every file of this version (bypassing the HTTP cache), check its hash, store it under its plain URL. */
async function precache() {
  const cache = await caches.open(CACHE);
  try {
    await Promise.all(
      PRECACHE.map(async ({ url, hash }) => {
        const shell = url === SHELL_URL;
        const response = await fetch(shell ? url : `${url}?v=${hash}`, { cache: 'reload', credentials: 'same-origin' });
        if (!response.ok) throw new Error(`precache: ${url} answered ${response.status}`);
        // The shell page is rendered per request, so only static files are held to their hash.
        if (!shell && (await digest(response.clone())) !== hash) {
          throw new Error(`precache: ${url} changed on the server while this version installed`);
        }
        await cache.put(url, response);
      }),
    );
  } catch (err) {
    await caches.delete(CACHE); // a half-filled cache must never serve; the next update check retries
    throw err;
  }
}

/** The short content hash the server uses (SHA-256, first hex digits). */
async function digest(response) {
  const bytes = await crypto.subtle.digest('SHA-256', await response.arrayBuffer());
  const hex = Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, '0')).join('');
  return hex.slice(0, HASH_LENGTH);
}

/**
 * The shell page: this version's cached copy, without asking the network (the page it names
 * is this version's, and a newer one waits as a new worker). Other pages, and the shell before
 * it is cached: network first; the cached shell when the device is offline, the network fails,
 * errs (5xx) or is slow.
 */
async function navigate(request) {
  const shell = () => caches.open(CACHE).then((cache) => cache.match(SHELL_URL));
  if (self.navigator.onLine === false || new URL(request.url).pathname === SHELL_URL) {
    const cached = await shell();
    if (cached) return cached;
  }
  const network = fetch(request);
  try {
    const response = await withTimeout(network, NAVIGATION_TIMEOUT_MS);
    if (response.status < 500) return response;
    return (await shell()) || response;
  } catch (err) {
    network.catch(() => {}); // a late failure of the abandoned request is not an error
    const cached = await shell();
    if (cached) return cached;
    throw err;
  }
}

/** Cache first for this version's files; anything else from the network, the cache as last resort. */
async function asset(request, url) {
  const cache = await caches.open(CACHE);
  const wanted = url.searchParams.get('v');
  if (wanted === null || wanted === HASHES.get(url.pathname)) {
    const hit = await cache.match(url.pathname);
    if (hit) return hit;
  }
  try {
    return await fetch(request);
  } catch (err) {
    const hit = await cache.match(url.pathname); // another version's file beats none at all offline
    if (hit) return hit;
    throw err;
  }
}

/** A form's client script: the cached copy first, else the network (kept for next time). */
async function clientScript(request) {
  const cache = await caches.open(SCRIPT_CACHE);
  const hit = await cache.match(request.url);
  if (hit) return hit;
  const response = await fetch(request);
  if (response.ok) await cache.put(request.url, response.clone());
  return response;
}

function withTimeout(promise, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

// Background Sync: with no tab open, deliver each store's queued operations over HTTP. The
// worker never touches the device's records: when the app opens again it re-sends the same
// operations and the server's ledger answers with these first results, which empties the queue
// the usual way (nothing leaves the queue before its ack is stored on the device).
// A store encrypted under the app PIN (a "vault" row in its meta) is skipped: the worker has no
// key and nothing may read the queue while the app is locked (DESIGN.md §6); it drains when the
// user next unlocks the app.
self.addEventListener('sync', (event) => {
  if (event.tag === 'outpost-queue') event.waitUntil(deliverQueues());
});

async function deliverQueues() {
  // A visible app runs its own sync loop: just nudge it. A hidden or closing tab may be gone
  // before it syncs, so the worker delivers the queue itself.
  const visible = (await self.clients.matchAll({ type: 'window' })).filter((c) => c.visibilityState === 'visible');
  if (visible.length) {
    for (const client of visible) client.postMessage({ type: 'outpost-sync' });
    return;
  }
  for (const name of await listStores()) await deliverQueue(name);
}

async function deliverQueue(name) {
  const db = await openDB(name);
  try {
    if (await meta.wrapping(db)) return; // encrypted under the app PIN: not the worker's to read
    const [ops, device, csrf] = await Promise.all([
      queue.peek(db, PLAIN, 500),
      meta.get(db, PLAIN, 'device_id', null),
      meta.get(db, PLAIN, 'csrf', null),
    ]);
    if (!ops.length || !device || !csrf) return;
    const wire = ops.map(({ op_id, seq, kind, entity, id, base_version, changes, command, args }) =>
      command ? { op_id, seq, kind, entity, id, base_version, changes, command, args } : { op_id, seq, kind, entity, id, base_version, changes });
    const response = await fetch('/api/sync/push', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify({ device_id: device, ops: wire }),
    });
    if (response.status >= 500) throw new Error('The server failed; the browser retries the sync later.');
  } finally {
    db.close();
  }
}
