// @ts-check
/** Tiny DOM helpers: build elements without innerHTML, so no markup is ever injected. */

/** The window event app.js fires once a new screen (not a redraw of the same one) is in place. */
export const NEW_SCREEN = "outpost:screen";

/**
 * Create an element. `attrs`: properties and attributes; `on*` functions become listeners;
 * `class`, `role`, `aria-*`, `data-*` and `for` are set as attributes.
 * @param {string} tag
 * @param {Record<string, any> | null} [attrs]
 * @param {...(Node|string|number|null|undefined|false|(Node|string)[])} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === "class" || key === "role" || key === "for" || key.startsWith("aria-") || key.startsWith("data-")) el.setAttribute(key, String(value));
    else if (key === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (key in el) /** @type {any} */ (el)[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** @param {Node} parent @param {any[]} children */
function append(parent, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. @param {Element} el @param {...any} children */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/**
 * Show a modal <dialog> and resolve with the value of the button pressed (or null on Escape).
 * @param {{title: string, body?: (Node|string)[], buttons: {label: string, value: string, kind?: string}[], label?: string}} spec
 * @returns {Promise<string|null>}
 */
export function ask(spec) {
  return new Promise((resolve) => {
    const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
    const dialog = /** @type {HTMLDialogElement} */ (
      h(
        "dialog",
        { class: "dialog", "aria-labelledby": titleId },
        h("h2", { id: titleId, class: "dialog__title" }, spec.title),
        h("div", { class: "dialog__body stack" }, ...(spec.body || []).map((b) => (typeof b === "string" ? h("p", null, b) : b))),
        h(
          "div",
          { class: "dialog__actions" },
          spec.buttons.map((b) =>
            h("button", { type: "button", class: `button button--${b.kind || "secondary"}`, onclick: () => close(b.value) }, b.label),
          ),
        ),
      )
    );
    const close = (/** @type {string|null} */ value) => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    dialog.addEventListener("cancel", (e) => {
      e.preventDefault();
      close(null);
    });
    (document.getElementById("dialogs") || document.body).appendChild(dialog);
    dialog.showModal();
  });
}

/** How long a toast shows, and how young one must be to follow the user to the next screen. */
const TOAST_MS = 5000;
const TOAST_CARRY_MS = 1000;

/**
 * A short message for screen readers and eyes. Toasts do not pile up: a new one replaces the one
 * of its kind still showing (at most one "info" and one "error"). One shown just before a move
 * to another screen ("Contact created." → the new contact) goes along; older ones clear when the
 * user leaves the screen. The stack sits above a form's Save/Delete bar, never over it (CSS).
 * @param {string} text @param {"info"|"error"} [kind]
 */
export function toast(text, kind = "info") {
  const region = document.getElementById("banners") || document.body.appendChild(h("div", { id: "banners", class: "banner-stack" }));
  for (const old of region.querySelectorAll(`[data-toast="${kind}"]`)) old.remove();
  const item = h(
    "div",
    { class: `banner banner--${kind === "error" ? "error" : "info"}`, role: kind === "error" ? "alert" : "status", "data-toast": kind, "data-shown": String(Date.now()) },
    h("p", { class: "banner__text" }, text),
  );
  region.appendChild(item);
  setTimeout(() => item.remove(), TOAST_MS);
}

/** Clear the toasts of the screen the user leaves (those shown in the last moment go along). */
export function clearToasts() {
  const now = Date.now();
  for (const item of document.querySelectorAll("#banners [data-toast]")) {
    if (item instanceof HTMLElement && now - Number(item.dataset.shown) > TOAST_CARRY_MS) item.remove();
  }
}

if (typeof window !== "undefined") window.addEventListener("hashchange", clearToasts);
