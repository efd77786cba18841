// The web remote: XMPP over WebSocket (RFC 7395) to the buttons-agent that served this page.
// Plain browser JavaScript, no build step. Protocol: docs/protocol.md and docs/web.md.
"use strict";

const FRAMING_NS = "urn:ietf:params:xml:ns:xmpp-framing";
const CLIENT_NS = "jabber:client";
const BUTTONS_NS = "urn:buttons-agent:remote:0";
const PING_NS = "urn:xmpp:ping";
const HOLD_DELAY_MS = 400; // a press held this long becomes a hold (repeats on the TV)
const HOLD_REFRESH_MS = 3000; // "still held" before the agent's hold timeout releases it
const PING_EVERY_MS = 25000; // keeps the agent's idle timeout away and notices dead Wi-Fi
const REQUEST_TIMEOUT_MS = 8000;
const TEXT_DEBOUNCE_MS = 350;

const $ = (id) => document.getElementById(id);
const view = {
  status: $("status"), remote: $("remote"), pairing: $("pairing"),
  pairingError: $("pairing-error"), title: $("np-title"), state: $("np-state"),
  bar: $("np-bar"), time: $("np-time"), focus: $("np-focus"), volume: $("np-volume"),
  muted: $("np-muted"), more: $("more-buttons"), dialog: $("text-dialog"),
  dialogTitle: $("text-title"), input: $("text-input"), form: $("text-form"),
};

// -- XML helpers ---------------------------------------------------------------------------

function esc(text) {
  return String(text).replace(/[<>&'"]/g, (c) => ({
    "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;",
  })[c]);
}

function attrs(map) {
  return Object.entries(map).map(([k, v]) => ` ${k}='${esc(v)}'`).join("");
}

function parseXml(text) {
  const doc = new DOMParser().parseFromString(text, "application/xml");
  if (doc.getElementsByTagName("parsererror").length) return null;
  return doc.documentElement;
}

function child(element, ns, name) {
  return element ? element.getElementsByTagNameNS(ns, name)[0] || null : null;
}

// -- the connection ------------------------------------------------------------------------

const link = {
  ws: null,
  open: false,
  nextId: 1,
  pending: new Map(), // iq id → {resolve, reject, timer}
  retryMs: 500,
  pingTimer: null,
  reconnectTimer: null,
};

function setStatus(text, kind) {
  view.status.textContent = text;
  view.status.className = `status ${kind}`;
  view.remote.classList.toggle("reconnecting", kind === "offline");
  view.remote.setAttribute("aria-busy", kind === "offline" ? "true" : "false");
}

function connect() {
  clearTimeout(link.reconnectTimer);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/xmpp-websocket`, "xmpp");
  link.ws = ws;
  ws.onopen = () => {
    ws.send(`<open xmlns='${FRAMING_NS}'${attrs({ to: location.hostname, version: "1.0" })}/>`);
  };
  ws.onmessage = (event) => onMessage(ws, event.data);
  ws.onclose = () => onClosed(ws);
  ws.onerror = () => {}; // onclose follows and handles it
}

function onMessage(ws, data) {
  const element = parseXml(data);
  if (!element || ws !== link.ws) return;
  const ns = element.namespaceURI;
  const name = element.localName;
  if (ns === FRAMING_NS && name === "open") {
    link.open = true;
    link.retryMs = 500;
    setStatus("Connected", "online");
    view.remote.hidden = false;
    view.pairing.hidden = true;
    startSession();
  } else if (ns === FRAMING_NS && name === "close") {
    ws.close(1000);
  } else if (name === "iq") {
    const waiter = link.pending.get(element.getAttribute("id"));
    if (!waiter) return;
    link.pending.delete(element.getAttribute("id"));
    clearTimeout(waiter.timer);
    if (element.getAttribute("type") === "result") waiter.resolve(element);
    else waiter.reject(new Error(errorText(element)));
  } else if (name === "message") {
    const state = child(element, BUTTONS_NS, "state");
    if (state) showState(state);
  }
}

function errorText(iq) {
  const text = iq.getElementsByTagNameNS("urn:ietf:params:xml:ns:xmpp-stanzas", "text")[0];
  return text ? text.textContent : "the TV refused";
}

async function onClosed(ws) {
  if (ws !== link.ws) return;
  link.open = false;
  link.ws = null;
  clearInterval(link.pingTimer);
  for (const waiter of link.pending.values()) {
    clearTimeout(waiter.timer);
    waiter.reject(new Error("disconnected"));
  }
  link.pending.clear();
  releaseAllHolds(false);
  if (!(await stillPaired())) return;
  setStatus("Reconnecting…", "offline");
  link.reconnectTimer = setTimeout(connect, link.retryMs);
  link.retryMs = Math.min(link.retryMs * 2, 5000);
}

function request(type, payload) {
  return new Promise((resolve, reject) => {
    if (!link.open) return reject(new Error("not connected"));
    const id = `w${link.nextId++}`;
    const timer = setTimeout(() => {
      link.pending.delete(id);
      reject(new Error("no answer"));
      if (link.ws) link.ws.close(); // a silent link is a dead link: reconnect
    }, REQUEST_TIMEOUT_MS);
    link.pending.set(id, { resolve, reject, timer });
    link.ws.send(`<iq xmlns='${CLIENT_NS}'${attrs({ type, id })}>${payload}</iq>`);
  });
}

function buttonsRequest(type, local, attributes = {}, text = null) {
  const body = text === null ? "/>" : `>${esc(text)}</${local}>`;
  return request(type, `<${local} xmlns='${BUTTONS_NS}'${attrs(attributes)}${body}`);
}

async function startSession() {
  link.pingTimer = setInterval(() => {
    request("get", `<ping xmlns='${PING_NS}'/>`).catch(() => {});
  }, PING_EVERY_MS);
  try {
    const buttons = await buttonsRequest("get", "buttons");
    showButtons(child(buttons, BUTTONS_NS, "buttons"));
    const state = await buttonsRequest("get", "state");
    showState(child(state, BUTTONS_NS, "state"));
    await buttonsRequest("set", "subscribe");
  } catch (error) {
    console.warn("session setup:", error.message);
  }
}

// -- pairing ---------------------------------------------------------------------------------

async function stillPaired() {
  try {
    const response = await fetch("/session", { cache: "no-store" });
    if (response.status === 401) {
      showUnpaired();
      return false;
    }
  } catch (_) {
    // the agent is unreachable: keep trying to reconnect
  }
  return true;
}

function showUnpaired(message) {
  setStatus("Not paired", "unpaired");
  view.remote.hidden = true;
  view.pairing.hidden = false;
  view.pairingError.hidden = !message;
  view.pairingError.textContent = message || "";
}

async function pairWith(token) {
  history.replaceState(null, "", location.pathname); // the token is single-use: drop it
  const response = await fetch("/pair", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token }),
  });
  return response.ok;
}

async function start() {
  const token = new URLSearchParams(location.hash.slice(1)).get("pair");
  if (token) {
    setStatus("Pairing…", "offline");
    if (!(await pairWith(token).catch(() => false))) {
      showUnpaired("That pairing code did not work (it is single-use and expires). " +
        "Open pairing on the TV again and scan the new code.");
      return;
    }
  }
  if (await stillPaired()) connect();
}

// -- state -----------------------------------------------------------------------------------

const playing = { position: null, duration: null, speed: 0, at: 0, playback: "stopped" };

function formatTime(seconds) {
  if (seconds === null || !isFinite(seconds)) return "";
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(h ? 2 : 1, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function numberAttr(element, name) {
  const value = element ? element.getAttribute(name) : null;
  return value === null || value === "" ? null : Number(value);
}

function showState(state) {
  if (!state) return;
  const item = child(state, BUTTONS_NS, "playing");
  const available = state.getAttribute("available") !== "false";
  const power = state.getAttribute("power") !== "off";
  const playback = state.getAttribute("playback") || "stopped";
  const title = item && item.getAttribute("title");
  playing.position = numberAttr(item, "position");
  playing.duration = numberAttr(item, "duration");
  playing.speed = playback === "playing" ? (numberAttr(item, "speed") ?? 1) : 0;
  playing.at = performance.now();
  playing.playback = playback;

  let label = { playing: "Playing", paused: "Paused", stopped: "Stopped" }[playback] || playback;
  if (playback === "playing" && playing.speed !== 1 && playing.speed) label += ` ×${playing.speed}`;
  if (!power) label = "TV off";
  if (!available) label = "TV unavailable";
  view.state.textContent = label;
  view.title.textContent = !available
    ? (state.getAttribute("message") || "The TV is not reachable")
    : (title || (playback === "stopped" ? "Nothing playing" : "Untitled"));
  const volume = state.getAttribute("volume");
  view.volume.textContent = volume === null ? "Volume –" : `Volume ${volume}`;
  view.muted.hidden = state.getAttribute("muted") !== "true";
  const focused = state.getAttribute("focused");
  view.focus.textContent = focused ? `Focus: ${focused}` : "";
  tick();

  const input = child(state, BUTTONS_NS, "input");
  if (input) openTextDialog(input.getAttribute("title") || "The TV asks for text",
    input.getAttribute("kind") || "keyboard", input.getAttribute("value") || "");
  else closeTextDialog(false);
}

function tick() {
  let position = playing.position;
  if (position !== null && playing.speed) {
    position += ((performance.now() - playing.at) / 1000) * playing.speed;
    if (playing.duration) position = Math.min(position, playing.duration);
  }
  const parts = [formatTime(position), formatTime(playing.duration)].filter(Boolean);
  view.time.textContent = parts.join(" / ");
  const fraction = playing.duration ? Math.min(1, (position || 0) / playing.duration) : 0;
  view.bar.style.width = `${(fraction * 100).toFixed(1)}%`;
}
setInterval(tick, 1000);

// -- buttons ---------------------------------------------------------------------------------

const repeatable = new Set(["up", "down", "left", "right", "volume_up", "volume_down",
  "rewind", "fast_forward", "channel_up", "channel_down"]);

function showButtons(list) {
  if (!list) return;
  const supported = new Map();
  for (const b of list.getElementsByTagNameNS(BUTTONS_NS, "button")) {
    supported.set(b.getAttribute("name"), b);
    if (b.getAttribute("repeatable") === "true") repeatable.add(b.getAttribute("name"));
  }
  const onPage = new Set();
  for (const key of document.querySelectorAll("main [data-button]")) {
    if (key.parentElement === view.more) continue;
    onPage.add(key.dataset.button);
    key.hidden = !supported.has(key.dataset.button);
  }
  view.more.replaceChildren();
  for (const [name, info] of supported) {
    if (onPage.has(name)) continue;
    const key = document.createElement("button");
    key.className = "key";
    key.dataset.button = name;
    key.textContent = info.getAttribute("label") || name;
    key.setAttribute("aria-label", info.getAttribute("label") || name);
    wireKey(key);
    view.more.append(key);
  }
  $("more").hidden = view.more.children.length === 0;
}

function feedback() {
  if (navigator.vibrate) navigator.vibrate(12);
}

function press(name) {
  feedback();
  buttonsRequest("set", "press", { button: name }).catch((e) => console.warn(name, e.message));
}

const holds = new Map(); // button → {timer, refresh, held}

function beginPointer(key, event) {
  const name = key.dataset.button;
  if (!repeatable.has(name) || event.button > 0) return;
  key.setPointerCapture?.(event.pointerId);
  key.classList.add("pressed");
  const hold = { held: false, refresh: null, timer: null };
  hold.timer = setTimeout(() => {
    hold.held = true;
    feedback();
    const start = () => buttonsRequest("set", "hold", { button: name, action: "start" })
      .catch((e) => console.warn(name, e.message));
    start();
    hold.refresh = setInterval(start, HOLD_REFRESH_MS);
  }, HOLD_DELAY_MS);
  holds.set(name, hold);
}

function endPointer(key) {
  const name = key.dataset.button;
  key.classList.remove("pressed");
  const hold = holds.get(name);
  if (!hold) return;
  holds.delete(name);
  clearTimeout(hold.timer);
  clearInterval(hold.refresh);
  if (hold.held) {
    key.dataset.suppressClick = "1"; // the hold was the press
    buttonsRequest("set", "hold", { button: name, action: "stop" }).catch(() => {});
  }
}

function releaseAllHolds(send) {
  for (const [name, hold] of holds) {
    clearTimeout(hold.timer);
    clearInterval(hold.refresh);
    if (send && hold.held) {
      buttonsRequest("set", "hold", { button: name, action: "stop" }).catch(() => {});
    }
  }
  holds.clear();
}

function wireKey(key) {
  key.addEventListener("pointerdown", (event) => beginPointer(key, event));
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
    key.addEventListener(type, () => endPointer(key));
  }
  key.addEventListener("contextmenu", (event) => event.preventDefault());
  key.addEventListener("click", () => {
    if (key.dataset.suppressClick) {
      delete key.dataset.suppressClick;
      return;
    }
    press(key.dataset.button);
  });
}

document.querySelectorAll("[data-button]").forEach(wireKey);
document.addEventListener("visibilitychange", () => {
  if (document.hidden) releaseAllHolds(true);
});

const keyboardShortcuts = {
  ArrowUp: "up", ArrowDown: "down", ArrowLeft: "left", ArrowRight: "right",
  Escape: "back", Backspace: "back", "+": "volume_up", "-": "volume_down",
  m: "mute", i: "info", h: "home", c: "context_menu", " ": "play_pause",
};

document.addEventListener("keydown", (event) => {
  if (!view.dialog.hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  const onControl = event.target.closest && event.target.closest("button, summary, input");
  const name = event.key === "Enter" && !onControl ? "select" : keyboardShortcuts[event.key];
  if (!name || (onControl && (event.key === " " || event.key === "Enter"))) return;
  event.preventDefault();
  press(name);
});

// -- text input ------------------------------------------------------------------------------

let textTimer = null;
let askedByTv = false;

function openTextDialog(title, kind, value) {
  const wasOpen = !view.dialog.hidden;
  askedByTv = true;
  view.dialogTitle.textContent = title;
  view.input.type = kind === "password" ? "password" : "text";
  view.input.inputMode = kind === "numeric" ? "numeric" : "text";
  if (!wasOpen) {
    view.input.value = value;
    view.dialog.hidden = false;
    view.input.focus();
  }
}

function closeTextDialog(cancelled) {
  if (view.dialog.hidden) return;
  clearTimeout(textTimer);
  view.dialog.hidden = true;
  if (cancelled && askedByTv) press("back");
  askedByTv = false;
}

function sendText(submit) {
  clearTimeout(textTimer);
  return buttonsRequest("set", "text", submit ? {} : { submit: "false" }, view.input.value);
}

view.input.addEventListener("input", () => {
  clearTimeout(textTimer);
  textTimer = setTimeout(() => sendText(false).catch(() => {}), TEXT_DEBOUNCE_MS);
});
view.form.addEventListener("submit", (event) => {
  event.preventDefault();
  sendText(true).then(() => closeTextDialog(false), (e) => console.warn("text", e.message));
});
$("text-cancel").addEventListener("click", () => closeTextDialog(true));
view.dialog.addEventListener("keydown", (event) => {
  if (event.key === "Escape") closeTextDialog(true);
});
$("type-text").addEventListener("click", () => {
  openTextDialog("Type on the TV", "keyboard", "");
  askedByTv = false;
});

window.addEventListener("hashchange", () => {
  // Scanning the code again while this page is open only changes the fragment.
  if (location.hash.includes("pair=") && !link.ws) start();
});
window.addEventListener("online", () => {
  if (!link.ws && view.pairing.hidden) connect();
});

start();
