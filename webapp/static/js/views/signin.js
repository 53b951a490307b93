// @ts-check
/** Sign-in: organisation, username, password. */
import { h } from "../dom.js";
import { INSECURE_TEXT, secure } from "../insecure.js";

/** @param {any} ctx */
export function render(ctx) {
  const error = h("p", { class: "field__error", role: "alert" });
  const field = (/** @type {string} */ id, /** @type {string} */ label, /** @type {string} */ type, /** @type {string} */ autocomplete) =>
    h("div", { class: "field" }, h("label", { for: id, class: "field__label" }, label), h("input", { id, name: id, type, required: true, autocomplete, class: "input" }));
  const form = h(
    "form",
    {
      class: "form",
      onsubmit: async (/** @type {SubmitEvent} */ e) => {
        e.preventDefault();
        const data = new FormData(/** @type {HTMLFormElement} */ (e.target));
        error.textContent = "";
        submit.disabled = true;
        try {
          await ctx.signIn(String(data.get("org")).trim(), String(data.get("username")).trim(), String(data.get("password")));
        } catch (err) {
          const e2 = /** @type {any} */ (err);
          error.textContent = e2.status === 0 ? "The server cannot be reached. Sign in when you are back online." : e2.message;
        } finally {
          submit.disabled = false;
        }
      },
    },
    field("org", "Organisation", "text", "organization"),
    field("username", "Username", "text", "username"),
    field("password", "Password", "password", "current-password"),
    error,
  );
  const submit = /** @type {HTMLButtonElement} */ (h("button", { type: "submit", class: "button button--primary button--block" }, "Sign in"));
  form.appendChild(submit);
  return h("section", { class: "stack" }, h("h1", null, "Sign in to Outpost"), secure ? null : h("p", { class: "banner banner--warning" }, INSECURE_TEXT), form);
}
