// @ts-check
/**
 * The operation queue: the user's changes waiting for the server, in `seq` order (PROTOCOL.md
 * §5), and the sync errors the server's answers left (DESIGN.md §5: nothing leaves the queue
 * before its result is stored).
 *
 * Like Workbox's Queue → QueueStore → QueueDb, this layer knows the verbs (add, peek in order,
 * ack, count, the ops touching a record) and idb.js knows the object stores. Functions that
 * take a transaction run inside the caller's, so a record and its operation commit together.
 * Values pass through the store's codec (codec.js), so a sealed queue is opened here.
 */
import { ERRORS, META, QUEUE, during, getAll, promised, transact } from "./idb.js";

/**
 * @typedef {{op_id: string, seq: number, kind: string, entity: string, id: string,
 *   base_version: number|null, changes: Record<string, any>, command?: string, args?: any,
 *   created_at: string, labels?: Record<string, string|null>, effects?: any[], touches?: string[],
 *   before?: Record<string, {value: any, label: string|null}>, name?: string|null}} Op
 * @typedef {import("./codec.js").Codec} Codec
 */

/** The seq the next operation takes (1 for a new store), inside a write. @param {IDBTransaction} tx */
export async function nextSeq(tx) {
  const row = await promised(tx.objectStore(META).get("next_seq"));
  return row ? row.value : 1;
}

/**
 * Append an operation (its seq from `nextSeq`) and move the next seq on, inside a write.
 * @param {IDBTransaction} tx @param {Codec} codec @param {Op} op
 */
export async function add(tx, codec, op) {
  await promised(tx.objectStore(QUEUE).add(codec.sealed ? await during(tx, codec.sealOp(op)) : op));
  await promised(tx.objectStore(META).put({ key: "next_seq", value: op.seq + 1 }));
}

/**
 * The operations touching one record ("entity|id"), in seq order, inside a transaction.
 * @param {IDBTransaction} tx @param {Codec} codec @param {string} entity @param {string} id
 * @returns {Promise<Op[]>}
 */
export async function touching(tx, codec, entity, id) {
  const raw = await getAll(tx.objectStore(QUEUE).index("touches"), `${entity}|${id}`);
  return codec.sealed ? during(tx, Promise.all(raw.map((op) => codec.openOp(op)))) : raw;
}

/** Whether any operation touches a record, inside a transaction. @param {IDBTransaction} tx @param {string} entity @param {string} id */
export async function touches(tx, entity, id) {
  return (await promised(tx.objectStore(QUEUE).index("touches").count(`${entity}|${id}`))) > 0;
}

/** Whether the queue is empty, inside a transaction (a first download has nothing queued). @param {IDBTransaction} tx */
export async function isEmpty(tx) {
  return (await promised(tx.objectStore(QUEUE).count())) === 0;
}

/**
 * Take one operation off the queue for its ack, inside a write: the op, or null when the ack is
 * a duplicate (the op is gone, or its seq now holds another op).
 * @param {IDBTransaction} tx @param {Codec} codec @param {{seq: number, op_id: string}} result
 * @returns {Promise<Op|null>}
 */
export async function take(tx, codec, result) {
  const queue = tx.objectStore(QUEUE);
  const stored = await promised(queue.get(result.seq));
  const op = /** @type {Op|undefined} */ (stored?.sealed ? await during(tx, codec.openOp(stored)) : stored);
  if (!op || op.op_id !== result.op_id) return null;
  await promised(queue.delete(result.seq));
  return op;
}

/**
 * The first `limit` operations after seq `after` (0: from the start), in seq order: the sync
 * reads the queue in chunks from the last seq it sent, never the whole queue at once.
 * @param {IDBDatabase} db @param {Codec} codec @param {number} limit @param {number} [after]
 * @returns {Promise<Op[]>}
 */
export async function peek(db, codec, limit, after = 0) {
  const range = after > 0 ? IDBKeyRange.lowerBound(after, true) : null;
  const ops = await transact(db, [QUEUE], "readonly", (tx) => getAll(tx.objectStore(QUEUE), range, limit));
  return codec.sealed ? Promise.all(ops.map((op) => codec.openOp(op))) : ops;
}

/** How many operations wait. @param {IDBDatabase} db @returns {Promise<number>} */
export function count(db) {
  return transact(db, [QUEUE], "readonly", (tx) => promised(tx.objectStore(QUEUE).count()));
}

// --- sync errors: what the server did not apply as sent ----------------------------------------

/**
 * Keep the error of an op the server rejected or resolved, inside the ack's write.
 * @param {IDBTransaction} tx @param {Codec} codec @param {Op} op @param {any} result
 * @param {string} at when, as the wire writes datetimes
 * @param {string|null} [name] the record's name as the user knew it
 */
export async function recordError(tx, codec, op, result, at, name = null) {
  const error = {
    op_id: op.op_id,
    seq: op.seq,
    status: result.status,
    label: result.status === "conflict" ? "Automatically resolved" : "Rejected",
    reason: result.reason || null,
    sent: { kind: op.kind, entity: op.entity, id: op.id, changes: op.changes, command: op.command, args: op.args },
    kept: result.records?.[0]?.record ?? null,
    at,
    name, // the record, by name (syncerrors.js)
    before: op.before ?? null, // the values when the change was made: a conflict's base
    labels: op.labels ?? {}, // the names of the records the change linked to
  };
  await promised(tx.objectStore(ERRORS).put(codec.sealed ? await during(tx, codec.sealError(error)) : error));
}

/** Sync errors, newest first. @param {IDBDatabase} db @param {Codec} codec */
export async function errors(db, codec) {
  const rows = await transact(db, [ERRORS], "readonly", (tx) => getAll(tx.objectStore(ERRORS)));
  const all = codec.sealed ? await Promise.all(rows.map((row) => codec.openError(row))) : rows;
  return all.sort((a, b) => b.seq - a.seq);
}

/** Forget a sync error (Discard). @param {IDBDatabase} db @param {string} opId */
export async function discardError(db, opId) {
  await transact(db, [ERRORS], "readwrite", (tx) => promised(tx.objectStore(ERRORS).delete(opId)));
}
