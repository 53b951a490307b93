// @ts-check
/** The server's HTTP API: JSON in and out, the session cookie, the CSRF header on writes. */

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
 * One JSON call. Network failures reject with ApiError status 0 ("offline").
 * @param {string} method @param {string} path @param {any} [body]
 */
export async function call(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let resp;
  try {
    resp = await fetch(path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, { code: "offline", message: "The server cannot be reached." });
  }
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) throw new ApiError(resp.status, data?.error || {});
  return data;
}
