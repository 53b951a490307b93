// @ts-check
/**
 * The server's HTTP API: JSON in and out, the session cookie, the CSRF header on writes.
 * Every call has a time limit: a network that accepts the connection and never answers must
 * not hold a screen (or the start-up) forever; a call that runs out of time is "offline".
 */

/** The longest a call may take, answer included, unless the caller says otherwise. */
export const CALL_TIMEOUT_MS = 30_000;
/** The longest the session check (`/api/auth/me`) may take, at start-up and in the sync loop. */
export const SESSION_TIMEOUT_MS = 5_000;

export class ApiError extends Error {
  /** @param {number} status @param {{code?: string, message?: string, field?: string, details?: any}} body */
  constructor(status, body) {
    super(body?.message || `The server answered ${status}.`);
    this.status = status;
    this.code = body?.code || "error";
    this.field = body?.field;
    this.details = body?.details;
  }
}

let csrfToken = "";

/** @param {string} token */
export function setCsrf(token) {
  csrfToken = token || "";
}

/**
 * One JSON call. Network failures, and calls with no whole answer within `timeoutMs`, reject
 * with ApiError status 0 ("offline").
 * @param {string} method @param {string} path @param {any} [body] @param {{timeoutMs?: number}} [options]
 */
export async function call(method, path, body, options = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const signal = AbortSignal.timeout(options.timeoutMs ?? CALL_TIMEOUT_MS);
  let resp;
  let text;
  try {
    resp = await fetch(path, { method, headers, credentials: "same-origin", signal, body: body === undefined ? undefined : JSON.stringify(body) });
    text = await resp.text(); // the body is under the same time limit
  } catch (err) {
    const late = /** @type {any} */ (err)?.name === "TimeoutError";
    throw new ApiError(0, { code: "offline", message: late ? "The server did not answer in time." : "The server cannot be reached." });
  }
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) throw new ApiError(resp.status, data?.error || {});
  return data;
}
