// How many `*_delta` events a run of tokens takes depends on the pace of the store's writes (group commit:
// what arrives during a write goes into the next, coalesced): tests compare event sequences with each run
// of consecutive deltas of one stream shown once, and compare the deltas' text separately.
const DELTAS = new Set(['text_delta', 'reasoning_delta', 'tool_call_delta']);

/** Event types, each run of consecutive deltas of one type shown once. */
export function typesCoalesced(events: { type: string }[]): string[] {
  return events.map((e) => e.type).filter((type, i, types) => !(DELTAS.has(type) && types[i - 1] === type));
}
