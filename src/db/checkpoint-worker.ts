// Worker side of Checkpointer (checkpointer.ts): its own connection to the metadata database,
// which copies the WAL into the database file when asked. The fsyncs of a checkpoint block this
// thread, not the one serving requests.
import { Database } from "bun:sqlite";
import type { CheckpointReply, CheckpointRequest } from "./checkpointer.ts";

declare const self: Worker;

let db: Database | undefined;

self.onmessage = (ev: MessageEvent<CheckpointRequest>) => {
  const msg = ev.data;
  try {
    if (msg.kind === "open") {
      db = new Database(msg.path, { strict: true });
      db.exec(`PRAGMA synchronous = ${msg.fsync ? "FULL" : "NORMAL"}`);
      db.exec(`PRAGMA busy_timeout = ${msg.busyTimeoutMs}`);
      self.postMessage({ id: msg.id, ok: true } satisfies CheckpointReply);
      return;
    }
    if (!db) throw new Error("checkpoint before open");
    // PASSIVE copies what it can without ever waiting for, or blocking, the request thread.
    db.query("PRAGMA wal_checkpoint(PASSIVE)").get();
    self.postMessage({ id: msg.id, ok: true } satisfies CheckpointReply);
  } catch (err) {
    self.postMessage({ id: msg.id, ok: false, error: String(err) } satisfies CheckpointReply);
  }
};
