// The playground: threads on the left, a useChat conversation on the right (see Chat.tsx).
import { createRoot } from 'react-dom/client';
import { useEffect, useState } from 'react';
import type { UIMessage } from 'ai';
import { ThreadboxError, type Thread } from '../../src/client/index.js';
import { Chat } from './Chat.js';
import { client, newId, type PageConfig } from './api.js';
import './style.css';

function App() {
  const [config, setConfig] = useState<PageConfig>({ temporalUiUrl: null, namespace: 'default' });
  const [threads, setThreads] = useState<Thread[]>([]);
  const [threadId, setThreadId] = useState(() => decodeURIComponent(location.hash.slice(1)) || newId('thread'));
  const [initial, setInitial] = useState<{ threadId: string; messages: UIMessage[] } | null>(null);
  const [problem, setProblem] = useState<string>();

  useEffect(() => {
    void fetch('/playground.json').then(async (r) => r.ok && setConfig(await r.json()));
  }, []);

  useEffect(() => {
    let stopped = false;
    const load = () =>
      client.listThreads().then(
        (items) => !stopped && (setThreads(items), setProblem(undefined)),
        (err: Error) => !stopped && setProblem(err.message),
      );
    void load();
    const timer = setInterval(load, 2000);
    return () => ((stopped = true), clearInterval(timer));
  }, []);

  useEffect(() => {
    history.replaceState(null, '', `#${encodeURIComponent(threadId)}`);
    setInitial(null);
    // A thread the server has not seen yet has no history: it starts with the first message.
    client.uiMessages<UIMessage>(threadId).then(
      (messages) => setInitial({ threadId, messages }),
      (err) => setInitial(err instanceof ThreadboxError && err.status === 404 ? { threadId, messages: [] } : (setProblem(String(err)), { threadId, messages: [] })),
    );
  }, [threadId]);

  return (
    <div className="page">
      <aside>
        <h1>threadbox</h1>
        <button data-testid="new-thread" onClick={() => setThreadId(newId('thread'))}>
          New thread
        </button>
        <ul data-testid="threads">
          {threads.map((t) => (
            <li key={t.threadId} className={t.threadId === threadId ? 'current' : ''}>
              <a href={`#${encodeURIComponent(t.threadId)}`} onClick={() => setThreadId(t.threadId)}>
                {t.threadId}
              </a>
              <span className={`status ${t.status}`}>{t.status}</span>
            </li>
          ))}
        </ul>
        {problem && <p className="problem">{problem}</p>}
      </aside>
      <main>{initial && initial.threadId === threadId ? <Chat key={threadId} threadId={threadId} initialMessages={initial.messages} config={config} /> : <p>Loading…</p>}</main>
    </div>
  );
}

createRoot(document.getElementById('root')!).render(<App />);
