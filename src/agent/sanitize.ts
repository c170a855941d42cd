// Makes text that came from a model storable: Postgres keeps neither NUL in text or JSON nor unpaired UTF-16 surrogates in JSON.

/** Drops NUL characters and replaces unpaired surrogates with U+FFFD (String.prototype.toWellFormed, Node 20). */
export function sanitizeText(text: string): string {
  return text.replaceAll('\u0000', '').toWellFormed();
}

/** `sanitizeText` over every string of a JSON value, object keys included. */
export function sanitizeJson(value: unknown): unknown {
  if (typeof value === 'string') return sanitizeText(value);
  if (Array.isArray(value)) return value.map(sanitizeJson);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [sanitizeText(k), sanitizeJson(v)]));
  }
  return value;
}

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;

/**
 * Sanitises a stream of deltas. A delta may end between the two halves of a surrogate pair (an
 * emoji split over two chunks), so a trailing high surrogate waits for the next delta instead of
 * being replaced; `end()` gives back whatever is still held, sanitised.
 */
export class DeltaSanitizer {
  private held = '';

  push(delta: string): string {
    let text = this.held + delta;
    this.held = '';
    if (text.length > 0 && isHighSurrogate(text.charCodeAt(text.length - 1))) {
      this.held = text.slice(-1);
      text = text.slice(0, -1);
    }
    return sanitizeText(text);
  }

  end(): string {
    const rest = this.held;
    this.held = '';
    return sanitizeText(rest);
  }
}
