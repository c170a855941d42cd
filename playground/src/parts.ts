// Which parts of an assistant message the page shows: a retried step's failed attempt is dropped.
import type { UIMessage } from 'ai';

export type Part = UIMessage['parts'][number];

/**
 * The stream marks a retried step with a `data-stream-reset` part after what the failed attempt streamed
 * (see docs/chat.md): within each step (parts from a `step-start`), what precedes the marker is dropped.
 */
export function visibleParts(parts: Part[]): Part[] {
  const out: Part[] = [];
  let step: Part[] = [];
  for (const part of parts) {
    if (part.type === 'step-start') {
      out.push(...step);
      step = [part];
    } else if (part.type === 'data-stream-reset') step = [];
    else step.push(part);
  }
  return [...out, ...step];
}
