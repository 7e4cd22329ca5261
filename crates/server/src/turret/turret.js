// OpenTurret web turret. Speaks the client protocol (docs/protocol.md) over
// the WebSocket at /client. Builds the page with DOM calls only (never
// innerHTML), so no contact name or number can inject markup.
"use strict";

(() => {
  const app = document.getElementById("app");
  const linkEl = document.getElementById("link");
  const whoEl = document.getElementById("who");
  const logoutBtn = document.getElementById("logout");

  // h("tag.class", {attr: value, onclick: fn}, child, ...)
  function h(spec, attrs, ...children) {
    const [tag, ...classes] = spec.split(".");
    const el = document.createElement(tag);
    if (classes.length) el.className = classes.join(" ");
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const state = {
    ws: null, nextId: 1, pending: new Map(), token: sessionStorage.getItem("turret-token"),
    config: null, tab: "contacts", contacts: null, contactsLocked: false, callMemory: null,
    callMemoryLocked: true, search: "", retry: 500, error: "",
    calls: new Map(), lineStates: new Map(),
    voice: null, audioProblems: new Map(),
  };

  // What the server says about a call's audio, beside the call.
  function audioProblem(id, text) {
    if (text) state.audioProblems.set(id, text); else state.audioProblems.delete(id);
    const el = document.getElementById(`call-audio-${id}`);
    if (el) el.textContent = text;
  }

  function voice() {
    if (!state.voice) {
      state.voice = window.TurretVoice.create(request, audioProblem);
      // For diagnostics in the browser's console (and the voice tests).
      window.turretVoice = state.voice;
    }
    return state.voice;
  }
  // Browsers start sound only after a click or key on the page.
  document.addEventListener("pointerdown", () => { if (state.voice) state.voice.context(); });
  document.addEventListener("keydown", () => { if (state.voice) state.voice.context(); });

  function request(op, params) {
    return new Promise((resolve, reject) => {
      if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return reject({ code: "offline", message: "not connected" });
      const id = state.nextId++;
      state.pending.set(id, { resolve, reject });
      state.ws.send(JSON.stringify(Object.assign({ id, op }, params || {})));
    });
  }

  function setLink(text, cls) { linkEl.textContent = text; linkEl.className = "link " + (cls || ""); }

  function connect() {
    const ws = new WebSocket(`wss://${location.host}/client`);
    state.ws = ws;
    ws.onopen = async () => {
      state.retry = 500;
      state.restarting = false;
      setLink("connected", "up");
      try {
        await request("hello", { version: 1 });
        if (state.token) {
          try {
            const r = await request("resume", { token: state.token });
            state.config = r.config;
            if (r.restored) {
              // The server restarted: the call-memory key left with it.
              state.callMemory = null; state.callMemoryLocked = true; state.contacts = null;
              state.restoredNote = true;
            }
            renderDesk();
            return loadCalls();
          } catch (e) { forget(); }
        }
        renderLogin();
      } catch (e) { showError(e); }
    };
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.push) return onPush(m);
      const p = state.pending.get(m.re);
      if (!p) return;
      state.pending.delete(m.re);
      if (m.error) p.reject(m.error); else p.resolve(m.ok);
    };
    ws.onclose = (ev) => {
      // 1012: the server said it is restarting; say so until it is back.
      if (ev.code === 1012) state.restarting = true;
      setLink(state.restarting ? "server restarting, reconnecting…" : "reconnecting…", "down");
      for (const p of state.pending.values()) p.reject({ code: "offline", message: "connection lost" });
      state.pending.clear();
      setTimeout(connect, state.retry);
      state.retry = Math.min(state.retry * 2, 10000);
    };
  }

  function forget() {
    state.token = null; state.config = null; state.contacts = null; state.callMemory = null;
    for (const id of state.calls.keys()) if (state.voice) state.voice.close(id);
    state.calls.clear(); state.lineStates.clear();
    sessionStorage.removeItem("turret-token");
    whoEl.textContent = ""; logoutBtn.hidden = true;
  }

  function onPush(m) {
    if (m.push === "call") {
      const c = m.call;
      const failed = c.state === "ended" && c.direction === "out" && c.here && !c.answered
        && c.reason && !["local_hangup", "cancelled", "shutdown"].includes(c.reason);
      if (failed) {
        // Said beside the call until dismissed, or for 20 s.
        state.calls.set(c.id, Object.assign(c, { state: "failed" }));
        setTimeout(() => { if ((state.calls.get(c.id) || {}).state === "failed") { state.calls.delete(c.id); renderCalls(); } }, 20000);
      } else if (c.state === "ended" || c.state === "rejected_here") state.calls.delete(c.id);
      else state.calls.set(c.id, c);
      return renderCalls();
    }
    if (m.push === "line_state") {
      state.lineStates.set(m.line_id, m);
      // An error about lines stops being true once one is registered.
      const de = document.getElementById("dial-error");
      if (m.state === "registered" && de && /line/.test(de.textContent)) de.textContent = "";
      return renderCalls();
    }
    if (m.push === "config" && state.config) { state.config = m.config; renderDesk(); }
    else if (m.push === "contacts_changed" && state.contacts) loadContacts();
    else if (m.push === "call_memory_added" && state.callMemory) loadCallMemory();
    else if (m.push === "session_ended") {
      forget();
      renderLogin(m.reason === "password_changed" ? "Your profile password was changed: log in again."
        : "This profile no longer exists.");
    }
  }

  // The last error stays on screen until the next action, even when a push
  // redraws the panel it belongs to.
  function showError(e, where) {
    const text = e.message || String(e);
    if (where) { const w = document.getElementById(where); if (w) w.textContent = text; return; }
    state.error = text;
    const el = document.getElementById("error");
    if (el) el.textContent = state.error;
  }

  function errorLine() {
    return h("p.error", { id: "error", role: "alert", text: state.error });
  }

  function clearError() {
    state.error = "";
    const el = document.getElementById("error");
    if (el) el.textContent = "";
  }

  async function renderLogin(notice) {
    app.replaceChildren(h("p.muted", { text: "Loading profiles…" }));
    let profiles = [];
    try { profiles = await request("profiles"); } catch (e) { return showError(e); }
    let chosen = null;
    const buttons = profiles.map((p) => h("button", {
      type: "button", "aria-pressed": "false", "data-profile": p.id,
      onclick: (ev) => {
        chosen = p.id;
        for (const b of buttons) b.setAttribute("aria-pressed", String(b === ev.currentTarget));
        pw.focus();
      },
    }, p.name));
    const pw = h("input", { id: "password", type: "password", autocomplete: "current-password" });
    const form = h("form", {
      onsubmit: async (ev) => {
        ev.preventDefault();
        if (chosen === null) return showError({ message: "Choose your profile." });
        try {
          const r = await request("login", { profile_id: chosen, password: pw.value });
          state.token = r.token; sessionStorage.setItem("turret-token", r.token);
          state.config = r.config; state.contacts = null; state.callMemory = null;
          renderDesk();
          loadCalls();
        } catch (e) { pw.value = ""; showError(e); }
      },
    },
      h("div.profiles", { role: "group", "aria-label": "Profiles" }, buttons),
      h("label", { for: "password", text: "Profile password" }), pw, " ",
      h("button", { type: "submit", id: "login" }, "Log in"),
      errorLine());
    app.replaceChildren(h("section.login", {},
      h("h1", { text: "Choose your profile" }),
      notice ? h("p.notice", { text: notice }) : null,
      profiles.length ? form : h("p.muted", { text: "No profiles yet: an administrator creates them in the Management Portal." })));
  }

  function dialKeys(c, kind) {
    return c.speed_dials.filter((k) => k.kind === kind).map((k) =>
      h("div.key", { role: "listitem", "data-key": k.id, tabindex: "0", title: `Call ${k.number}`,
        onclick: (ev) => { if (!ev.target.closest(".remove")) dial(k.number); } },
        h("span.pos", { text: `${kind} ${k.position}` }), h("span.name", { text: k.name }), h("span.sub", { text: k.number }),
        h("button.ghost.remove", { type: "button", "aria-label": `Remove key ${k.name}`,
          onclick: async () => { clearError(); try { await request("delete_speed_dial", { key_id: k.id }); } catch (e) { showError(e); } } }, "×")));
  }

  // Own speed dial keys (SPEC rule 5); the pushed configuration redraws the grid.
  function addKeyForm() {
    const kind = h("select", { id: "key-kind" }, h("option", { value: "DKM" }, "DKM"), h("option", { value: "DKA" }, "DKA"));
    const pos = h("input", { id: "key-position", type: "number", min: "1", max: "999" });
    const name = h("input", { id: "key-name" });
    const number = h("input", { id: "key-number", inputmode: "tel" });
    return h("form.row", {
      onsubmit: async (ev) => {
        ev.preventDefault();
        clearError();
        try {
          await request("create_speed_dial", { kind: kind.value, position: Number(pos.value), name: name.value, number: number.value });
          pos.value = ""; name.value = ""; number.value = "";
          document.getElementById("key-error").textContent = "";
        } catch (e) { showError(e, "key-error"); }
      },
    }, h("div", {}, h("label", { for: "key-kind", text: "Kind" }), kind),
      h("div", {}, h("label", { for: "key-position", text: "Position" }), pos),
      h("div", {}, h("label", { for: "key-name", text: "Name" }), name),
      h("div", {}, h("label", { for: "key-number", text: "Number" }), number),
      h("button", { type: "submit", id: "add-key" }, "Add key"),
      h("p.error", { id: "key-error", role: "alert" }));
  }

  function keyGrid(items, label) {
    return h("div.keys", { role: "list", "aria-label": label }, items);
  }

  function renderDesk() {
    const c = state.config;
    const existing = document.getElementById("desk");
    const unitIds = c.speech_units.map((u) => u.id).join(" ");
    if (existing && existing.dataset.profile === String(c.profile.id) && existing.dataset.units === unitIds) return updateKeys(c);
    whoEl.textContent = c.profile.name;
    logoutBtn.hidden = false;
    const lines = lineKeys(c);
    const conc = c.concentrators.map((g) => h("div.key", { role: "listitem" },
      h("span.pos", { text: "Concentrator" }), h("span.name", { text: g.name }),
      h("span.sub", { text: `${g.line_ids.length} line(s)` })));
    const dials = (kind) => dialKeys(c, kind);
    voice().setUnits(c.speech_units);
    const units = h("div.units", { id: "units" }, c.speech_units.map(unitPanel), h("p.muted", { id: "sound-note", role: "status" }));
    const monitor = h("table", {}, h("thead", {}, h("tr", {}, h("th", { text: "Speech unit" }), h("th", { text: "Carries" }))),
      h("tbody", { id: "monitor" }));
    const tabs = h("div.tabs", { role: "tablist" },
      ["contacts", "call-memory"].map((t) => h("button", {
        type: "button", role: "tab", id: `tab-${t}`, "aria-selected": String(state.tab === t),
        onclick: () => { state.tab = t; renderTab(); },
      }, t === "contacts" ? "Contacts" : "Call memory")));
    const tabBody = h("div", { id: "tab-body" });
    app.replaceChildren(h("div.desk", { id: "desk", "data-profile": c.profile.id, "data-units": unitIds },
      h("div", {},
        h("section.panel", {}, h("h2", { text: "Line keys" }), keyGrid(lines, "Line keys")),
        h("section.panel", {}, h("h2", { text: "Concentrator keys" }), conc.length ? keyGrid(conc, "Concentrator keys") : h("p.muted", { text: "None." }))),
      h("div", {},
        h("section.panel", {}, h("h2", { text: "Call queue" }), h("div", { id: "queue" }), dialForm(c)),
        h("section.panel", {}, h("h2", { text: "Speech units" }), units),
        h("section.panel", {}, h("h2", { text: "Speech monitor" }), monitor)),
      h("div", {},
        h("section.panel", {}, h("h2", { text: "Speed dial — DKA" }), keyGrid(dials("DKA"), "DKA keys")),
        h("section.panel", {}, h("h2", { text: "Speed dial — DKM" }), keyGrid(dials("DKM"), "DKM keys"), addKeyForm()),
        h("section.panel", {}, tabs, tabBody))));
    renderTab();
    renderCalls();
  }

  // ----- telephony -------------------------------------------------------

  async function loadCalls() {
    try {
      const r = await request("calls");
      state.calls = new Map(r.calls.map((c) => [c.id, c]));
      for (const l of r.lines) state.lineStates.set(l.line_id, l);
    } catch (e) { if (e.code !== "telephony_off") showError(e); }
    renderCalls();
  }

  // An operation whose error shows beside the control that caused it
  // (`where`: the id of that control's error element) until the next try.
  async function act(op, params, where) {
    clearError();
    if (where) { const w = document.getElementById(where); if (w) w.textContent = ""; }
    try { return await request(op, params); } catch (e) { showError(e, where); }
  }

  // Answers on the speech unit chosen beside the call (handset 1 unless
  // another was chosen).
  function answer(call) {
    const sel = document.getElementById(`answer-unit-${call.id}`);
    return act("answer", { call_id: call.id, speech_unit: sel ? sel.value : "handset-1" }, `call-error-${call.id}`);
  }

  function unitSelect(id, value, onchange) {
    return h("select", { id, "aria-label": "Speech unit", onchange },
      state.config.speech_units.map((u) => h("option", { value: u.id, selected: u.id === value }, u.name)));
  }

  function dial(number, lineId) {
    if (!number) return showError({ message: "Enter a number to dial." }, "dial-error");
    return act("dial", { number, line_id: lineId || null }, "dial-error");
  }

  // Why a call failed, in words, from the SIP answer or our own reason.
  function explain(reason) {
    const code = Number((/^(\d{3})\b/.exec(reason || "") || [])[1]);
    const words = { 404: "number not found", 484: "number incomplete", 604: "number does not exist",
      486: "busy", 600: "busy", 480: "not available", 408: "no answer", 403: "refused by the PBX",
      487: "cancelled", 488: "call type not accepted", 606: "call type not accepted",
      500: "PBX error", 503: "PBX unavailable" }[code];
    const own = { no_answer: "no answer", cancelled: "cancelled", rejected: "rejected",
      "authentication failed": "the PBX refused the line's password" }[reason];
    if (words) return `${words} (${reason})`;
    return own || reason || "failed";
  }

  // 24-hour times whatever the browser's locale prefers.
  function fmtTime(at) {
    return new Date(at).toLocaleString(undefined, { year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined) return "";
    const s = Math.round(ms / 1000);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  const activityText = { ringing: "ringing", busy_here: "busy here", busy_elsewhere: "busy at another turret", held: "held" };

  // A line key shows its registration and what happens on it now.
  function lineKeys(c) {
    return c.line_keys.map((k) => {
      const call = [...state.calls.values()].find((x) => x.line_id === k.line_id && x.state !== "failed");
      const reg = state.lineStates.get(k.line_id) || { state: k.state, reason: k.state_reason };
      const sub = call ? activityText[call.line_activity] || call.state
        : reg.state === "registered" ? (k.alternate_text || "idle")
        : reg.state === "failing" && reg.reason ? `failing: ${reg.reason}` : reg.state;
      return h("button.key" + (call ? " lit" : "") + (reg.state === "failing" ? " down" : ""), {
        type: "button", role: "listitem", "data-line": k.line_id, "data-activity": call ? call.line_activity : "idle",
        "data-registration": reg.state, title: reg.reason || "",
        onclick: () => {
          if (call && call.state === "ringing") return answer(call);
          const n = document.getElementById("dial-number");
          if (n && n.value) return dial(n.value, k.line_id);
          if (n) n.focus();
        },
      }, h("span.pos", { text: `Line ${k.position}` }), h("span.name", { text: k.display_name }), h("span.sub", { text: sub }));
    });
  }

  // A speech unit: what it carries, its meter, and its audio controls
  // (built once, so a slider or a held talk key survives the pushes).
  function unitPanel(u) {
    const v = voice();
    const toggle = (label, cls, set) => {
      const b = h("button.ghost." + cls, { type: "button", "aria-pressed": "false", onclick: () => {
        const on = b.getAttribute("aria-pressed") !== "true";
        b.setAttribute("aria-pressed", String(on));
        set(on);
      } }, label);
      return b;
    };
    const controls = [];
    if (u.kind === "speaker") {
      controls.push(h("label", { for: `volume-${u.id}`, text: "Volume" }),
        h("input", { id: `volume-${u.id}`, type: "range", min: "0", max: "1", step: "0.05", value: "1",
          oninput: (ev) => v.setVolume(u.id, Number(ev.target.value)) }),
        toggle("Mute", "mute", (on) => v.setMuted(u.id, on)));
      const talk = h("button.talk", { type: "button", title: "Hold to talk on this speaker channel" }, "Push to talk");
      const set = (on) => (ev) => { ev.preventDefault(); talk.setAttribute("aria-pressed", String(on)); v.setPtt(u.id, on); };
      talk.addEventListener("pointerdown", set(true));
      for (const e of ["pointerup", "pointerleave", "pointercancel"]) talk.addEventListener(e, set(false));
      controls.push(talk);
    } else {
      controls.push(toggle("Mute microphone", "mic-mute", (on) => v.setMicMuted(u.id, on)));
    }
    return h("div.unit", { "data-unit": u.id, "data-kind": u.kind }, h("strong", { text: u.name }),
      h("meter", { min: "0", max: "0.5", value: "0", "aria-label": `${u.name} level` }),
      h("div.state", { text: "idle" }),
      h("div.controls.calls"),
      h("div.controls.audio", {}, controls));
  }

  // The meters, and a word when the browser keeps the sound off.
  setInterval(() => {
    if (!state.voice) return;
    for (const m of document.querySelectorAll(".unit[data-unit] meter")) {
      m.value = state.voice.level(m.closest(".unit").dataset.unit);
    }
    const note = document.getElementById("sound-note");
    if (note) note.textContent = state.voice.suspended() && state.calls.size ? "Sound is off until you click on the page." : "";
  }, 100);

  function dialForm(c) {
    const number = h("input", { id: "dial-number", inputmode: "tel", autocomplete: "off", placeholder: "Number" });
    const line = h("select", { id: "dial-line" }, h("option", { value: "" }, "Any free line"),
      c.line_keys.map((k) => h("option", { value: k.line_id }, k.display_name || `Line ${k.position}`)));
    return h("form.row", {
      onsubmit: (ev) => { ev.preventDefault(); dial(number.value.trim(), Number(line.value) || null); },
    }, h("div", {}, h("label", { for: "dial-number", text: "Dial" }), number),
      h("div", {}, h("label", { for: "dial-line", text: "Line" }), line),
      h("button", { type: "submit", id: "dial" }, "Call"),
      h("p.error", { id: "dial-error", role: "alert" }));
  }

  function callButtons(c, inUnit) {
    const where = `call-error-${c.id}`;
    const b = (label, op, extra) => h("button", { type: "button", "data-op": op, onclick: () => act(op, Object.assign({ call_id: c.id }, extra || {}), where) }, label);
    if (c.state === "failed") return [h("button.ghost", { type: "button", "data-op": "dismiss", onclick: () => { state.calls.delete(c.id); renderCalls(); } }, "Dismiss")];
    if (c.state === "ringing") return [unitSelect(`answer-unit-${c.id}`, "handset-1"),
      h("button", { type: "button", "data-op": "answer", onclick: () => answer(c) }, "Answer"), h("button.ghost", { type: "button", "data-op": "reject", onclick: () => act("reject", { call_id: c.id }, where) }, "Reject")];
    if (!c.here) return [];
    const out = [];
    if (c.state === "connected") out.push(b("Hold", "hold"));
    if (c.state === "held") out.push(b("Retrieve", "retrieve"));
    if (!inUnit && ["connected", "held", "dialing", "alerting"].includes(c.state)) {
      out.push(unitSelect(`move-unit-${c.id}`, c.speech_unit, (ev) => act("move", { call_id: c.id, speech_unit: ev.target.value }, where)));
    }
    if (c.state === "connected" || c.state === "held") {
      out.push(h("button.ghost", { type: "button", "data-op": "transfer", onclick: () => {
        const t = window.prompt("Transfer to number");
        if (t) act("transfer", { call_id: c.id, target: t.trim() }, where);
      } }, "Transfer"));
    }
    out.push(h("button.ghost", { type: "button", "data-op": "hangup", onclick: () => act("hangup", { call_id: c.id }, where) }, "Hang up"));
    if (inUnit && c.state === "connected") {
      // The unit's keypad: each key is a DTMF digit to the far end.
      out.push(h("div.keypad", { role: "group", "aria-label": "Keypad" },
        [..."123456789*0#"].map((d) => h("button.ghost", { type: "button", "data-digit": d,
          onclick: () => act("dtmf", { call_id: c.id, digits: d }, where) }, d))));
    }
    return out;
  }

  const stateText = { ringing: "ringing", dialing: "dialling…", alerting: "ringing at the far end", connected: "connected",
    held: "on hold", answered_elsewhere: "answered at another turret", failed: "failed:" };

  function renderCalls() {
    const c = state.config;
    const queue = document.getElementById("queue");
    if (!c || !queue) return;
    const calls = [...state.calls.values()].sort((a, b) => a.id - b.id);
    const lineName = (id) => (c.line_keys.find((k) => k.line_id === id) || {}).display_name || `line ${id}`;
    queue.replaceChildren(calls.length ? h("ul.calls", {}, calls.map((x) => h("li.call", { "data-call": x.id, "data-state": x.state },
      h("span.dir", { text: x.direction === "in" ? "⬋" : "⬈", title: x.direction === "in" ? "incoming" : "outgoing" }),
      h("span.who", {}, h("strong", { text: x.remote_name || x.remote_number }), x.remote_name ? h("span.muted", { text: ` ${x.remote_number}` }) : null),
      h("span.muted", { text: ` on ${lineName(x.line_id)}: ${stateText[x.state] || x.state}` }),
      x.state === "failed" ? h("strong.failure", { text: ` ${explain(x.reason)}` }) : null,
      // A call that should be recorded and that no recorder takes.
      x.recording === "failed" ? h("strong.failure.unrecorded", { text: " ⚠ not being recorded", title: "No voice recorder is taking this call; administrators have been told." }) : null,
      x.recording === "recording" ? h("span.muted.recorded", { text: " ● recorded" }) : null,
      h("span.controls", {}, callButtons(x)),
      h("span.error", { id: `call-error-${x.id}`, role: "alert" }),
      h("span.error", { id: `call-audio-${x.id}`, role: "alert", text: state.audioProblems.get(x.id) || "" })))) : h("p.muted", { text: "No calls." }));
    // A call on a priority line rings with the priority cadence.
    const priority = new Set(c.line_keys.filter((k) => k.priority).map((k) => k.line_id));
    voice().sync(calls.map((x) => Object.assign({}, x, { priority: priority.has(x.line_id) })));
    const grid = document.querySelector("[aria-label='Line keys']");
    if (grid) grid.replaceChildren(...lineKeys(c));
    const monitor = document.getElementById("monitor");
    const carried = (u) => calls.find((x) => x.here && x.state !== "failed" && x.speech_unit === u.id);
    for (const u of c.speech_units) {
      const box = document.querySelector(`.unit[data-unit="${u.id}"]`);
      if (!box) continue;
      const x = carried(u);
      box.classList.toggle("busy", !!x);
      box.querySelector(".state").textContent = x ? `${x.remote_name || x.remote_number} (${stateText[x.state] || x.state})` : "idle";
      box.querySelector(".calls").replaceChildren(...(x ? callButtons(x, true) : []));
    }
    if (monitor) monitor.replaceChildren(...c.speech_units.map((u) => {
      const x = carried(u);
      return h("tr", {}, h("td", { text: u.name }), h("td" + (x ? "" : ".muted"), { text: x ? `${lineName(x.line_id)}: ${x.remote_name || x.remote_number}` : "—" }));
    }));
  }

  function renderTab() {
    for (const b of document.querySelectorAll("[role=tab]")) {
      b.setAttribute("aria-selected", String(b.id === `tab-${state.tab}`));
    }
    const body = document.getElementById("tab-body");
    if (state.tab === "contacts") renderContacts(body); else renderCallMemory(body);
  }

  // A pushed configuration: redraw the keys, leave what the trader is
  // typing alone.
  function updateKeys(c) {
    const lines = lineKeys(c);
    const dials = (kind) => dialKeys(c, kind);
    for (const [label, items] of [["Line keys", lines], ["DKA keys", dials("DKA")], ["DKM keys", dials("DKM")]]) {
      const grid = document.querySelector(`[aria-label='${label}']`);
      if (grid) grid.replaceChildren(...items);
    }
  }

  function unlockForm(label, op, after) {
    const pw = h("input", { id: `unlock-${op}`, type: "password", autocomplete: "off" });
    return h("form", {
      onsubmit: async (ev) => {
        ev.preventDefault();
        clearError();
        try { await request(op, { password: pw.value }); await after(); }
        catch (e) { pw.value = ""; showError(e); }
      },
    }, h("label", { for: `unlock-${op}`, text: label }), pw, " ", h("button", { type: "submit" }, "Unlock"),
      errorLine());
  }

  async function loadContacts() {
    try {
      state.contacts = await request("contacts", { search: state.search || null, limit: 50 });
      state.contactsLocked = false;
    } catch (e) {
      if (e.code === "contacts_locked") { state.contactsLocked = true; state.contacts = null; }
      else return showError(e);
    }
    if (state.tab === "contacts" && state.config) renderContacts(document.getElementById("tab-body"));
  }

  function renderContacts(body) {
    if (!body) return;
    if (state.contactsLocked) return body.replaceChildren(unlockForm("Contacts password", "unlock_contacts", loadContacts));
    if (!state.contacts) { body.replaceChildren(h("p.muted", { text: "Loading…" })); return void loadContacts(); }
    const search = h("input", { id: "contact-search", type: "search", value: state.search, placeholder: "Name or number" });
    const rows = (list, local) => list.map((c) => h("tr", {},
      h("td", { text: c.name }), h("td", { text: c.number }),
      h("td", {}, h("button.ghost", { type: "button", "aria-label": `Call ${c.name}`, onclick: () => dial(c.number) }, "Call")),
      h("td", {}, local ? h("button.ghost", { type: "button", "aria-label": `Delete ${c.name}`,
        onclick: async () => { try { await request("delete_contact", { contact_id: c.id }); await loadContacts(); } catch (e) { showError(e); } } }, "Delete")
        : h("span.muted", { text: "global" }))));
    const name = h("input", { id: "new-contact-name" });
    const number = h("input", { id: "new-contact-number", inputmode: "tel" });
    body.replaceChildren(
      h("form.row", { role: "search", onsubmit: (ev) => { ev.preventDefault(); state.search = search.value; loadContacts(); } },
        h("label", { for: "contact-search", text: "Search contacts" }), search, h("button", { type: "submit" }, "Search")),
      h("table", { id: "contacts" }, h("thead", {}, h("tr", {}, h("th", { text: "Name" }), h("th", { text: "Number" }), h("th", {}), h("th", {}))),
        h("tbody", {}, rows(state.contacts.local, true), rows(state.contacts.global, false))),
      h("form.row", {
        onsubmit: async (ev) => {
          ev.preventDefault();
          try { await request("create_contact", { name: name.value, number: number.value }); name.value = ""; number.value = ""; await loadContacts(); }
          catch (e) { showError(e); }
        },
      }, h("div", {}, h("label", { for: "new-contact-name", text: "Name" }), name),
        h("div", {}, h("label", { for: "new-contact-number", text: "Number" }), number),
        h("button", { type: "submit", id: "add-contact" }, "Add contact")),
      errorLine());
  }

  async function loadCallMemory() {
    try {
      state.callMemory = await request("call_memory");
      state.callMemoryLocked = false;
      state.restoredNote = false;
    } catch (e) {
      if (e.code === "call_memory_locked") { state.callMemoryLocked = true; state.callMemory = null; }
      else return showError(e);
    }
    if (state.tab === "call-memory" && state.config) renderCallMemory(document.getElementById("tab-body"));
  }

  function renderCallMemory(body) {
    if (!body) return;
    if (!state.config.profile.collect_call_memory) return body.replaceChildren(h("p.muted", { text: "Call memory is not collected for this profile." }));
    if (state.callMemoryLocked && state.callMemory === null && body.dataset.tried) {
      const form = unlockForm("Call-memory password", "unlock_call_memory", loadCallMemory);
      return body.replaceChildren(...(state.restoredNote
        ? [h("p.notice", { id: "restored-note", role: "status",
            text: "The server restarted. You are still logged in; give the password again to open call memory." }), form]
        : [form]));
    }
    if (!state.callMemory) { body.dataset.tried = "1"; body.replaceChildren(h("p.muted", { text: "Loading…" })); return void loadCallMemory(); }
    const canDelete = state.config.profile.allow_call_memory_deletion;
    const result = (e) => {
      if (e.answered) return e.direction === "out" ? "answered"
        : e.answered_by === "remote" ? "answered at another turret" : "answered here";
      if (e.direction === "in") return e.reason === "rejected" ? "rejected" : "missed";
      return e.reason ? `failed: ${explain(e.reason)}` : "not answered";
    };
    const rows = state.callMemory.entries.map((e) => h("tr", { "data-entry": e.id },
      h("td", { text: fmtTime(e.at) }),
      h("td", { text: e.direction === "in" ? "in" : "out" }),
      h("td", { text: e.name || e.number }), h("td.muted", { text: e.name ? e.number : "" }),
      h("td", { text: result(e) }),
      h("td", { text: fmtDuration(e.duration_ms) }),
      h("td", {},
        h("button", { type: "button", "data-op": "call-back", "aria-label": `Call back ${e.name || e.number}`,
          onclick: () => dial(e.number) }, "Call back"),
        canDelete ? h("button.ghost", { type: "button", "aria-label": "Delete entry",
          onclick: async () => { try { await request("delete_call_memory", { entry_id: e.id }); await loadCallMemory(); } catch (err) { showError(err, "call-memory-error"); } } }, "Delete") : null)));
    body.replaceChildren(
      h("table", { id: "call-memory" }, h("thead", {}, h("tr", {}, ["When", "Dir", "Who", "Number", "Result", "Duration", ""].map((t) => h("th", { text: t })))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td.muted", { colspan: "7", text: "No calls remembered." })))),
      h("p.error", { id: "call-memory-error", role: "alert" }));
  }

  logoutBtn.addEventListener("click", async () => {
    try { await request("logout"); } catch (e) { /* offline: forget anyway */ }
    forget();
    renderLogin();
  });

  connect();
})();
