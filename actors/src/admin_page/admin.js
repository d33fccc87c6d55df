// The innoprov admin page: a client of innoprov's AppWebsocket admin door.
//
// Inside myApps the page is loaded in an iframe as `<App object URL>.htm?name=<App object>`
// and gets its login from the myApps client, as every innovaphone app does (sources in
// docs/admin-page.md): AppChallenge to the service, `{"mt":"getLogin","app",challenge}`
// posted to the parent as JSON text, the parent's `{"mt":"Login",...}` answer forwarded as
// AppLogin when its `pbxObj` is this App object. Outside myApps (a plain browser tab) it asks
// for the admin token and makes the AppLogin digest with it, so the token never travels.
//
// Every value shown comes from the network and is set as text, never as markup.
"use strict";

(function () {
  const args = new URLSearchParams(location.search);
  const file = location.pathname.split("/").pop() || "";
  // The App object this page was opened for; myApps passes it as `name`.
  const objectName = args.get("name") || file.replace(/\.htm$/, "");
  // The service's AppWebsocket, on this origin only (the `url` argument of myApps is not
  // followed: the page talks to the service that served it).
  const dir = location.pathname.slice(0, location.pathname.lastIndexOf("/"));
  const wsUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + dir;
  const embedded = window.self !== window.top;

  const $ = (id) => document.getElementById(id);
  const phones = new Map(); // mac -> PHONE summary
  const pending = new Map(); // src -> callback
  let ws = null;
  let nextSrc = 0;
  let selected = null;
  let token = null;
  let retry = 1000;

  if (args.get("scheme")) document.documentElement.dataset.scheme = args.get("scheme");

  // --- SHA-256 (FIPS 180-4), for the token login; crypto.subtle is missing on plain http.
  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);
  function sha256Hex(text) {
    const data = new TextEncoder().encode(text);
    const bitLen = data.length * 8;
    const padded = new Uint8Array(((data.length + 9 + 63) >> 6) << 6);
    padded.set(data);
    padded[data.length] = 0x80;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(bitLen / 0x100000000));
    view.setUint32(padded.length - 4, bitLen >>> 0);
    const h = new Uint32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    const w = new Uint32Array(64);
    const rotr = (x, n) => (x >>> n) | (x << (32 - n));
    for (let block = 0; block < padded.length; block += 64) {
      for (let t = 0; t < 16; t++) w[t] = view.getUint32(block + t * 4);
      for (let t = 16; t < 64; t++) {
        const s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >>> 3);
        const s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >>> 10);
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) >>> 0;
      }
      let [a, b, c, d, e, f, g, hh] = h;
      for (let t = 0; t < 64; t++) {
        const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t]) >>> 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
        hh = g; g = f; f = e; e = (d + t1) >>> 0;
        d = c; c = b; b = a; a = (t1 + t2) >>> 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    return Array.from(h, (x) => x.toString(16).padStart(8, "0")).join("");
  }
  window.innoprovSha256 = sha256Hex; // checked against the FIPS vectors by the browser test

  // --- UI helpers
  function setStatus(state, text) {
    const el = $("status");
    el.dataset.state = state;
    el.textContent = text;
  }
  function say(text) {
    $("message").textContent = text;
  }
  function when(unix) {
    return unix ? new Date(unix * 1000).toLocaleString() : "—";
  }
  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "—" : String(text);
    if (cls) td.className = cls;
    row.appendChild(td);
  }

  function matches(p) {
    const q = $("filter").value.trim().toLowerCase();
    const state = $("state-filter").value;
    if (state && p.state !== state) return false;
    if (!q) return true;
    const bare = q.replace(/[:.-]/g, "");
    return p.mac.includes(bare) || p.user.toLowerCase().includes(q) || p.name.toLowerCase().includes(q);
  }

  // Many changes in a burst (a thousand phones provisioned) redraw the list once.
  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    setTimeout(() => {
      renderQueued = false;
      render();
    }, 50);
  }

  function render() {
    const body = $("phones").tBodies[0];
    const rows = [];
    const sorted = Array.from(phones.values()).sort((a, b) => (a.mac < b.mac ? -1 : 1));
    let shown = 0;
    for (const p of sorted) {
      if (!matches(p)) continue;
      shown++;
      const tr = document.createElement("tr");
      tr.dataset.mac = p.mac;
      tr.dataset.state = p.state;
      if (p.mac === selected) tr.className = "selected";
      cell(tr, p.mac);
      cell(tr, p.user);
      cell(tr, p.name);
      cell(tr, p.vendor);
      cell(tr, p.state.replace("_", " "), "state-" + p.state);
      cell(tr, p.link);
      cell(tr, p.config_version);
      cell(tr, p.last_fetch ? when(p.last_fetch) : null);
      tr.addEventListener("click", () => select(p.mac));
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    $("count").textContent = shown + " of " + phones.size + " phones";
  }

  // --- the websocket
  function send(msg, onResult) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (onResult) {
      msg.src = "s" + nextSrc++;
      pending.set(msg.src, onResult);
    }
    ws.send(JSON.stringify(msg));
  }

  function connect() {
    setStatus("connecting", "connecting…");
    ws = new WebSocket(wsUrl);
    ws.onopen = () => ws.send(JSON.stringify({ mt: "AppChallenge" }));
    ws.onmessage = (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (!msg || typeof msg.mt !== "string") return;
      onMessage(msg);
    };
    ws.onclose = () => {
      ws = null;
      pending.clear();
      if ($("status").dataset.state === "failed") return;
      setStatus("closed", "disconnected; retrying");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 32000);
    };
  }

  function onMessage(msg) {
    if (msg.mt === "AppChallengeResult") return login(String(msg.challenge));
    if (msg.mt === "AppLoginResult") {
      if (!msg.ok) {
        setStatus("failed", "login refused");
        say(embedded ? "myApps' login for " + objectName + " was refused." : "The admin token was refused.");
        if (!embedded) {
          sessionStorage.removeItem("innoprov-admin-token");
          token = null;
          $("login").hidden = false;
        }
        return;
      }
      retry = 1000;
      setStatus("connected", "connected");
      $("main").hidden = false;
      $("login").hidden = true;
      send({ mt: "AdminSubscribe" }, () => {});
      loadPbx();
      return send({ mt: "AdminListPhones" }, (r) => {
        if (r.error) {
          setStatus("failed", "not allowed");
          $("main").hidden = true;
          return say("This login may not administer phones: " + r.error);
        }
        phones.clear();
        for (const p of r.phones || []) phones.set(p.mac, p);
        render();
      });
    }
    if (msg.mt === "AdminPhoneChanged") return changed(msg);
    if (msg.src && pending.has(msg.src)) {
      const done = pending.get(msg.src);
      pending.delete(msg.src);
      done(msg);
    }
  }

  function login(challenge) {
    if (embedded) {
      window.parent.postMessage(JSON.stringify({ mt: "getLogin", app: objectName, challenge: challenge }), "*");
      return;
    }
    if (!token) {
      $("login").hidden = false;
      setStatus("connecting", "waiting for the token");
      $("token").focus();
      return;
    }
    const l = { app: objectName, domain: "", sip: objectName, guid: "0".repeat(32), dn: "Admin" };
    const digest = sha256Hex([l.app, l.domain, l.sip, l.guid, l.dn, challenge, token].join(":"));
    ws.send(JSON.stringify({ mt: "AppLogin", app: l.app, domain: l.domain, sip: l.sip, guid: l.guid, dn: l.dn, digest: digest }));
  }

  // myApps answers getLogin with Login; only a login made for this App object is used.
  window.addEventListener("message", (event) => {
    if (!embedded || event.source !== window.parent || typeof event.data !== "string") return;
    let obj;
    try {
      obj = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (!obj || obj.mt !== "Login" || obj.pbxObj !== objectName || !ws) return;
    const out = { mt: "AppLogin", app: obj.app, domain: obj.domain, sip: obj.sip, guid: obj.guid, dn: obj.dn };
    if (obj.info !== undefined) out.info = obj.info;
    out.digest = obj.digest;
    out.pbxObj = objectName;
    ws.send(JSON.stringify(out));
  });

  // --- live changes and the detail pane
  function changed(msg) {
    if (msg.deleted) {
      phones.delete(msg.mac);
      if (selected === msg.mac) {
        selected = null;
        $("detail").hidden = true;
      }
    } else if (msg.phone) {
      phones.set(msg.mac, msg.phone);
      if (selected === msg.mac) showDetail(msg.phone);
    }
    scheduleRender();
    if (selected === msg.mac) loadTimeline(msg.mac);
  }

  function select(mac) {
    selected = mac;
    render();
    send({ mt: "AdminGetPhone", mac: mac }, (r) => {
      if (r.error) return say(r.error);
      showDetail(r.phone);
    });
    loadTimeline(mac);
  }

  function showDetail(p) {
    $("detail").hidden = false;
    $("detail-title").textContent = p.name + " (" + p.mac + ")";
    const fields = [
      ["User", p.user],
      ["State", p.state],
      ["Link", p.link],
      ["Link down since", p.link_down_since ? when(p.link_down_since) : null],
      ["Vendor", p.vendor],
      ["Pinned vendor", p.pinned_vendor],
      ["Configuration version", p.config_version],
      ["Served version", p.served_version],
      ["Provisioned", when(p.provisioned_at)],
      ["Configured", p.configured_at ? when(p.configured_at) : null],
      ["Last fetch", p.last_fetch ? when(p.last_fetch) : null],
      ["Last fetch from", p.last_fetch_from],
      ["User-Agent", p.last_user_agent],
      ["Enrolled", p.enrolled === undefined ? null : p.enrolled ? "yes" : "no"],
      ["Configuration items", p.configuration ? p.configuration.length : null],
    ];
    const dl = $("detail-fields");
    const nodes = [];
    for (const [name, value] of fields) {
      if (value === null || value === undefined) continue;
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      nodes.push(dt, dd);
    }
    dl.replaceChildren(...nodes);
    $("act-vendor-choice").value = p.pinned_vendor || "";
    resetDelete();
  }

  function loadTimeline(mac) {
    send({ mt: "AdminAudit", mac: mac }, (r) => {
      if (r.error || selected !== mac) return;
      const items = (r.entries || []).slice().reverse().map((e) => {
        const li = document.createElement("li");
        const t = document.createElement("time");
        t.textContent = when(e.at);
        li.appendChild(t);
        const text = document.createElement("span");
        if (e.state) {
          li.className = "state";
          text.textContent = "state " + e.state.replace("_", " ") + " (configuration v" + e.config_version + ")";
        } else {
          li.className = "fetch";
          text.textContent = e.file + " → " + e.status + " " + e.outcome + " (" + e.vendor + ", from " + e.client + ", " + e.user_agent + ")";
        }
        li.appendChild(text);
        return li;
      });
      $("timeline").replaceChildren(...items);
    });
  }

  // Who the PBX is: app.object, or the App object pinned at its first PbxInfo (resettable).
  function loadPbx() {
    send({ mt: "AdminPbx" }, (r) => {
      if (r.error) return;
      const name = r.object || r.pinned;
      $("pbx").hidden = false;
      $("pbx-name").textContent = name || "not yet known";
      $("pbx-how").textContent = r.object
        ? "(app.object)"
        : r.pinned
          ? "(pinned at its first login)"
          : "(the next App object that sends PbxInfo is pinned)";
      $("pbx-reset").hidden = !r.pinned || !!r.object;
    });
  }

  function act(action, extra) {
    if (!selected) return;
    const msg = Object.assign({ mt: "AdminAction", mac: selected, action: action }, extra || {});
    send(msg, (r) => say(r.error ? action + " failed: " + r.error : action + " done for " + msg.mac));
  }

  function resetDelete() {
    const b = $("act-delete");
    b.textContent = "Delete";
    delete b.dataset.armed;
  }

  // --- wiring
  $("filter").addEventListener("input", render);
  $("state-filter").addEventListener("change", render);
  $("act-resync").addEventListener("click", () => act("resync"));
  $("act-enrolment").addEventListener("click", () => act("enrolment"));
  $("act-vendor").addEventListener("click", () => act("vendor", { vendor: $("act-vendor-choice").value || null }));
  $("pbx-reset").addEventListener("click", () => {
    const b = $("pbx-reset");
    if (!b.dataset.armed) {
      b.dataset.armed = "1";
      b.textContent = "Really forget the PBX pin?";
      return;
    }
    delete b.dataset.armed;
    b.textContent = "Reset PBX pin";
    send({ mt: "AdminResetPbx" }, (r) => {
      say(r.error ? "reset failed: " + r.error : "PBX pin reset: the next App object that sends PbxInfo is pinned");
      loadPbx();
    });
  });
  $("act-delete").addEventListener("click", () => {
    const b = $("act-delete");
    if (!b.dataset.armed) {
      b.dataset.armed = "1";
      b.textContent = "Really delete " + selected + "?";
      return;
    }
    resetDelete();
    act("delete");
  });
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value;
    $("token").value = "";
    sessionStorage.setItem("innoprov-admin-token", token);
    $("login").hidden = true;
    setStatus("connecting", "connecting…");
    // AppChallenge is taken at any time: an open connection just starts over.
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ mt: "AppChallenge" }));
    else if (!ws) connect();
  });

  if (!embedded) {
    // `#token=...` (the demo prints such a link) is taken once and removed from the address bar.
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
    if (fromHash) {
      sessionStorage.setItem("innoprov-admin-token", fromHash);
      history.replaceState(null, "", location.pathname + location.search);
    }
    token = sessionStorage.getItem("innoprov-admin-token");
  } else {
    window.parent.postMessage(JSON.stringify({ mt: "Alive" }), "*");
  }
  connect();
})();
