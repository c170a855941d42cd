// The playground page in a real Chromium (Debian's, driven by playwright-core) against the running API:
// type and see the echo stream, reload mid-run and see it resume, approve, stop, steer. Saves a screenshot.
import { existsSync, mkdirSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTenantStack, type TenantStack } from '../api/helpers.js';
import { uniqueId } from '../stack.js';

const CHROMIUM = [process.env.THREADBOX_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => p && existsSync(p));
export const OUTPUT_DIR = 'test-results/browser';

let stack: TenantStack;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  if (!CHROMIUM) throw new Error('Chromium not found: install Debian\'s `chromium` (apt-get install -y chromium; .ci/run does) or set THREADBOX_CHROMIUM');
  // Runs link to their workflow in the Temporal UI: any address will do for the link's shape.
  stack = await startTenantStack({ env: { THREADBOX_TEMPORAL_UI_URL: 'http://127.0.0.1:8233' } });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  page.setDefaultTimeout(20_000);
});
afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

/** Opens the page on a new thread (the API key travels once in the query, then stays in localStorage). */
async function openThread(): Promise<string> {
  const threadId = uniqueId('pg');
  await page.goto(`${stack.url}/?key=${stack.key}&open=${threadId}#${threadId}`);
  await page.getByTestId('composer').waitFor();
  return threadId;
}

async function send(text: string, mode: 'interrupt' | 'queue' | 'steer' = 'interrupt') {
  await page.getByTestId('mode').selectOption(mode);
  await page.getByTestId('composer').fill(text);
  await page.getByTestId('send').click();
}

const answers = () => page.getByTestId('message-assistant');
const finished = (termination: string) => page.locator(`[data-testid=message-assistant][data-termination=${termination}]`);

describe('the playground page', () => {
  it('is served at / with its assets under a content policy of its own; other paths keep their JSON 404', async () => {
    const page = await fetch(`${stack.url}/`);
    expect(page.status).toBe(200);
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    const html = await page.text();
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(script).toBeDefined();
    const asset = await fetch(stack.url + script);
    expect(asset.status).toBe(200);
    expect(asset.headers.get('content-type')).toContain('javascript');
    for (const path of ['/assets/nope.js', '/assets/../package.json', '/nope']) {
      const missing = await stack.request('GET', path);
      expect(missing.status, path).toBe(404);
      expect(missing.body.code, path).toBe('not_found');
    }
  });
});

describe('the playground in Chromium', () => {
  it('a typed message gets its echo streamed in, with the run finished and linked to its events', async () => {
    const threadId = await openThread();
    await send('hello from the browser');
    await finished('natural_end').waitFor();
    expect(await answers().getByTestId('answer-text').innerText()).toBe('Echo: hello from the browser');
    await answers().getByTestId('events-toggle').click();
    const events = await page.getByTestId('events').innerText();
    expect(events).toContain('run_start');
    expect(events).toContain('run_finish');
    await expect.poll(() => page.getByTestId('threads').innerText()).toContain(threadId);
    const runId = await answers().getAttribute('data-run-id');
    const link = await answers().getByTestId('temporal-link').getAttribute('href');
    expect(decodeURIComponent(link!)).toBe(`http://127.0.0.1:8233/namespaces/default/workflows?query=WorkflowId="run:${stack.tenant}:${runId}"`);
  });

  it('reloading mid-run resumes the stream and finishes with exactly one answer', async () => {
    await openThread();
    await send('/slow 120 one two three four five six seven eight nine ten');
    await expect.poll(() => answers().getByTestId('answer-text').innerText().catch(() => '')).toMatch(/Echo: one/);
    await page.reload();
    await finished('natural_end').waitFor();
    expect(await answers().count()).toBe(1);
    expect(await page.getByTestId('message-user').count()).toBe(1);
    expect(await answers().getByTestId('answer-text').innerText()).toBe('Echo: one two three four five six seven eight nine ten');
  });

  it('approving a send_email runs the tool and the run finishes', async () => {
    await openThread();
    await send('/tool send_email {"to":"ops@example.com","subject":"deploy","body":"ok"}');
    await page.getByTestId('approve').click();
    await finished('natural_end').waitFor();
    expect(await page.getByTestId('tool').getAttribute('data-state')).toBe('output-available');
    expect(await page.getByTestId('tool').innerText()).toContain('"sent": true');
  });

  it('stop cancels the run through the API: it ends cancelled', async () => {
    await openThread();
    await send('/slow 200 a b c d e f g h i j k l m n o p');
    await expect.poll(() => answers().getByTestId('answer-text').innerText().catch(() => '')).toMatch(/Echo/);
    await page.getByTestId('stop').click();
    await finished('cancelled').waitFor();
    const runId = await answers().getAttribute('data-run-id');
    const run = await stack.api('GET', `/v1/runs/${runId}`);
    expect(run.body.termination.type).toBe('cancelled');
  });

  it('a message sent in steer mode goes into the running run, which answers it', async () => {
    const threadId = await openThread();
    await send('/slow 150 a b c d e f g h i j k l');
    await expect.poll(() => answers().getByTestId('answer-text').first().innerText().catch(() => '')).toMatch(/Echo/);
    await send('and mention steering', 'steer');
    await page.getByTestId('notice').getByText('steered').waitFor();
    await finished('natural_end').waitFor({ timeout: 30_000 });
    expect(await answers().count()).toBe(1);
    const runId = await answers().getAttribute('data-run-id');
    const log = await stack.api('GET', `/v1/threads/${threadId}/messages`);
    const steered = log.body.items.find((m: { content: string }) => m.content === 'and mention steering');
    expect(steered.runId).toBe(runId);
    await expect.poll(() => answers().innerText()).toContain('Echo: and mention steering');
    mkdirSync(OUTPUT_DIR, { recursive: true });
    await page.screenshot({ path: `${OUTPUT_DIR}/playground.png`, fullPage: true });
    expect(existsSync(`${OUTPUT_DIR}/playground.png`)).toBe(true);
  });
});
