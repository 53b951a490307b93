// @ts-check
/**
 * One page of the streamed first download (docs/protocol.md §5, `rows`), decoded and committed:
 * the records, their search tokens, the entity's checkpoint and the download cursor, in ONE
 * transaction, so a download cut anywhere resumes after the last page committed. Run by the
 * download worker (downloadworker.js) and, where there is no module worker, by the page itself;
 * no DOM here.
 *
 * A page is written this way only while the queue is empty (a first download has no pending
 * operation): otherwise nothing is written and the caller applies the records through the store,
 * which rebases the pending operations on top (records.js).
 */
import { META, QUEUE, RECORDS, promised, transact } from "./idb.js";
import { tokens } from "./search.js";

/**
 * Where an entity's download stands (the `download:<entity>` meta row).
 * @typedef {{version: any, after: string|null, received: number, total: number|null, done: boolean}} Mark
 * @typedef {{entity: string, n: number, columns: string[], rows: any[][], absent?: Record<string, number[]>,
 *   next: string|null, total: number|null, cursor: number}} RowsFrame
 */

/** The records of a `rows` frame, exactly as the `page` frame would carry them. @param {RowsFrame} frame */
export function decode(frame) {
  const { columns, rows } = frame;
  const absent = frame.absent || {};
  const width = columns.length;
  const out = new Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    /** @type {Record<string, any>} */
    const record = {};
    for (let j = 0; j < width; j++) record[columns[j]] = row[j];
    const missing = absent[String(i)];
    if (missing) for (const j of missing) delete record[columns[j]];
    out[i] = record;
  }
  return out;
}

/**
 * Commit one decoded page: its records (never over a newer version already held), the entity's
 * new checkpoint and the download cursor (the smallest page cursor so far). Returns false, with
 * nothing written, when operations are queued (the caller applies the page through the store).
 * @param {IDBDatabase} db @param {import("./codec.js").Codec} codec @param {any} meta the entity's metadata
 * @param {RowsFrame} frame @param {any[]} records from `decode` @param {Mark} mark the checkpoint after this page
 * @param {number} cursor the download cursor after this page
 */
export async function commit(db, codec, meta, frame, records, mark, cursor) {
  const entity = frame.entity;
  const pid = meta.primary_id;
  /** @type {any[]} the rows as stored */
  const rows = codec.sealed
    ? await Promise.all(records.map((r) => codec.sealRecord({ entity, id: r[pid], server: r, view: r, pending: 0 })))
    : records.map((r) => ({ entity, id: r[pid], server: r, view: r, pending: 0, tokens: tokens(meta, entity, r) }));
  const metaRows = [await codec.sealMeta(`download:${entity}`, mark), await codec.sealMeta("download_cursor", cursor)];
  let low = "\uffff";
  let high = "";
  for (const r of rows) {
    if (r.id < low) low = r.id;
    if (r.id > high) high = r.id;
  }
  return transact(db, [RECORDS, QUEUE, META], "readwrite", async (tx) => {
    if ((await promised(tx.objectStore(QUEUE).count())) > 0) return false;
    const store = tx.objectStore(RECORDS);
    /** @type {Map<string, number>} the versions already held in this page's id range (none on a first download) */
    const held = new Map();
    if (rows.length) {
      const existing = await promised(store.getAll(IDBKeyRange.bound([entity, low], [entity, high])));
      for (const raw of existing) held.set(raw.id, raw.sealed ? raw.version : raw.server?.versionnumber);
    }
    for (const row of rows) {
      const known = held.get(row.id);
      const version = row.sealed ? row.version : row.server?.versionnumber;
      if (known !== null && known !== undefined && known > version) continue; // a newer change already here
      store.put(row);
    }
    const metas = tx.objectStore(META);
    for (const m of metaRows) metas.put(m);
    return true;
  });
}

/**
 * The writing end of a download: decodes each `rows` frame's text and commits it after the one
 * before, keeping the entity's checkpoint. The same code runs in the worker and in the page.
 * Each `rows` call answers `{type: "committed", n, mark, cursor, count}`, or `{type: "fallback",
 * n, mark, cursor, records}` when the page must go through the store (operations are queued).
 */
export class Sink {
  /** @param {IDBDatabase} db @param {import("./codec.js").Codec} codec */
  constructor(db, codec) {
    this.db = db;
    this.codec = codec;
    /** @type {{entity: string, meta: any, mark: Mark, cursor: number|null}|null} */
    this.at = null;
  }

  /** A new entity's stream starts from `mark`; `cursor` is the download cursor so far. @param {{entity: string, meta: any, mark: Mark, cursor: number|null}} at */
  begin(at) {
    this.at = { ...at };
  }

  /** @param {string} text a `rows` frame as received */
  async rows(text) {
    const at = this.at;
    const frame = /** @type {RowsFrame} */ (JSON.parse(text));
    if (!at || frame.entity !== at.entity) throw new Error(`A page of ${frame.entity} while downloading ${at?.entity}.`);
    const records = decode(frame);
    const mark = {
      version: at.mark.version,
      after: frame.next,
      received: at.mark.received + records.length,
      total: frame.total ?? at.mark.total,
      done: frame.next === null,
    };
    const cursor = at.cursor === null ? frame.cursor : Math.min(at.cursor, frame.cursor);
    const written = await commit(this.db, this.codec, at.meta, frame, records, mark, cursor);
    at.mark = mark;
    at.cursor = cursor;
    if (!written) return { type: "fallback", n: frame.n, mark, cursor, records };
    return { type: "committed", n: frame.n, mark, cursor, count: records.length };
  }
}
