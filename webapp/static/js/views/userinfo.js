// @ts-check
/** User Information: who, which organisation, this device, storage, and the ways to clear it. */
import { h } from "../dom.js";

/** @param {number} bytes */
function size(bytes) {
  if (!bytes) return "0 B";
  const units = ["B", "KB", "MB", "GB", "TB"];
  const i = Math.min(units.length - 1, Math.floor(Math.log(bytes) / Math.log(1024)));
  return `${(bytes / 1024 ** i).toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** @param {any} ctx */
export async function render(ctx) {
  const estimate = navigator.storage?.estimate ? await navigator.storage.estimate() : null;
  let persisted = navigator.storage?.persisted ? await navigator.storage.persisted() : false;
  const deviceId = ctx.sync ? await ctx.sync.deviceId() : "—";
  const persistState = h("dd", null, persisted ? "Yes" : "No");
  return h(
    "section",
    { class: "stack" },
    h("h1", null, "User Information"),
    h(
      "dl",
      { class: "card facts" },
      h("dt", null, "User"), h("dd", null, ctx.identity?.user.fullname || ctx.identity?.user.username || "—"),
      h("dt", null, "Username"), h("dd", null, ctx.identity?.user.username || "—"),
      h("dt", null, "Organisation"), h("dd", null, ctx.identity?.org.friendly_name || ctx.identity?.org.name || "—"),
      h("dt", null, "Device id"), h("dd", { class: "mono" }, deviceId),
      h("dt", null, "Storage used"), h("dd", null, estimate ? `${size(estimate.usage || 0)} of ${size(estimate.quota || 0)}` : "Unknown"),
      h("dt", null, "Storage is persistent"), persistState,
    ),
    persisted || !navigator.storage?.persist
      ? null
      : h("button", { type: "button", class: "button button--secondary", onclick: async (/** @type {Event} */ e) => {
          // Firefox asks the user in a prompt of its own and answers only once they choose (never,
          // if they ignore it): say so meanwhile, rather than nothing.
          const button = /** @type {HTMLButtonElement} */ (e.currentTarget);
          button.disabled = true;
          persistState.textContent = "No (waiting for the browser's answer)";
          try {
            persisted = await navigator.storage.persist();
          } catch {
            persisted = false;
          }
          persistState.textContent = persisted ? "Yes" : "No (the browser declined)";
          button.disabled = persisted;
        } }, "Keep data on this device"),
    h("div", { class: "stack" },
      h("button", { type: "button", class: "button button--secondary button--block", onclick: () => ctx.reconfigure() }, "Reconfigure"),
      h("button", { type: "button", class: "button button--secondary button--block", onclick: () => ctx.signOut(false) }, "Sign out"),
      h("button", { type: "button", class: "button button--danger button--block", onclick: () => ctx.signOut(true) }, "Sign out and clear this device"),
      h("button", { type: "button", class: "button button--danger button--block", onclick: () => ctx.clearDevice() }, "Clear this device"),
    ),
    h("p", { class: "muted" }, "Reconfigure deletes this organisation's data, customizations and unsynced changes from this device; other organisations stay. Clear this device removes every organisation's data."),
  );
}
