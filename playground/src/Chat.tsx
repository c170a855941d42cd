// One thread as a useChat conversation over threadbox's /v1/chat: modes, stop, approvals, each run's status and events.
import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport, lastAssistantMessageIsCompleteWithApprovalResponses, type DynamicToolUIPart, type UIMessage } from 'ai';
import { useEffect, useMemo, useRef, useState, type FormEvent } from 'react';
import type { Run, RunEvent } from '../../src/client/index.js';
import { authHeaders, client, temporalLink, type PageConfig } from './api.js';
import { visibleParts, type Part } from './parts.js';

type Mode = 'interrupt' | 'queue' | 'steer';
interface RunMeta {
  runId?: string;
  status?: 'queued' | 'running' | 'waiting' | 'done';
  termination?: { type: string; detail?: string };
  interrupted?: boolean;
}
const metaOf = (m: UIMessage) => (m.metadata ?? {}) as RunMeta;

export function Chat({ threadId, initialMessages, config }: { threadId: string; initialMessages: UIMessage[]; config: PageConfig }) {
  const [mode, setMode] = useState<Mode>('interrupt');
  const modeRef = useRef(mode);
  modeRef.current = mode;
  const [text, setText] = useState('');
  const [notice, setNotice] = useState<string>();
  // One transport per thread; the mode travels in the request body (read when each request is made).
  const transport = useMemo(() => new DefaultChatTransport({ api: '/v1/chat', headers: authHeaders, body: () => ({ mode: modeRef.current }) }), []);
  const { messages, sendMessage, status, error, addToolApprovalResponse } = useChat({
    id: threadId,
    messages: initialMessages,
    transport,
    resume: true,
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    onData: (part) => part.type === 'data-steered' && setNotice('steered into the running run'),
  });
  const active = [...messages].reverse().find((m) => m.role === 'assistant' && metaOf(m).status !== undefined && metaOf(m).status !== 'done');

  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (!text.trim()) return;
    setNotice(undefined);
    void sendMessage({ text });
    setText('');
  };
  // Stop cancels the run itself (through the API): its stream then ends with the run, `cancelled`.
  const stop = () => {
    const runId = active && metaOf(active).runId;
    if (runId) client.cancel(runId).catch((err: Error) => setNotice(err.message));
  };

  return (
    <div className="chat">
      <div className="messages" data-testid="messages">
        {messages.map((m) => (m.role === 'assistant' ? <Answer key={m.id} message={m} config={config} approve={addToolApprovalResponse} /> : <Question key={m.id} message={m} />))}
      </div>
      {error && <p className="problem" data-testid="chat-error">{error.message}</p>}
      {notice && <p className="notice" data-testid="notice">{notice}</p>}
      <form onSubmit={submit} className="composer">
        <input data-testid="composer" value={text} onChange={(e) => setText(e.target.value)} placeholder="Message (try /slow 200 hello, /tool send_email {…})" />
        <select data-testid="mode" value={mode} onChange={(e) => setMode(e.target.value as Mode)}>
          <option value="interrupt">interrupt</option>
          <option value="queue">queue</option>
          <option value="steer">steer</option>
        </select>
        <button data-testid="send" type="submit">
          Send
        </button>
        <button data-testid="stop" type="button" onClick={stop} disabled={!active}>
          Stop
        </button>
        <span className="chat-status" data-testid="chat-status">
          {status}
        </span>
      </form>
    </div>
  );
}

function Question({ message }: { message: UIMessage }) {
  return (
    <div className="message user" data-testid="message-user">
      {message.parts.map((p, i) => (p.type === 'text' ? <p key={i}>{p.text}</p> : null))}
    </div>
  );
}

type Approve = (r: { id: string; approved: boolean; reason?: string }) => void | PromiseLike<void>;

function Answer({ message, config, approve }: { message: UIMessage; config: PageConfig; approve: Approve }) {
  const meta = metaOf(message);
  const state = meta.status === 'done' ? `done · ${meta.termination?.type ?? ''}` : (meta.status ?? 'streaming');
  return (
    <div className="message assistant" data-testid="message-assistant" data-run-id={message.id} data-status={meta.status ?? ''} data-termination={meta.termination?.type ?? ''}>
      <div className="run-line">
        <span className={`status ${meta.status ?? ''}`} data-testid="run-status">
          {state}
        </span>
        {meta.interrupted && <span className="status interrupted">interrupted</span>}
      </div>
      {visibleParts(message.parts).map((p, i) => (
        <PartView key={i} part={p} approve={approve} />
      ))}
      <RunDetails runId={meta.runId ?? message.id} status={meta.status} config={config} />
    </div>
  );
}

function PartView({ part, approve }: { part: Part; approve: Approve }) {
  if (part.type === 'text') return <p className="text" data-testid="answer-text">{part.text}</p>;
  if (part.type === 'reasoning') return <p className="reasoning">{part.text}</p>;
  if (part.type === 'data-steering') return <p className="marker">↳ new input steered in</p>;
  if (part.type !== 'dynamic-tool') return null;
  const tool = part as DynamicToolUIPart;
  return (
    <div className="tool" data-testid="tool" data-state={tool.state}>
      <code>
        {tool.toolName}({JSON.stringify(tool.input ?? null)})
      </code>{' '}
      <span className="tool-state">{tool.state}</span>
      {tool.state === 'approval-requested' && (
        <span className="approval">
          <button data-testid="approve" onClick={() => void approve({ id: tool.approval.id, approved: true })}>
            Approve
          </button>
          <button data-testid="deny" onClick={() => void approve({ id: tool.approval.id, approved: false, reason: 'denied in the playground' })}>
            Deny
          </button>
        </span>
      )}
      {tool.state === 'output-available' && <pre>{JSON.stringify(tool.output, null, 2)}</pre>}
      {tool.state === 'output-error' && <pre className="problem">{tool.errorText}</pre>}
    </div>
  );
}

/** The run's record (for its Temporal workflow) and, on demand, its events. */
function RunDetails({ runId, status, config }: { runId: string; status?: string; config: PageConfig }) {
  const [run, setRun] = useState<Run>();
  const [events, setEvents] = useState<RunEvent[]>();
  useEffect(() => {
    client.getRun(runId).then(setRun, () => undefined);
  }, [runId, status]);
  const link = run && temporalLink(config, run.workflowId);
  const toggle = async () => setEvents(events ? undefined : (await client.runEvents(runId, { limit: 1000 })).items);
  return (
    <div className="run-details">
      <button className="link" data-testid="events-toggle" onClick={() => void toggle()}>
        {events ? 'hide events' : 'events'}
      </button>
      {link && (
        <a data-testid="temporal-link" href={link} target="_blank" rel="noreferrer">
          {run!.workflowId} in Temporal
        </a>
      )}
      {events && (
        <ol className="events" data-testid="events">
          {events.map((e) => (
            <li key={e.seq}>
              {e.seq} {e.type}
              {'delta' in e ? ` “${e.delta}”` : ''}
            </li>
          ))}
        </ol>
      )}
    </div>
  );
}
