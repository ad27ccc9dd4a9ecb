// Table entries that come from another node (in a request or in a reply) are checked against
// their table's entry schema before anything merges, stores or returns them: a buggy or older
// peer gets a clear error back and the local copy stays as it was.
import { RPC_ERR, RpcError } from "../rpc/rpc";
import type { TableSchema } from "./schema";

/**
 * `entries` typed as the table's, or an RpcError with `code` (RPC_ERR.badRequest for what a
 * peer asked, RPC_ERR.badResponse for what it answered) naming `where`, the table, the first
 * malformed entry and its first failing path.
 */
export function checkPeerEntries<E>(schema: TableSchema<E>, entries: readonly unknown[], where: string, code: string): E[] {
  const validate = schema.validateEntry;
  if (validate) {
    for (let i = 0; i < entries.length; i++) {
      const problem = validate(entries[i]);
      if (problem !== undefined) throw new RpcError(`${where}: ${schema.name} entry ${i} is malformed: ${problem}`, code);
    }
  }
  return entries as E[];
}

