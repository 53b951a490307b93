// @ts-check
/**
 * The business commands on screen: Qualify and Disqualify on a lead (form and list, one or
 * several leads), Convert to Case on an appointment, Close as Won / Close as Lost on an
 * opportunity (a dialog whose OK and Cancel work — offline too), and the sales process stage
 * bar with "Next stage". Buttons appear only where they apply: the entity's command set allows
 * them, the record is open (Qualify on an open lead, Close on an open opportunity, Convert on an
 * open appointment) and the server said the user may write it (`@Outpost.Access`). A list's
 * selection clears once its command ran.
 */
import { runCommand } from "../commands.js";
import { h, toast } from "../dom.js";
import { clearSelection } from "./list.js";

/** Whether the server said the user may write the record (PROTOCOL.md §1); a record made on the device is theirs. @param {any} record */
function writable(record) {
  const rights = record?.["@Outpost.Access"];
  return typeof rights !== "string" || rights.includes("w");
}

/**
 * The statuses a command's `statuscode` argument allows (its declared state's, from the
 * entity's metadata), for a reason picker. @param {any} ctx @param {any} meta @param {string} name
 * @returns {{value: number, label: string}[]}
 */
function statusChoices(ctx, meta, name) {
  const spec = (ctx.store.customizations?.commands?.commands?.[name]?.args || []).find((/** @type {any} */ a) => a.name === "statuscode");
  const status = meta.attributes.find((/** @type {any} */ a) => a.logical_name === "statuscode");
  return (status?.options || []).filter((/** @type {any} */ o) => spec && o.state === spec.state);
}

/**
 * A modal form; resolves with the form's values, or null on Cancel / Escape.
 * @param {string} title @param {HTMLElement[]} fields @param {string} okLabel
 * @returns {Promise<FormData|null>}
 */
function formDialog(title, fields, okLabel) {
  return new Promise((resolve) => {
    const titleId = `cmd-${Math.random().toString(36).slice(2)}`;
    const form = /** @type {HTMLFormElement} */ (h("form", { class: "form", method: "dialog" }, ...fields));
    const dialog = /** @type {HTMLDialogElement} */ (
      h(
        "dialog",
        { class: "dialog", "aria-labelledby": titleId },
        h("h2", { id: titleId, class: "dialog__title" }, title),
        h("div", { class: "dialog__body" }, form),
        h(
          "div",
          { class: "dialog__actions" },
          h("button", { type: "button", class: "button button--secondary", onclick: () => done(null) }, "Cancel"),
          h("button", { type: "button", class: "button button--primary", onclick: () => (form.reportValidity() ? done(new FormData(form)) : null) }, okLabel),
        ),
      )
    );
    const done = (/** @type {FormData|null} */ value) => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    dialog.addEventListener("cancel", (e) => {
      e.preventDefault();
      done(null);
    });
    (document.getElementById("dialogs") || document.body).appendChild(dialog);
    dialog.showModal();
  });
}

/** @param {string} name @param {string} label @param {boolean} checked */
function checkbox(name, label, checked) {
  return h("label", { class: "checkbox" }, h("input", { type: "checkbox", name, checked }), label);
}

/** @param {string} id @param {string} label @param {HTMLElement} control */
function field(id, label, control) {
  control.id = id;
  control.classList.add("input");
  return h("div", { class: "field" }, h("label", { for: id, class: "field__label" }, label), control);
}

/** Run a command and tell the user what happened. @param {any} ctx @param {any} name @param {any} args */
async function run(ctx, name, args) {
  try {
    const result = await runCommand(ctx, name, args);
    toast(ctx.data.local && ctx.sync.status.connection !== "online" ? "Done on this device; it syncs when you are back online." : "Done.");
    return result;
  } catch (err) {
    toast(`${/** @type {any} */ (err).message}`, "error");
    return null;
  }
}

/**
 * Ask how to qualify, then qualify each lead.
 * @param {any} ctx @param {string[]} leadIds @param {boolean} [go] open the new opportunity (one lead) or re-render
 */
export async function qualify(ctx, leadIds, go = true) {
  const values = await formDialog(
    leadIds.length === 1 ? "Qualify Lead" : `Qualify ${leadIds.length} Leads`,
    [
      h("p", null, "Create these records from the lead:"),
      checkbox("create_account", "Account", true),
      checkbox("create_contact", "Contact", true),
      checkbox("create_opportunity", "Opportunity", true),
    ],
    "Qualify",
  );
  if (!values) return null;
  let last = null;
  for (const leadid of leadIds) {
    last = await run(ctx, "qualify_lead", {
      leadid,
      create_account: values.has("create_account"),
      create_contact: values.has("create_contact"),
      create_opportunity: values.has("create_opportunity"),
    });
    if (!last) break;
  }
  if (!go) return last;
  if (last && leadIds.length === 1) {
    const opp = last.created.find((/** @type {any} */ c) => c.entity === "opportunity");
    ctx.navigate(opp ? `#/record/opportunity/${opp.id}` : `#/record/lead/${leadIds[0]}`);
  } else ctx.render();
  return last;
}

/** The commands for one record, as buttons (empty when none applies). @param {any} ctx @param {any} meta @param {any} record */
export function recordCommands(ctx, meta, record) {
  const allowed = (/** @type {string} */ c) => meta.offline_commands.includes(c);
  if (!writable(record)) return null; // every command changes the record
  const open = record.statecode === 0;
  const buttons = [];
  const button = (/** @type {string} */ label, /** @type {() => any} */ onclick, kind = "secondary") =>
    h("button", { type: "button", class: `button button--${kind}`, onclick }, label);
  if (meta.logical_name === "lead" && open) {
    if (allowed("qualify_lead")) buttons.push(button("Qualify", () => qualify(ctx, [record.leadid]), "primary"));
    if (allowed("disqualify_lead")) {
      buttons.push(
        button("Disqualify", async () => {
          const reason = h("select", { name: "statuscode" }, statusChoices(ctx, meta, "disqualify_lead").map((o) => h("option", { value: o.value }, o.label)));
          const values = await formDialog("Disqualify Lead", [field("disqualify-reason", "Reason", reason)], "Disqualify");
          if (values && (await run(ctx, "disqualify_lead", { leadid: record.leadid, statuscode: Number(values.get("statuscode")) }))) ctx.render();
        }),
      );
    }
  }
  if (meta.logical_name === "appointment" && open && allowed("convert_activity_to_case")) {
    buttons.push(
      button("Convert to Case", async () => {
        const values = await formDialog("Convert to Case", [checkbox("complete_activity", "Complete the appointment", true)], "Convert");
        if (!values) return;
        const result = await run(ctx, "convert_activity_to_case", { activityid: record.activityid, complete_activity: values.has("complete_activity") });
        const created = result?.created.find((/** @type {any} */ c) => c.entity === "incident");
        if (created) ctx.navigate(`#/record/incident/${created.id}`);
      }),
    );
  }
  if (meta.logical_name === "opportunity" && open && allowed("close_opportunity")) {
    buttons.push(
      button("Close as Won", async () => {
        const today = new Date().toISOString().slice(0, 10);
        const values = await formDialog(
          "Close Opportunity as Won",
          [
            field("won-value", "Actual Revenue", h("input", { type: "number", name: "actualvalue", step: "0.01", min: "0", value: record.estimatedvalue ?? "" })),
            field("won-date", "Actual Close Date", h("input", { type: "date", name: "actualclosedate", required: true, value: today })),
          ],
          "Close as Won",
        );
        if (!values) return;
        const actual = String(values.get("actualvalue") || "");
        const args = { opportunityid: record.opportunityid, status: "won", actualclosedate: String(values.get("actualclosedate")), actualvalue: actual ? Number(actual) : null };
        if (await run(ctx, "close_opportunity", args)) ctx.render();
      }),
      button("Close as Lost", async () => {
        const competitors = await ctx.data.query("competitor", "$select=name&$orderby=name asc").catch(() => ({ entities: [] }));
        const values = await formDialog(
          "Close Opportunity as Lost",
          [
            field("lost-reason", "Reason", h("select", { name: "statuscode" }, statusChoices(ctx, meta, "close_opportunity").map((o) => h("option", { value: o.value }, o.label)))),
            field(
              "lost-competitor",
              "Competitor (optional)",
              h("select", { name: "competitorid" }, h("option", { value: "" }, "—"), competitors.entities.map((/** @type {any} */ c) => h("option", { value: c.competitorid }, c.name))),
            ),
            field("lost-date", "Close Date", h("input", { type: "date", name: "actualclosedate", required: true, value: new Date().toISOString().slice(0, 10) })),
          ],
          "Close as Lost",
        );
        if (!values) return;
        const args = {
          opportunityid: record.opportunityid,
          status: "lost",
          statuscode: Number(values.get("statuscode")),
          competitorid: String(values.get("competitorid") || "") || null,
          actualclosedate: String(values.get("actualclosedate")),
        };
        if (await run(ctx, "close_opportunity", args)) ctx.render();
      }),
    );
  }
  // Moving an open record to another state a plain update allows (a task to Completed, a case to
  // Resolved, an account to Inactive): its own button, since Status is not edited on the form.
  const stateAttr = meta.attributes.find((/** @type {any} */ a) => a.logical_name === "statecode");
  const current = stateAttr?.options?.find((/** @type {any} */ o) => o.value === record.statecode);
  if (open && current && allowed("update")) {
    for (const target of current.next || []) {
      const option = stateAttr.options.find((/** @type {any} */ o) => o.value === target);
      if (!option) continue;
      buttons.push(
        button(stateCommandLabel(meta, option.label), async () => {
          try {
            await ctx.data.update(meta.logical_name, record[meta.primary_id], { statecode: target });
            toast(`${meta.display_name}: ${option.label}.`);
            ctx.render();
          } catch (err) {
            toast(`${/** @type {any} */ (err).message}`, "error");
          }
        }),
      );
    }
  }
  return buttons.length ? h("div", { class: "row", role: "group", "aria-label": "Commands" }, buttons) : null;
}

/** The reference's words for a move to a state: "Mark Complete", "Resolve Case", "Deactivate". @param {any} meta @param {string} state */
function stateCommandLabel(meta, state) {
  const words = /** @type {Record<string, string>} */ ({
    Completed: "Mark Complete",
    Resolved: `Resolve ${meta.display_name}`,
    Canceled: `Cancel ${meta.display_name}`,
    Cancelled: `Cancel ${meta.display_name}`,
    Inactive: "Deactivate",
  });
  return words[state] ?? `Set to ${state}`;
}

/** The sales process stage bar with "Next stage" (opportunities). @param {any} ctx @param {any} meta @param {any} record */
export function stageBar(ctx, meta, record) {
  const process = (ctx.store.customizations?.processes || []).find((/** @type {any} */ p) => p.entity === meta.logical_name);
  if (!process) return null;
  const stages = /** @type {string[]} */ (process.stages);
  const current = Math.max(0, stages.indexOf(record[process.attribute] || stages[0]));
  const canEdit = meta.offline_commands.includes("update") && record.statecode === 0 && writable(record);
  return h(
    "nav",
    { class: "stages card", "aria-label": process.name },
    h(
      "ol",
      { class: "row" },
      stages.map((stage, i) => h("li", { class: i === current ? "badge badge--available" : "badge badge--disabled", "aria-current": i === current ? "step" : null }, stage.replace(/^\d-/, ""))),
    ),
    canEdit && current < stages.length - 1
      ? h("button", {
          type: "button",
          class: "button button--secondary",
          onclick: async () => {
            try {
              await ctx.data.update(meta.logical_name, record[meta.primary_id], { [process.attribute]: stages[current + 1] });
              ctx.render();
            } catch (err) {
              toast(`${/** @type {any} */ (err).message}`, "error");
            }
          },
        }, "Next stage")
      : null,
  );
}

/** Commands over several selected records of a list (Qualify on leads). @param {any} ctx @param {string} entity @param {() => string[]} selected */
export function listCommands(ctx, entity, selected) {
  const meta = ctx.store.entity(entity);
  if (entity !== "lead" || !meta.offline_commands.includes("qualify_lead")) return null;
  return h(
    "button",
    {
      type: "button",
      class: "button button--primary",
      onclick: async () => {
        const ids = selected();
        if (!ids.length) {
          toast("Select one or more leads first.", "error");
          return;
        }
        // Only open leads the user may change can be qualified; say which were left out.
        const open = [];
        for (const id of ids) {
          const lead = await ctx.data.retrieve("lead", id).catch(() => null);
          if (lead && lead.statecode === 0 && writable(lead)) open.push(id);
        }
        if (!open.length) {
          toast(ids.length === 1 ? "The selected lead is not open: only open leads can be qualified." : "None of the selected leads is open: only open leads can be qualified.", "error");
          clearSelection(ctx, entity);
          ctx.render();
          return;
        }
        const done = await qualify(ctx, open, false);
        if (done) {
          clearSelection(ctx, entity);
          if (open.length < ids.length) toast(`Qualified ${open.length} of ${ids.length} leads; the others are not open.`);
          ctx.render();
        }
      },
    },
    "Qualify",
  );
}
