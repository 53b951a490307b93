// @ts-check
/**
 * Service-worker registration and the "new version" banner.
 *
 * The worker (/sw.js, rendered by webapp/shell.py) precaches the app shell. A new version
 * installs in the background and then WAITS; this module shows a banner offering to reload,
 * and only when the user presses "Reload" tells the waiting worker to take over, then reloads
 * the page once it controls it. Independent of app.js: it runs even when the app fails.
 */

export const UPDATE_TEXT = 'A new version of Outpost is available';
export const UPDATE_BUTTON = 'Reload';
const BANNER_ID = 'update-banner';
const BANNER_REGION = 'banners';

/** True once the user asked for the update: only then may a controller change reload the page. */
let updateRequested = false;
let reloading = false;

/**
 * The service worker's registration, or null where there is none (no support, or the first
 * registration failed because the server could not be reached).
 * @type {Promise<ServiceWorkerRegistration | null>}
 */
export const registration = start();

/** @returns {Promise<ServiceWorkerRegistration | null>} */
async function start() {
  if (!('serviceWorker' in navigator)) return null;
  const container = navigator.serviceWorker;
  container.addEventListener('controllerchange', () => {
    if (!updateRequested || reloading) return; // the first install's clients.claim() lands here too
    reloading = true;
    window.location.reload();
  });
  let reg;
  try {
    reg = await container.register('/sw.js', { scope: '/', updateViaCache: 'none', type: 'module' });
  } catch (err) {
    // Offline, registering (which also checks for an update) fails; the existing worker still serves.
    reg = (await container.getRegistration('/')) ?? null;
    if (!reg) {
      console.warn('Outpost: the service worker could not be registered', err);
      return null;
    }
  }
  watch(reg);
  return reg;
}

/**
 * Offer every new version that finishes installing while an older one controls the page, and
 * look for one again whenever the app returns to the foreground or the network comes back.
 * @param {ServiceWorkerRegistration} reg
 */
function watch(reg) {
  /** @param {ServiceWorker | null} worker */
  const track = (worker) => {
    if (!worker) return;
    const check = () => {
      // A new version waits only while ANOTHER worker controls the page. WebKit delivers the first
      // install's "installed" state change after clients.claim() has made that same worker the
      // controller, so "there is a controller" alone would offer an update that does not exist.
      const controller = navigator.serviceWorker.controller;
      if (worker.state === 'installed' && controller && controller !== worker && reg.waiting === worker) offerUpdate(reg);
    };
    worker.addEventListener('statechange', check);
    check();
  };
  track(reg.waiting);
  track(reg.installing);
  reg.addEventListener('updatefound', () => track(reg.installing));

  const lookForUpdate = () => {
    reg.update().catch(() => {}); // offline or server down: try again next time
  };
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') lookForUpdate();
  });
  window.addEventListener('online', lookForUpdate);
}

/**
 * Show the banner (once): "A new version of Outpost is available" with a "Reload" button.
 * @param {ServiceWorkerRegistration} reg
 */
function offerUpdate(reg) {
  if (document.getElementById(BANNER_ID)) return;
  const banner = document.createElement('div');
  banner.id = BANNER_ID;
  banner.className = 'banner banner--info';
  const text = document.createElement('p');
  text.className = 'banner__text';
  text.textContent = UPDATE_TEXT;
  const actions = document.createElement('div');
  actions.className = 'banner__actions';
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'button button--primary';
  button.textContent = UPDATE_BUTTON;
  button.addEventListener('click', () => {
    const waiting = reg.waiting;
    if (!waiting) {
      window.location.reload(); // it took over meanwhile (another tab accepted it)
      return;
    }
    updateRequested = true;
    button.disabled = true;
    waiting.postMessage({ type: 'SKIP_WAITING' });
  });
  actions.append(button);
  banner.append(text, actions);
  (document.getElementById(BANNER_REGION) ?? document.body).append(banner);
}
