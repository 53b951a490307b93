// @ts-check
/**
 * The connection indicator in the top bar: always visible once someone is signed in, it says
 * whether the phone reaches the server (Online), works from the device alone (Offline), or is
 * exchanging changes right now (Syncing), with the number of changes still waiting to be sent.
 * Its accessible name is its words, e.g. "Offline · 3 pending". Tapping it opens Offline
 * Status (and tries the server again at once). It follows every sync status change at once
 * (not the screens' slower refresh).
 */

/**
 * @typedef {import("./sync.js").SyncStatus} SyncStatus
 * @typedef {"online"|"offline"|"syncing"|"connecting"|"signed-out"|"locked"} Shown
 */

/**
 * What the indicator shows for a sync status: its state and its words.
 * `connecting` is the first attempt only; once an attempt failed the phone is offline until a
 * session opens again (the loop keeps retrying underneath).
 * @param {SyncStatus} s
 * @returns {{state: Shown, text: string}}
 */
export function describe(s) {
  /** @type {Shown} */
  let state;
  if (s.connection === "signed-out") state = "signed-out";
  else if (s.connection === "locked") state = "locked";
  else if (s.connection === "online") state = s.phase === "idle" ? "online" : "syncing";
  else if (s.connection === "connecting" && !s.error) state = "connecting";
  else state = "offline";
  const word = { online: "Online", offline: "Offline", syncing: "Syncing", connecting: "Connecting", "signed-out": "Signed out", locked: "Locked" }[state];
  const text = s.pending > 0 ? `${word} · ${s.pending} pending` : word;
  return { state, text };
}

function button() {
  return /** @type {HTMLButtonElement|null} */ (document.getElementById("connection-button"));
}

/** Show a sync status in the top bar, or hide the indicator (nobody signed in). @param {SyncStatus|null} status */
export function showConnection(status) {
  const el = button();
  if (!el) return;
  if (!status) {
    el.hidden = true;
    return;
  }
  const { state, text } = describe(status);
  el.hidden = false;
  el.dataset.state = state;
  const label = /** @type {HTMLElement|null} */ (el.querySelector(".connection__text"));
  if (label && label.textContent !== text) {
    // " pending" is its own span: on the narrowest phones only the number shows, while the
    // accessible name stays the whole phrase.
    const [head, unit] = text.endsWith(" pending") ? [text.slice(0, -" pending".length), " pending"] : [text, ""];
    label.replaceChildren(head);
    if (unit) label.append(Object.assign(document.createElement("span"), { className: "connection__unit", textContent: unit }));
  }
  el.title = state === "offline" ? `${text}: changes are saved on this device and sync when the connection returns` : text;
}

/**
 * Wire the indicator: tapping it opens Offline Status, and tries the server again now rather
 * than at the end of the back-off (someone who looks is usually waiting for it).
 * @param {(hash: string) => void} navigate @param {() => void} retry
 */
export function initConnection(navigate, retry) {
  button()?.addEventListener("click", () => {
    retry();
    navigate("#/status");
  });
}
