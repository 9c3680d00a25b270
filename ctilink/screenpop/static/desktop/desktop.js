// ctilink agent desktop: one event stream in, REST commands out, no framework.
//
// Theory of operation
// -------------------
// Sign-in keeps {token, agent, device} in sessionStorage (this tab only, gone when it
// closes); the token never goes into the address bar or a log line. It travels as
// "Authorization: Bearer" on REST calls, and as the access_token query parameter on the
// WebSocket URL only, because a browser cannot set headers there.
//
// The event socket (/events) sends a snapshot, then every event with a higher seq. The
// page keeps the calls, agents and queue figures it needs, applies only events whose seq
// is higher than the last one applied, and after a disconnect reconnects with
// ?since=<last seq>: the missed events follow, or a gap and a fresh snapshot that
// replaces the state. A screen_pop for this agent's device is shown at once and
// acknowledged ({"type": "ack", "seq": N}) right after it is in the page.
//
// Commands go to the REST API (/api/v1, schemas/openapi.yaml); what they did comes back
// as events. A refused command shows the API's error body ({"error", "message"}).

const STORE = "ctilink.desktop";
const API = "/api/v1";
const MAX_RETRY_MS = 10000;

const $ = (id) => document.getElementById(id);

// -- state ---------------------------------------------------------------------------------
let session = null; // {token, agent, device}
let socket = null;
let retryMs = 500;
let retryTimer = null;
let ticker = null;

const state = {
  seq: 0, // the last event applied (or the snapshot's)
  synced: false, // a snapshot was applied: resuming with since= is possible
  skew: 0, // milliseconds this computer's clock is ahead of ctilink's
  calls: new Map(), // call_id -> {call_id, switch, calling_number, called_number, queue, data, connections: Map}
  agents: new Map(), // switch + "/" + agent -> {switch, agent, device, state, reason}
  pops: new Map(), // call_id -> the screen_pop event shown for it
  lastPop: null, // the most recent pop for this agent (kept after its call ends)
  acked: new Set(), // seqs of pops acknowledged
  queues: new Map(), // switch + "/" + queue -> queue figures (queue_stats without seq/type)
};

function resetState() {
  state.seq = 0;
  state.skew = 0;
  state.synced = false;
  state.calls.clear();
  state.agents.clear();
  state.pops.clear();
  state.lastPop = null;
  state.acked.clear();
  state.queues.clear();
}

function myAgent() {
  for (const record of state.agents.values()) {
    if (record.agent === session.agent) return record;
  }
  return null;
}

function myDevice() {
  return session.device || myAgent()?.device || session.agent;
}

// -- sign in and out -----------------------------------------------------------------------
function readSession() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(STORE) || "null");
    if (stored && typeof stored.token === "string" && typeof stored.agent === "string") {
      return stored;
    }
  } catch {
    // nothing usable stored
  }
  return null;
}

async function signIn(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  const agent = $("agent").value.trim();
  const device = $("device").value.trim();
  $("signin-note").textContent = "Checking the token…";
  const reply = await api("GET", "/stats/queues", undefined, token);
  if (reply.status === 401 || reply.status === 403 || reply.status === 0) {
    $("signin-note").textContent = `Not signed in: ${describe(reply)}`;
    return;
  }
  $("token").value = ""; // the secret does not stay in the page
  session = { token, agent, device };
  sessionStorage.setItem(STORE, JSON.stringify(session));
  start(reply);
}

function start(statsReply) {
  $("signin").hidden = true;
  $("desk").hidden = false;
  $("signout").hidden = false;
  $("signin-note").textContent = "";
  resetState();
  render();
  connect();
  if (statsReply) applyStatsReply(statsReply);
  else api("GET", "/stats/queues").then(applyStatsReply);
  ticker = setInterval(renderQueues, 1000); // waits grow between events
}

function signOut(why) {
  session = null;
  sessionStorage.removeItem(STORE);
  clearTimeout(retryTimer);
  clearInterval(ticker);
  if (socket) {
    const closing = socket;
    socket = null;
    closing.close(1000, "signed out");
  }
  resetState();
  $("desk").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("problem").hidden = true;
  $("signin-note").textContent = why || "";
  setStatus("Signed out");
}

// -- the event stream ----------------------------------------------------------------------
function connect() {
  const params = new URLSearchParams({ access_token: session.token });
  if (state.synced) params.set("since", String(state.seq));
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/events?${params}`);
  let opened = false;
  socket = ws;
  setStatus(state.synced ? "Reconnecting…" : "Connecting…");
  ws.onopen = () => {
    opened = true;
    retryMs = 500;
    setStatus("Connected");
  };
  ws.onmessage = (message) => {
    if (socket !== ws) return; // signed out meanwhile
    let parsed;
    try {
      parsed = JSON.parse(message.data);
    } catch {
      return;
    }
    receive(parsed);
  };
  ws.onclose = (closed) => {
    if (socket !== ws) return; // signed out, or replaced
    socket = null;
    if (closed.code === 4401) {
      signOut("Your token was refused or has expired: sign in again.");
    } else if (closed.code === 4403) {
      setStatus("Disconnected");
      showProblem(`Event socket: ${closed.reason || "forbidden for this token"}`);
    } else if (!opened) {
      retryAfterCheck(); // a refused handshake looks like any failure in a browser
    } else {
      retry();
    }
  };
}

function retry() {
  const delay = retryMs;
  retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
  setStatus(`Disconnected; reconnecting in ${Math.round(delay / 1000) || 1} s`);
  retryTimer = setTimeout(() => {
    if (session) connect();
  }, delay);
}

async function retryAfterCheck() {
  const reply = await api("GET", "/stats/queues");
  if (!session) return;
  if (reply.status === 401) signOut(`Not signed in: ${describe(reply)}`);
  else retry();
}

// The page only sends acks: these errors answer one (the agent need not know).
const ACK_REFUSALS = new Set(["not_found", "duplicate"]);

function receive(message) {
  switch (message.type) {
    case "snapshot":
      applySnapshot(message);
      break;
    case "gap":
      setStatus("Connected (missed events: state reloaded)");
      return; // the snapshot that follows replaces the state
    case "error":
      if (ACK_REFUSALS.has(message.code)) {
        console.warn(`ctilink did not count an acknowledgement: ${message.message}`);
      } else {
        showProblem(`Event socket: ${message.code}: ${message.message}`);
      }
      return;
    default:
      if (typeof message.seq !== "number" || message.seq <= state.seq) return;
      state.seq = message.seq;
      applyEvent(message);
  }
  scheduleRender();
}

function applySnapshot(snapshot) {
  state.skew = Date.now() - Date.parse(snapshot.time); // this computer's clock vs ctilink's
  state.seq = snapshot.seq;
  state.synced = true;
  state.calls.clear();
  for (const call of snapshot.calls) {
    const connections = new Map(call.connections.map((c) => [c.device, c.state]));
    state.calls.set(call.call_id, { ...call, connections });
  }
  state.agents.clear();
  for (const agent of snapshot.agents) {
    state.agents.set(`${agent.switch}/${agent.agent}`, agent);
  }
  for (const callId of state.pops.keys()) {
    if (!state.calls.has(callId)) state.pops.delete(callId);
  }
}

const AGENT_EVENTS = new Set([
  "agent_logged_on", "agent_logged_off", "agent_ready", "agent_not_ready",
  "agent_busy", "agent_working_after_call",
]);

function applyEvent(event) {
  if (AGENT_EVENTS.has(event.type)) {
    const key = `${event.switch}/${event.agent}`;
    const record = state.agents.get(key) || { switch: event.switch, agent: event.agent };
    record.state = event.state;
    record.reason = event.state === "not_ready" ? event.reason ?? record.reason ?? null : null;
    if (event.device) record.device = event.device;
    state.agents.set(key, record);
  } else if (event.type === "queue_stats") {
    const { seq, type, ...figures } = event;
    state.queues.set(`${event.switch}/${event.queue}`, figures);
  } else if (event.type === "screen_pop") {
    if (event.device === myDevice() || event.agent === session.agent) {
      state.pops.set(event.call_id, event);
      state.lastPop = event;
      callFor(event);
    }
  } else if (typeof event.call_id === "string") {
    applyCallEvent(event);
  }
}

function callFor(event) {
  let call = state.calls.get(event.call_id);
  if (!call) {
    call = { call_id: event.call_id, switch: event.switch, connections: new Map(), data: {} };
    state.calls.set(event.call_id, call);
  }
  for (const name of ["calling_number", "called_number", "queue", "agent"]) {
    if (event[name] != null) call[name] = event[name];
  }
  if (event.data) call.data = { ...call.data, ...event.data };
  return call;
}

function applyCallEvent(event) {
  if (event.type === "call_cleared") {
    state.calls.delete(event.call_id);
    state.pops.delete(event.call_id);
    return;
  }
  if (event.secondary_call_id) {
    // transferred / conferenced: the other call was merged into this one
    state.calls.delete(event.secondary_call_id);
    const pop = state.pops.get(event.secondary_call_id);
    state.pops.delete(event.secondary_call_id);
    if (pop && !state.pops.has(event.call_id)) state.pops.set(event.call_id, pop);
  }
  const call = callFor(event);
  if (event.device && typeof event.connection_state === "string") {
    if (event.connection_state === "null") call.connections.delete(event.device);
    else call.connections.set(event.device, event.connection_state);
  }
}

// -- what the agent sees -------------------------------------------------------------------
let renderQueued = false;

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    render();
  });
}

function render() {
  if (!session) return;
  renderAgent();
  renderCall();
  renderPop();
  renderQueues();
}

function setText(id, text) {
  $(id).textContent = text == null || text === "" ? "—" : String(text);
}

function renderAgent() {
  const agent = myAgent();
  setText("agent-id", session.agent);
  setText("agent-device", myDevice());
  const current = agent?.state || "unknown";
  $("agent-state").textContent = current.replaceAll("_", " ");
  $("agent-state").dataset.state = current;
  $("agent-reason").textContent = agent?.reason ? `(${agent.reason})` : "";
}

// The calls at this agent's device: the active one (talking or ringing) and a held one.
function myCalls() {
  const device = myDevice();
  let active = null;
  let held = null;
  for (const call of state.calls.values()) {
    const connection = call.connections.get(device);
    if (connection === "held") held = call;
    else if (connection) active = call;
  }
  return { active, held, device };
}

function renderCall() {
  const { active, held, device } = myCalls();
  const call = active || held;
  $("no-call").hidden = Boolean(call);
  $("call").hidden = !call;
  if (!call) return;
  const mine = call.connections.get(device);
  $("call-state").textContent = mine;
  $("call-state").dataset.state = mine;
  setText("call-from", call.calling_number);
  setText("call-to", call.called_number);
  $("call-queue-part").hidden = !call.queue;
  setText("call-queue", call.queue);
  const pop = state.pops.get(call.call_id);
  const wait = pop?.customer?.wait_seconds;
  $("call-wait-part").hidden = wait == null;
  setText("call-wait", wait == null ? "" : seconds(wait));
  $("call-held").hidden = !(active && held);
  setText("call-held-from", held?.calling_number ?? held?.called_number);
  $("answer").disabled = mine !== "alerting";
  $("hold").disabled = mine !== "connected";
  $("retrieve").disabled = mine !== "held";
  $("hangup").disabled = false;
  $("blind").disabled = mine !== "connected";
  $("consult").disabled = mine !== "connected";
  $("complete").disabled = !(active && held);
}

function renderPop() {
  const { active, held } = myCalls();
  const pop =
    (active && state.pops.get(active.call_id)) ||
    (held && state.pops.get(held.call_id)) ||
    state.lastPop;
  if (!pop) {
    $("customer").hidden = true;
    $("pop-summary").textContent = "No customer yet.";
    return;
  }
  const customer = pop.customer || { known: false };
  const live = state.calls.has(pop.call_id);
  const who = customer.known ? customer.name : `Unknown caller ${customer.number ?? pop.calling_number ?? ""}`;
  const tier = customer.known && customer.tier ? ` (${customer.tier})` : "";
  $("pop-summary").textContent = `${live ? "Call from" : "Last call:"} ${who}${tier}`;
  $("customer").hidden = false;
  setText("customer-name", customer.known ? customer.name : "Unknown caller");
  setText("customer-tier", customer.tier);
  setText("customer-account", customer.account);
  setText("customer-number", customer.number ?? pop.calling_number);
  setText(
    "customer-notes",
    customer.unavailable ? "Customer records are unavailable right now." : customer.notes,
  );
  fillRows("ivr", Object.entries(pop.data || {}), ([name, value]) => [name, value]);
  fillRows("history", customer.interactions || [], (past) => [
    when(past.started), past.queue, past.agent, past.outcome,
  ]);
  acknowledge(pop);
}

function acknowledge(pop) {
  if (state.acked.has(pop.seq) || !socket || socket.readyState !== WebSocket.OPEN) return;
  state.acked.add(pop.seq);
  socket.send(JSON.stringify({ type: "ack", seq: pop.seq }));
}

function renderQueues() {
  if (!session) return;
  $("queues-note").textContent = state.queues.size ? "" : statsProblem || "No queue figures yet.";
  const rows = [...state.queues.values()].sort((a, b) => a.queue.localeCompare(b.queue));
  fillRows("queues", rows, (q) => [
    q.queue,
    q.calls_waiting,
    seconds(longestWait(q)),
    q.agents_ready,
    q.agents_busy,
    q.agents_not_ready,
    q.agents_working_after_call,
    q.calls_answered,
    q.calls_abandoned,
    q.service_level_percent == null ? "" : `${Math.round(q.service_level_percent)} %`,
  ]);
}

function longestWait(q) {
  if (!q.calls_waiting) return 0;
  const since = (Date.now() - state.skew - Date.parse(q.time)) / 1000;
  return q.longest_wait_seconds + Math.max(0, since);
}

let statsProblem = ""; // why the REST figures could not be read, if they could not

function applyStatsReply(reply) {
  if (reply.ok) {
    for (const figures of reply.body.queues) {
      const key = `${figures.switch}/${figures.queue}`;
      const known = state.queues.get(key);
      if (!known || known.time <= figures.time) state.queues.set(key, figures);
    }
    statsProblem = "";
  } else {
    statsProblem = `Queue figures unavailable: ${describe(reply)}`;
  }
  renderQueues();
}

function fillRows(id, items, cells) {
  const rows = items.map((item) => {
    const tr = document.createElement("tr");
    for (const value of cells(item)) {
      const td = document.createElement("td");
      td.textContent = value == null ? "" : String(value);
      if (typeof value === "number") td.className = "number";
      tr.append(td);
    }
    return tr;
  });
  $(id).replaceChildren(...rows);
}

function seconds(value) {
  const total = Math.round(value);
  return total < 60 ? `${total} s` : `${Math.floor(total / 60)} min ${total % 60} s`;
}

function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

function setStatus(text) {
  $("connection").textContent = text;
}

function showProblem(text) {
  $("problem").textContent = text;
  $("problem").hidden = false;
}

// -- commands ------------------------------------------------------------------------------
// {status, ok, body}; status 0 when ctilink could not be reached.
async function api(method, path, body, token = session?.token) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    const response = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
    let parsed = null;
    try {
      parsed = await response.json();
    } catch {
      // not JSON: described by the status
    }
    return { status: response.status, ok: response.ok, body: parsed };
  } catch (error) {
    return { status: 0, ok: false, body: { error: "unreachable", message: String(error) } };
  }
}

function describe(reply) {
  const body = reply.body || {};
  const code = body.error || `HTTP ${reply.status}`;
  return body.message ? `${code}: ${body.message}` : code;
}

async function command(button, label, method, path, body) {
  $("problem").hidden = true;
  button.disabled = true;
  try {
    const reply = await api(method, path, body);
    if (!reply.ok) showProblem(`${label} failed (${reply.status}) ${describe(reply)}`);
    return reply;
  } finally {
    button.disabled = false;
    scheduleRender(); // the right buttons again
  }
}

function callCommand(button, label, name, extra = {}) {
  const { active, held, device } = myCalls();
  const call = name === "retrieve" ? held || active : active || held;
  if (!call) return;
  const path = `/calls/${encodeURIComponent(call.call_id)}/${name}`;
  command(button, label, "POST", path, { device, ...extra });
}

function destination() {
  const input = $("transfer-to");
  if (!input.value.trim() || !input.checkValidity()) {
    showProblem("Enter the number to transfer to (digits, * and #).");
    input.focus();
    return null;
  }
  return input.value.trim();
}

function agentSwitch() {
  const agent = myAgent();
  return agent ? { switch: agent.switch } : {};
}

function wire() {
  $("signin").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signOut("Signed out."));
  $("answer").addEventListener("click", (e) => callCommand(e.target, "Answer", "answer"));
  $("hold").addEventListener("click", (e) => callCommand(e.target, "Hold", "hold"));
  $("retrieve").addEventListener("click", (e) => callCommand(e.target, "Retrieve", "retrieve"));
  $("hangup").addEventListener("click", (e) =>
    callCommand(e.target, "Hang up", "clear_connection"),
  );
  $("blind").addEventListener("click", (e) => {
    const number = destination();
    if (number) callCommand(e.target, "Blind transfer", "blind_transfer", { destination: number });
  });
  $("consult").addEventListener("click", (e) => {
    const number = destination();
    if (number) callCommand(e.target, "Consult", "consultation", { destination: number });
  });
  $("complete").addEventListener("click", (e) => {
    const { active, held, device } = myCalls();
    if (!active || !held) return;
    const path = `/calls/${encodeURIComponent(held.call_id)}/transfer`;
    command(e.target, "Complete transfer", "POST", path, {
      device,
      active_call_id: active.call_id,
    });
  });
  $("transfer-form").addEventListener("submit", (e) => e.preventDefault());
  $("dial-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const number = $("dial-number").value.trim();
    command($("dial"), "Call", "POST", "/calls", { device: myDevice(), number, ...agentSwitch() });
  });
  $("state-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const wanted = $("state-choice").value;
    const body = { state: wanted, ...agentSwitch() };
    const queue = $("state-queue").value.trim();
    const reason = $("state-reason").value.trim();
    if (queue) body.queue = queue;
    if (reason && wanted === "not_ready") body.reason = reason;
    const path = `/agents/${encodeURIComponent(session.agent)}/state`;
    command($("state-set"), "State change", "POST", path, body);
  });
}

wire();
session = readSession();
if (session) start(null);
