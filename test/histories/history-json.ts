// Workflow histories to and from their proto3 JSON form (the form `temporal workflow show -o json` writes).
// The SDK's historyToJSON/historyFromJSON (@temporalio/common/lib/proto-utils) run protobufjs's JSON codec from
// @temporalio/common's copy of protobufjs on types built by @temporalio/proto's copy; when npm installs the two
// apart (our lockfile nests one under each package) they throw "type must be a Type". These use the codec of the
// copy that built the types.
import { createRequire } from 'node:module';
import proto, { type temporal } from '@temporalio/proto';
import { patchProtobufRoot } from '@temporalio/proto/lib/patch-protobuf-root.js';

type History = temporal.api.history.v1.IHistory;

interface ProtoJson {
  toJson(type: unknown, message: unknown): unknown;
  fromJson(type: unknown, json: unknown, options: { ignoreUnknownFields: boolean }): History | null;
}

const require = createRequire(import.meta.url);
const protojson = createRequire(require.resolve('@temporalio/proto'))('protobufjs/ext/protojson') as ProtoJson;
const historyType = (patchProtobufRoot(proto) as unknown as { lookupType(name: string): { fromObject(o: unknown): unknown } }).lookupType(
  'temporal.api.history.v1.History',
);

export function historyToJSON(history: History): string {
  return JSON.stringify(protojson.toJson(historyType, historyType.fromObject(history)), null, 2);
}

/** Fields this SDK does not know (a history from a newer server) are ignored, as the SDK's own reader does. */
export function historyFromJSON(json: unknown): History {
  const history = protojson.fromJson(historyType, json, { ignoreUnknownFields: true });
  if (!history) throw new Error('not a workflow history');
  return history;
}
