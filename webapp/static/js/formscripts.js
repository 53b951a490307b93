// @ts-check
/**
 * Client scripts on record forms: the JavaScript modules an administrator attached to an
 * entity's form (admin → Client scripts), run on load and on save.
 *
 * The customizations name each script by a same-origin, content-addressed URL
 * (`client_scripts: {entity: {onload|onsave: "/scripts/<org>/<entity>/<event>.js?v=<hash>"}}`),
 * loaded with `import()` — no inline script and no eval, so the Content-Security-Policy stays
 * strict. `prefetch` puts every script of a customizations document in the service worker's
 * script cache when the device takes its offline updates, so forms run them offline too.
 *
 * A script exports `default` (or `onLoad` / `onSave`), called with an execution context in the
 * reference's shape: `getFormContext()` (data.entity.getId/getEntityName, getAttribute(name)
 * .getValue/.setValue, ui.setFormNotification/clearFormNotification) and, on save,
 * `getEventArgs().preventDefault()`. A script that fails to load, throws or rejects is
 * reported on the form and never stops it.
 */

import { toast } from "./dom.js";

export const SCRIPT_CACHE = "outpost-scripts"; // the service worker serves /scripts/ from here
const HANDLER_TIMEOUT_MS = 5000; // a script that never settles does not hold a save forever

/** The URLs of every script a customizations document names. @param {any} doc @returns {string[]} */
export function scriptUrls(doc) {
  const out = [];
  for (const events of Object.values(doc?.client_scripts || {})) {
    for (const url of Object.values(/** @type {Record<string, string>} */ (events))) out.push(url);
  }
  return out;
}

/**
 * Keep every script of `doc` for offline use, and drop this organisation's scripts it no
 * longer names (replaced or removed); a failure is only logged. @param {any} doc
 */
export async function prefetch(doc) {
  const urls = scriptUrls(doc);
  if (!("caches" in self)) return;
  try {
    const cache = await caches.open(SCRIPT_CACHE);
    const wanted = new Set(urls.map((url) => new URL(url, location.href).href));
    const prefix = `/scripts/${doc?.organization}/`;
    for (const request of await cache.keys()) {
      if (new URL(request.url).pathname.startsWith(prefix) && !wanted.has(request.url)) await cache.delete(request);
    }
    await Promise.all(
      urls.map(async (url) => {
        if (await cache.match(url)) return;
        const response = await fetch(url, { credentials: "same-origin" });
        if (response.ok) await cache.put(url, response);
      }),
    );
  } catch (err) {
    console.warn("client scripts could not be cached for offline use", err);
  }
}

/**
 * @typedef {{entity: string, id: () => string, getValue: (name: string) => any, setValue: (name: string, value: any) => void,
 *   notify: (message: string, level: string, id: string) => void, clear: (id: string) => void}} FormHost
 */

/** @param {FormHost} host */
function formContext(host) {
  return {
    data: { entity: { getId: () => host.id(), getEntityName: () => host.entity } },
    getAttribute: (/** @type {string} */ name) => ({
      getName: () => name,
      getValue: () => host.getValue(name),
      setValue: (/** @type {any} */ value) => host.setValue(name, value),
    }),
    ui: {
      setFormNotification: (/** @type {string} */ message, /** @type {string} */ level = "INFO", /** @type {string} */ id = "") => {
        host.notify(String(message), String(level), String(id));
        return true;
      },
      clearFormNotification: (/** @type {string} */ id) => {
        host.clear(String(id));
        return true;
      },
    },
  };
}

/** @param {Promise<any>} promise */
function withTimeout(promise) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer within ${HANDLER_TIMEOUT_MS / 1000} s`)), HANDLER_TIMEOUT_MS)),
  ]);
}

/**
 * Run the script of one form event. Resolves `{prevented}` (onsave: the script asked not to
 * save); never rejects — a failure is shown on the form through `host.notify`.
 * @param {any} doc the customizations @param {"onload"|"onsave"} event @param {FormHost} host
 * @returns {Promise<{prevented: boolean, error: string|null}>}
 */
export async function runFormScript(doc, event, host) {
  const url = doc?.client_scripts?.[host.entity]?.[event];
  if (!url) return { prevented: false, error: null };
  let prevented = false;
  const label = event === "onload" ? "on load" : "on save";
  try {
    const module = await withTimeout(import(url));
    const handler = module.default || (event === "onload" ? module.onLoad : module.onSave);
    if (typeof handler !== "function") throw new Error(`the script exports no ${event === "onload" ? "onLoad" : "onSave"} function`);
    const executionContext = {
      getFormContext: () => formContext(host),
      getEventArgs: () => ({ preventDefault: () => (prevented = true), isDefaultPrevented: () => prevented }),
      getEventSource: () => null,
      getDepth: () => 0,
      event,
    };
    await withTimeout(Promise.resolve().then(() => handler(executionContext)));
    return { prevented, error: null };
  } catch (err) {
    const message = `The ${label} script of this form failed: ${/** @type {any} */ (err)?.message || err}`;
    console.error(message, err);
    host.notify(message, "ERROR", `script-${event}`);
    toast(message, "error"); // also outside the form, which a save may re-render at once
    return { prevented: false, error: message };
  }
}

/** Drop an organisation's cached scripts (wipe, reconfigure, sign-out with clearing). @param {string} org */
export async function forget(org) {
  if (!("caches" in self)) return;
  try {
    const cache = await caches.open(SCRIPT_CACHE);
    const prefix = `/scripts/${org}/`;
    for (const request of await cache.keys()) {
      if (new URL(request.url).pathname.startsWith(prefix)) await cache.delete(request);
    }
  } catch (err) {
    console.warn("cached client scripts could not be removed", err);
  }
}
