// @ts-check
/**
 * The app PIN (DESIGN.md §6): set it after signing in when the organisation requires one,
 * give it at every start ("Unlock"), or reset a forgotten one with the password, online.
 */
import { h, replace } from "../dom.js";
import { MIN_PIN_LENGTH } from "../vault.js";

/** @param {string} id @param {string} label @param {string} autocomplete @param {string} [hint] */
function field(id, label, autocomplete, hint) {
  const hintId = hint ? `${id}-hint` : null;
  return h(
    "div",
    { class: "field" },
    h("label", { for: id, class: "field__label" }, label),
    h("input", { id, name: id, type: "password", required: true, autocomplete, class: "input", minLength: id === "password" ? null : MIN_PIN_LENGTH, "aria-describedby": hintId }),
    hint ? h("p", { id: hintId, class: "field__hint" }, hint) : null,
  );
}

/** A message for what went wrong, in the user's terms. @param {any} err */
function message(err) {
  if (err?.status === 0) return "The server cannot be reached. This needs a connection: try again when you are online.";
  if (err?.status === 401) return "Your session has ended. Sign out, sign in again, then reset your PIN.";
  if (err?.status === 403 && err?.code === "invalid_credentials") return "The password is wrong.";
  return String(err?.message || err);
}

/**
 * A form whose submit runs `act` with its fields, showing errors in an alert.
 * @param {string} button @param {(data: FormData) => Promise<void>} act @param {...HTMLElement|null} fields
 */
function form(button, act, ...fields) {
  const error = h("p", { class: "field__error", role: "alert" });
  const submit = /** @type {HTMLButtonElement} */ (h("button", { type: "submit", class: "button button--primary button--block" }, button));
  return h(
    "form",
    {
      class: "form",
      onsubmit: async (/** @type {SubmitEvent} */ e) => {
        e.preventDefault();
        const target = /** @type {HTMLFormElement} */ (e.target);
        error.textContent = "";
        submit.disabled = true;
        try {
          await act(new FormData(target));
        } catch (err) {
          error.textContent = message(err);
          const pin = /** @type {HTMLInputElement|null} */ (target.querySelector("input"));
          pin?.select();
        } finally {
          submit.disabled = false;
        }
      },
    },
    ...fields,
    error,
    submit,
  );
}

/** Two PIN fields that must agree. @param {FormData} data */
function newPin(data) {
  const pin = String(data.get("new-pin") || "");
  if (pin.length < MIN_PIN_LENGTH) throw new Error(`The PIN needs at least ${MIN_PIN_LENGTH} digits or characters.`);
  if (pin !== String(data.get("confirm-pin") || "")) throw new Error("The two PINs are not the same.");
  return pin;
}

const NEW_PIN_HINT = `At least ${MIN_PIN_LENGTH} digits or characters. Outpost asks for it every time it starts.`;

/** @param {any} ctx */
function setScreen(ctx) {
  return h(
    "section",
    { class: "stack" },
    h("h1", null, "Set a PIN"),
    h("p", null, "Your organisation protects the data on this device with a PIN: the records and unsynced changes are encrypted, and only the PIN opens them."),
    form(
      "Set PIN",
      (data) => ctx.setPin(newPin(data)),
      field("new-pin", "New PIN", "new-password", NEW_PIN_HINT),
      field("confirm-pin", "Confirm PIN", "new-password"),
    ),
  );
}

/** Unlock, and "Forgot PIN?" which swaps in the reset form. @param {any} ctx @param {boolean} lockedOut */
function unlockScreen(ctx, lockedOut) {
  const section = h("section", { class: "stack" });
  const who = ctx.identity?.user.fullname || ctx.identity?.user.username || "";
  const show = (/** @type {HTMLElement[]} */ ...content) => {
    replace(section, ...content);
    /** @type {HTMLElement|null} */ (section.querySelector("input"))?.focus();
  };
  const showUnlock = () =>
    show(
      h("h1", null, "Unlock"),
      h("p", null, `Enter your PIN to open Outpost${who ? ` as ${who}` : ""}. Nothing syncs until you do.`),
      lockedOut
        ? h("p", { role: "alert", class: "field__error" }, "Too many wrong PINs: the key on this device was deleted. Connect to the internet and reset your PIN with your password.")
        : form(
            "Unlock",
            (data) =>
              ctx.unlock(String(data.get("pin") || "")).catch((/** @type {any} */ err) => {
                if (err?.left === 0 || err?.code === "reset_needed") ctx.render(); // the key is gone now: say so
                throw err;
              }),
            field("pin", "PIN", "current-password"),
          ),
      h("button", { type: "button", class: "button button--secondary button--block", onclick: () => show(...resetScreen(ctx, showUnlock)) }, "Forgot PIN?"),
    );
  showUnlock();
  return section;
}

/** @param {any} ctx @param {() => void} cancel */
function resetScreen(ctx, cancel) {
  return [
    h("h1", null, "Reset your PIN"),
    h("p", null, "Give your password and a new PIN. The server keeps a copy of this device's key for you; this needs a connection."),
    form(
      "Reset PIN",
      (data) => ctx.resetPin(String(data.get("password") || ""), newPin(data)),
      field("password", "Password", "current-password"),
      field("new-pin", "New PIN", "new-password", NEW_PIN_HINT),
      field("confirm-pin", "Confirm PIN", "new-password"),
    ),
    h("button", { type: "button", class: "button button--secondary button--block", onclick: cancel }, "Cancel"),
  ];
}

/** @param {any} ctx */
export async function render(ctx) {
  if (!ctx.store?.locked) return setScreen(ctx);
  const wrapping = await ctx.store.wrapping();
  return unlockScreen(ctx, !wrapping?.wrapped);
}
