// OpenTurret speech units (SPEC §5): each call the turret holds gets its own
// WebRTC connection to the Multi-Line Controller carrying it (DTLS-SRTP, the
// call's G.711 codec passed through), and plays on the speech unit that
// holds it. Handsets send the microphone unless muted; speaker channels
// send it only while their push-to-talk is held, have their own volume and
// mute, and ask for the browser's echo cancellation. Tones (ring, ringback,
// busy, failure) are made here, on the turret.
"use strict";

window.TurretVoice = (() => {
  // Cadences in ms, on/off pairs; `stop` ends a tone by itself.
  const TONES = {
    ring: { freqs: [400, 450], cadence: [400, 200, 400, 2000] },
    priority: { freqs: [400, 450], cadence: [150, 100, 150, 100, 150, 600] },
    ringback: { freqs: [440, 480], cadence: [1000, 2000] },
    busy: { freqs: [480, 620], cadence: [500, 500], stop: 3000 },
    failure: { freqs: [950, 1400, 1800], cadence: [330, 0, 330, 0, 330, 1000], steps: true, stop: 2000 },
  };

  function create(request, onProblem) {
    const v = {
      ctx: null, units: new Map(), calls: new Map(), mics: new Map(),
      tone: null, toneName: null, toneOut: null, toneAnalyser: null,
      // Calls the server said were too early for audio, with their state
      // then; calls whose failure tone was played.
      tooEarly: new Map(), toned: new Set(),
    };

    function context() {
      if (!v.ctx) {
        v.ctx = new AudioContext({ latencyHint: "interactive" });
        v.toneOut = v.ctx.createGain();
        v.toneAnalyser = v.ctx.createAnalyser();
        v.toneAnalyser.fftSize = 4096;
        v.toneOut.connect(v.toneAnalyser).connect(v.ctx.destination);
        for (const u of v.units.values()) wire(u);
      }
      if (v.ctx.state === "suspended") v.ctx.resume().catch(() => {});
      return v.ctx;
    }

    function wire(u) {
      if (u.input || !v.ctx) return;
      u.input = v.ctx.createGain();
      u.analyser = v.ctx.createAnalyser();
      u.analyser.fftSize = 4096;
      u.input.connect(u.analyser).connect(v.ctx.destination);
      level(u);
    }

    function level(u) {
      if (u.input) u.input.gain.value = u.muted ? 0 : u.volume;
    }

    // The speech units of the profile: [{id, kind, name}].
    function setUnits(list) {
      for (const s of list) {
        if (v.units.has(s.id)) continue;
        const u = { id: s.id, kind: s.kind, name: s.name, volume: 1, muted: false, micMuted: false, ptt: false };
        v.units.set(s.id, u);
        wire(u);
      }
    }

    // One microphone stream per kind: handsets without processing,
    // speaker channels with echo cancellation.
    async function mic(kind) {
      if (!v.mics.has(kind)) {
        const speaker = kind === "speaker";
        v.mics.set(kind, navigator.mediaDevices.getUserMedia({
          audio: { echoCancellation: speaker, noiseSuppression: speaker, autoGainControl: speaker, channelCount: 1 },
        }).catch((e) => { v.mics.delete(kind); throw e; }));
      }
      return v.mics.get(kind);
    }

    function unitOf(entry) { return v.units.get(entry.unit) || v.units.values().next().value; }

    // Where a call's sound goes and whether the trader's voice reaches it.
    function apply(entry) {
      const u = unitOf(entry);
      if (!u) return;
      if (entry.src && u.input) {
        try { entry.src.disconnect(); } catch (e) { /* not connected yet */ }
        entry.src.connect(u.input);
      }
      if (entry.track) entry.track.enabled = u.kind === "handset" ? !u.micMuted : u.ptt;
    }

    function gathered(pc) {
      if (pc.iceGatheringState === "complete") return Promise.resolve();
      return new Promise((resolve) => {
        const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
        pc.addEventListener("icegatheringstatechange", done);
        setTimeout(resolve, 1500);
      });
    }

    // Opens the audio of a call the turret holds. Resolves to false when
    // the server says it is too early (no codec agreed yet).
    async function attach(call) {
      const entry = { unit: call.speech_unit || "handset-1", pc: null, track: null, src: null, el: null, kind: null };
      v.calls.set(call.id, entry);
      try {
        const ctx = context();
        const u = unitOf(entry);
        const stream = await mic(u ? u.kind : "handset");
        entry.track = stream.getAudioTracks()[0].clone();
        const pc = new RTCPeerConnection({ iceServers: [] });
        entry.pc = pc;
        pc.addTransceiver(entry.track, { direction: "sendrecv" });
        pc.ontrack = (ev) => {
          const remote = ev.streams[0] || new MediaStream([ev.track]);
          // Chromium plays a remote stream into WebAudio only while a media
          // element holds it too.
          entry.el = new Audio();
          entry.el.muted = true;
          entry.el.srcObject = remote;
          entry.el.play().catch(() => {});
          entry.src = ctx.createMediaStreamSource(remote);
          apply(entry);
        };
        pc.onconnectionstatechange = () => {
          if (v.calls.get(call.id) !== entry) return;
          if (pc.connectionState === "failed") {
            onProblem(call.id, "Audio cannot connect to the server (UDP to its media ports may be blocked).");
          } else if (pc.connectionState === "connected") onProblem(call.id, "");
        };
        await pc.setLocalDescription(await pc.createOffer());
        await gathered(pc);
        const r = await request("voice", { call_id: call.id, sdp: pc.localDescription.sdp });
        if (v.calls.get(call.id) !== entry) { pc.close(); return true; }
        await pc.setRemoteDescription({ type: "answer", sdp: r.sdp });
        entry.ready = true;
        apply(entry);
        // No silent failure: audio that is not up in 8 s is said to be down.
        setTimeout(() => {
          if (v.calls.get(call.id) === entry && pc.connectionState !== "connected") {
            onProblem(call.id, "Audio cannot connect to the server (UDP to its media ports may be blocked).");
          }
        }, 8000);
        return true;
      } catch (e) {
        close(call.id);
        if (e && e.code === "wrong_state") return false;
        const why = e && e.name === "NotAllowedError" ? "the browser was not allowed to use the microphone"
          : (e && e.message) || String(e);
        onProblem(call.id, `No audio: ${why}.`);
        return true;
      }
    }

    function close(id) {
      const entry = v.calls.get(id);
      if (!entry) return;
      v.calls.delete(id);
      if (entry.src) try { entry.src.disconnect(); } catch (e) { /* gone */ }
      if (entry.el) entry.el.srcObject = null;
      if (entry.track) entry.track.stop();
      if (entry.pc) entry.pc.close();
    }

    // ----- tones -----
    function startTone(name) {
      if (v.toneName === name) return;
      stopTone();
      const t = TONES[name];
      if (!t) return;
      const ctx = context();
      const gain = ctx.createGain();
      gain.gain.value = 0;
      gain.connect(v.toneOut);
      const oscs = t.freqs.map((f) => {
        const o = ctx.createOscillator();
        o.frequency.value = f;
        const g = ctx.createGain();
        g.gain.value = t.steps ? 0 : 0.15;
        o.connect(g).connect(gain);
        o.start();
        return { o, g };
      });
      // Schedule the cadence a minute ahead (or until the tone stops itself).
      const start = ctx.currentTime + 0.02;
      const until = start + (t.stop ? t.stop / 1000 : 60);
      let at = start;
      let i = 0;
      while (at < until) {
        const on = t.cadence[i % t.cadence.length] / 1000;
        const off = t.cadence[(i + 1) % t.cadence.length] / 1000;
        if (t.steps) {
          const step = (i / 2) % t.freqs.length;
          oscs[step].g.gain.setValueAtTime(0.15, at);
          oscs[step].g.gain.setValueAtTime(0, at + on);
          gain.gain.setValueAtTime(1, at);
        } else {
          gain.gain.setValueAtTime(1, at);
          gain.gain.setValueAtTime(0, at + on);
        }
        at += on + off;
        i += 2;
      }
      gain.gain.setValueAtTime(0, until);
      v.tone = { oscs, gain, timer: setTimeout(() => { if (v.toneName === name) { stopTone(); v.toneDone = name; } }, (until - ctx.currentTime) * 1000 + 50) };
      v.toneName = name;
    }

    function stopTone() {
      if (!v.tone) return;
      clearTimeout(v.tone.timer);
      for (const { o } of v.tone.oscs) o.stop();
      v.tone.gain.disconnect();
      v.tone = null;
      v.toneName = null;
    }

    // Brings the audio in line with the calls the turret shows: opens the
    // calls it holds, closes those gone, moves them between units, and
    // plays the tone the calls ask for.
    function sync(calls) {
      const wanted = new Map();
      for (const c of calls) {
        if (!c.here) continue;
        if (["connected", "held"].includes(c.state) || (c.state === "alerting" && c.early_media)) wanted.set(c.id, c);
      }
      for (const id of [...v.calls.keys()]) if (!wanted.has(id)) close(id);
      for (const c of wanted.values()) {
        const entry = v.calls.get(c.id);
        if (entry) {
          if (c.speech_unit && entry.unit !== c.speech_unit) { entry.unit = c.speech_unit; apply(entry); }
          continue;
        }
        if (v.tooEarly.get(c.id) === c.state) continue;
        attach(c).then((ok) => { if (!ok) v.tooEarly.set(c.id, c.state); tones(v.lastCalls); });
      }
      v.lastCalls = calls;
      tones(calls);
    }

    // The tone the calls ask for: ringing wins, then a local ringback for
    // an outgoing call whose far end sends no early media, then a failure,
    // heard once.
    function tones(calls) {
      const ringing = calls.filter((c) => c.state === "ringing");
      const ringback = calls.find((c) => c.here && c.direction === "out" && c.state === "alerting"
        && !c.early_media);
      const failed = calls.find((c) => c.state === "failed" && !v.toned.has(c.id));
      if (ringing.length) startTone(ringing.some((c) => c.priority) ? "priority" : "ring");
      else if (ringback) startTone("ringback");
      else if (failed) { v.toned.add(failed.id); startTone(/^(486|600)\b/.test(failed.reason || "") ? "busy" : "failure"); }
      else if (["ring", "priority", "ringback"].includes(v.toneName)) stopTone();
    }

    function unit(id) { return v.units.get(id); }

    return {
      setUnits, sync, close, unit, context,
      units: () => [...v.units.values()],
      setVolume(id, x) { const u = unit(id); if (u) { u.volume = x; level(u); } },
      setMuted(id, on) { const u = unit(id); if (u) { u.muted = on; level(u); } },
      setMicMuted(id, on) { const u = unit(id); if (u) { u.micMuted = on; for (const e of v.calls.values()) if (e.unit === id) apply(e); } },
      setPtt(id, on) { const u = unit(id); if (u) { u.ptt = on; for (const e of v.calls.values()) if (e.unit === id) apply(e); } },
      // The unit a call plays on now (or null).
      unitOfCall(id) { const e = v.calls.get(id); return e ? e.unit : null; },
      // The level of what a unit plays (0..1), for its meter.
      level(id) {
        const u = unit(id);
        if (!u || !u.analyser) return 0;
        const a = new Float32Array(u.analyser.fftSize);
        u.analyser.getFloatTimeDomainData(a);
        let s = 0;
        for (const x of a) s += x * x;
        return Math.sqrt(s / a.length);
      },
      // The last samples a unit played (or the tones, for "tones"), and
      // their sample rate: what the meter and the tests listen to.
      samples(id) {
        const an = id === "tones" ? v.toneAnalyser : (unit(id) || {}).analyser;
        if (!an) return null;
        const a = new Float32Array(an.fftSize);
        an.getFloatTimeDomainData(a);
        return { rate: v.ctx.sampleRate, data: Array.from(a) };
      },
      tone: () => v.toneName,
      suspended: () => !v.ctx || v.ctx.state !== "running",
    };
  }

  return { create };
})();
