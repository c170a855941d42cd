// JSON over HTTP as the tests, the history recorder and the bench call threadbox's API.

export interface JsonResponse {
  status: number;
  body: any;
}

/** One request with a JSON body (when given); the answer's status and parsed body (undefined when empty). */
export async function requestJson(url: string, method: string, body?: unknown, headers: Record<string, string> = {}): Promise<JsonResponse> {
  const response = await fetch(url, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

/** A POST that must succeed (2xx): its parsed body. */
export async function postJson(url: string, body?: unknown): Promise<any> {
  const response = await requestJson(url, 'POST', body);
  if (response.status >= 300) throw new Error(`POST ${url}: ${response.status} ${JSON.stringify(response.body)}`);
  return response.body;
}
