// The innoprov admin page: a client of innoprov's AppWebsocket admin door.
//
// Inside myApps the page is loaded in an iframe as `<App object URL>.htm?name=<App object>&...`
// and behaves as innovaphone's app library does (sources in docs/admin-page.md): it posts
// Alive; asks the parent for a login (`getLogin`) and forwards the parent's `Login` as
// AppLogin when its `pbxObj` is this App object; follows SetScheme, SetLang and SetArgs;
// answers PrepareReload with PrepareReloadComplete; shows the number of phones that need an
// administrator as the app's badge (`Action`/`SetBadge`); uses myApps' `url` argument for its
// websocket when the service accepts that origin; after a refused login shows the reason and
// tries again (1 s doubling to 32 s). Messages both ways are JSON text. Outside myApps (a
// plain browser tab, or an App object marked "website", which gets no arguments) it asks for
// the admin token and makes the AppLogin digest with it, so the token never travels.
//
// Every value shown comes from the network and is set as text, never as markup.
"use strict";

(function () {
  const args = new URLSearchParams(location.search);
  const file = location.pathname.split("/").pop() || "";
  // The App object this page was opened for; myApps passes it as `name`.
  const objectName = args.get("name") || file.replace(/\.htm$/, "");
  const embedded = window.self !== window.top;
  // Inside myApps the client passes URL arguments (`name`, `lang`, `scheme`, ...) and talks to
  // the page; an App object marked "website" gets neither, and the page logs in with the
  // admin token as outside myApps.
  const viaMyApps = embedded && Array.from(args.keys()).length > 0;
  const meta = (name) => (document.querySelector('meta[name="' + name + '"]') || { content: "" }).content;
  // Origins the service accepts for myApps' `url` argument besides the page's own
  // (admin.url_origins), and how long a link may be down before the badge counts it.
  const urlOrigins = meta("innoprov-url-origins").split(/\s+/).filter((o) => /^https?:\/\//.test(o));
  const badgeMinutes = Number(meta("innoprov-badge-minutes")) || 0;

  // The websocket base as innovaphone.lib1 makes it: the URL cut at its last '/', http→ws.
  function wsBase(href) {
    const u = new URL(href, location.href);
    u.search = "";
    u.hash = "";
    return u.href.slice(0, u.href.lastIndexOf("/")).replace(/^http/, "ws");
  }
  // myApps' `url` argument ("the websocket base URL to be used by the app") is followed when
  // it names this page's origin or one of admin.url_origins; otherwise the page says so and
  // uses its own origin.
  let wsUrl = wsBase(location.href);
  let urlRefused = null;
  if (args.get("url")) {
    let target = null;
    try {
      target = new URL(args.get("url"), location.href);
    } catch (e) {
      target = null;
    }
    const origin = target ? target.origin.replace(/^ws/, "http") : "";
    if (target && (origin === location.origin || urlOrigins.includes(origin))) wsUrl = wsBase(target.href);
    else urlRefused = args.get("url");
  }
  // Where the page connects, for a look in the browser's inspector (and the tests).
  document.documentElement.dataset.websocket = wsUrl;

  const $ = (id) => document.getElementById(id);
  const phones = new Map(); // mac -> PHONE summary
  const pending = new Map(); // src -> callback
  let ws = null;
  let nextSrc = 0;
  let selected = null;
  let token = null;
  let retry = 1000;
  let message = null; // [text id, values...] of the message shown
  let pbxIdentity = null;
  let lastLogin = null; // the parent's last Login, for the reason of a refusal
  let badge = null;

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

  // --- texts: one table, a column per language; another language is one more column.
  const TEXTS = {
    en: {
      title: "innoprov phones",
      pbx: "PBX",
      pbxReset: "Reset PBX pin",
      pbxResetArmed: "Really forget the PBX pin?",
      pbxUnknown: "not yet known",
      pbxConfigured: "(app.object)",
      pbxPinned: "(pinned at its first login)",
      pbxNext: "(the next App object that sends PbxInfo is pinned)",
      pbxResetDone: "PBX pin reset: the next App object that sends PbxInfo is pinned",
      pbxResetFailed: "reset failed: $0",
      tokenIntro: "Outside myApps, log in with the admin token (admin.token).",
      tokenLabel: "Admin token",
      tokenGo: "Log in",
      filter: "Filter by MAC, user or name",
      stateLabel: "State",
      allStates: "all states",
      state_stored: "stored",
      state_linking: "linking",
      state_configured: "configured",
      state_updating: "updating",
      state_link_down: "link down",
      state_failed: "failed",
      state_elsewhere: "on another instance",
      colUser: "User",
      colName: "Name",
      colVendor: "Vendor",
      colState: "State",
      colLink: "Link",
      colVersion: "Version",
      colFetch: "Last fetch",
      actResync: "Resync (NOTIFY)",
      actEnrolment: "Reopen enrolment",
      actRedirect: "Register with redirect service",
      deviceCode: "Device code",
      notPinned: "not pinned",
      actVendor: "Pin vendor",
      actDelete: "Delete",
      actDeleteArmed: "Really delete $0?",
      timeline: "Timeline",
      count: "$0 of $1 phones",
      connecting: "connecting…",
      connected: "connected",
      retrying: "disconnected; retrying",
      waitingToken: "waiting for the token",
      refused: "login refused",
      notAllowed: "not allowed",
      website: "website mode",
      refusedToken: "The admin token was refused.",
      refusedMyApps: "myApps' login for $0 was refused ($1); trying again.",
      notAllowedText: "This login may not administer phones: $0",
      websiteText:
        "This page was opened as a plain website (the App object's Website flag): myApps passes it no login. Clear the flag, or log in with the admin token.",
      urlRefusedText:
        "myApps asked for the websocket at $0, an origin this service does not accept (admin.url_origins); this page's own origin is used.",
      actionDone: "$0 done for $1",
      actionFailed: "$0 failed: $1",
      raw: "$0",
      link_up: "up",
      link_down: "down",
      link_none: "none",
      link_elsewhere: "elsewhere",
      keyProfile: "Key profile",
      byTemplate: "by the user's config template",
      actProfile: "Set key profile",
      directory: "Directory and function keys",
      directoryState: "$0 users from the PBX, $1 in the phonebook; last change $2",
      directoryLive: "replicating",
      directoryIdle: "not replicating now",
      newProfile: "(new profile)",
      profileName: "profile name",
      keyType: "Key type",
      key_blf: "busy lamp (BLF)",
      key_speed_dial: "speed dial",
      key_line: "line",
      key_dnd: "do not disturb",
      keyTarget: "partner (SIP name) or number",
      keyLabel: "label",
      keyAdd: "Add key",
      keyRemove: "remove",
      profileSave: "Save profile",
      profileDelete: "Delete profile",
      profileSaved: "key profile $0 saved",
      profileDeleted: "key profile $0 deleted",
      profileFailed: "key profile: $0",
      never: "never",
    },
    de: {
      title: "innoprov Telefone",
      pbx: "PBX",
      pbxReset: "PBX-Bindung aufheben",
      pbxResetArmed: "PBX-Bindung wirklich aufheben?",
      pbxUnknown: "noch nicht bekannt",
      pbxConfigured: "(app.object)",
      pbxPinned: "(bei ihrer ersten Anmeldung gebunden)",
      pbxNext: "(das nächste App-Objekt, das PbxInfo sendet, wird gebunden)",
      pbxResetDone: "PBX-Bindung aufgehoben: das nächste App-Objekt, das PbxInfo sendet, wird gebunden",
      pbxResetFailed: "Aufheben fehlgeschlagen: $0",
      tokenIntro: "Außerhalb von myApps mit dem Admin-Token (admin.token) anmelden.",
      tokenLabel: "Admin-Token",
      tokenGo: "Anmelden",
      filter: "Nach MAC, Benutzer oder Name filtern",
      stateLabel: "Zustand",
      allStates: "alle Zustände",
      state_stored: "gespeichert",
      state_linking: "verbindet",
      state_configured: "konfiguriert",
      state_updating: "aktualisiert",
      state_link_down: "Verbindung unterbrochen",
      state_failed: "fehlgeschlagen",
      state_elsewhere: "auf anderer Instanz",
      colUser: "Benutzer",
      colName: "Name",
      colVendor: "Hersteller",
      colState: "Zustand",
      colLink: "Verbindung",
      colVersion: "Version",
      colFetch: "Letzter Abruf",
      actResync: "Neu laden (NOTIFY)",
      actEnrolment: "Registrierung wieder öffnen",
      actRedirect: "Beim Redirect-Dienst registrieren",
      deviceCode: "Gerätecode",
      notPinned: "nicht festgelegt",
      actVendor: "Hersteller festlegen",
      actDelete: "Löschen",
      actDeleteArmed: "$0 wirklich löschen?",
      timeline: "Verlauf",
      count: "$0 von $1 Telefonen",
      connecting: "verbinde…",
      connected: "verbunden",
      retrying: "getrennt; neuer Versuch",
      waitingToken: "warte auf das Token",
      refused: "Anmeldung abgelehnt",
      notAllowed: "nicht erlaubt",
      website: "Website-Modus",
      refusedToken: "Das Admin-Token wurde abgelehnt.",
      refusedMyApps: "Die myApps-Anmeldung für $0 wurde abgelehnt ($1); neuer Versuch folgt.",
      notAllowedText: "Diese Anmeldung darf keine Telefone verwalten: $0",
      websiteText:
        "Diese Seite wurde als einfache Website geöffnet (Website-Option des App-Objekts): myApps übergibt keine Anmeldung. Option entfernen oder mit dem Admin-Token anmelden.",
      urlRefusedText:
        "myApps verlangt den Websocket unter $0, einem Ursprung, den dieser Dienst nicht annimmt (admin.url_origins); der eigene Ursprung der Seite wird verwendet.",
      actionDone: "$0 ausgeführt für $1",
      actionFailed: "$0 fehlgeschlagen: $1",
      link_up: "aktiv",
      link_down: "unterbrochen",
      link_none: "keine",
      link_elsewhere: "anderswo",
      keyProfile: "Tastenprofil",
      byTemplate: "nach der Config-Vorlage des Benutzers",
      actProfile: "Tastenprofil setzen",
      directory: "Verzeichnis und Funktionstasten",
      directoryState: "$0 Benutzer von der PBX, $1 im Telefonbuch; letzte Änderung $2",
      directoryLive: "wird repliziert",
      directoryIdle: "gerade keine Replikation",
      newProfile: "(neues Profil)",
      profileName: "Profilname",
      keyType: "Tastenart",
      key_blf: "Besetztlampe (BLF)",
      key_speed_dial: "Kurzwahl",
      key_line: "Leitung",
      key_dnd: "Nicht stören",
      keyTarget: "Partner (SIP-Name) oder Nummer",
      keyLabel: "Beschriftung",
      keyAdd: "Taste hinzufügen",
      keyRemove: "entfernen",
      profileSave: "Profil speichern",
      profileDelete: "Profil löschen",
      profileSaved: "Tastenprofil $0 gespeichert",
      profileDeleted: "Tastenprofil $0 gelöscht",
      profileFailed: "Tastenprofil: $0",
      never: "nie",
    },
  };
  let lang = "en";
  // A text in the current language ($0, $1 replaced), else in English.
  function t(id, ...values) {
    const text = (TEXTS[lang] && TEXTS[lang][id]) || TEXTS.en[id] || "{" + id + "}";
    return text.replace(/\$(\d)/g, (_, n) => (values[Number(n)] === undefined ? "" : String(values[Number(n)])));
  }
  // Every text of the page in the language myApps asks for (`lang`, then SetLang).
  function setLang(wanted) {
    const code = String(wanted || "").toLowerCase().split(/[-_]/)[0];
    lang = TEXTS[code] ? code : "en";
    document.documentElement.lang = lang;
    for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
    for (const el of document.querySelectorAll("[data-t-placeholder]")) el.placeholder = t(el.dataset.tPlaceholder);
    for (const el of document.querySelectorAll("[data-t-label]")) el.setAttribute("aria-label", t(el.dataset.tLabel));
    document.title = t("title");
    const status = $("status");
    if (status.dataset.key) status.textContent = t(status.dataset.key);
    if (message) say(...message);
    if (pbxIdentity) showPbx(pbxIdentity);
    render();
  }
  // light or dark, as myApps says (`scheme`, then SetScheme); the colours are admin.css's.
  function setScheme(scheme) {
    if (scheme === "dark" || scheme === "light") document.documentElement.dataset.scheme = scheme;
  }

  // --- UI helpers
  // The status line: a state (for the colour) and a text id (retranslated on SetLang).
  function setStatus(state, key) {
    const el = $("status");
    el.dataset.state = state;
    el.dataset.key = key;
    el.textContent = t(key);
  }
  // The message line: a text id and its values (retranslated on SetLang).
  function say(id, ...values) {
    message = [id, ...values];
    $("message").textContent = t(id, ...values);
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
      cell(tr, t("state_" + p.state), "state-" + p.state);
      cell(tr, t("link_" + p.link));
      cell(tr, p.config_version);
      cell(tr, p.last_fetch ? when(p.last_fetch) : null);
      tr.addEventListener("click", () => select(p.mac));
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    $("count").textContent = t("count", shown, phones.size);
    updateBadge();
  }

  // The badge myApps shows on the app: phones that need an administrator (failed, or their
  // link down for admin.badge_link_down_minutes), posted whenever the count changes.
  function needsAdmin(p, now) {
    if (p.state === "failed") return true;
    return p.state === "link_down" && !!p.link_down_since && now - p.link_down_since >= badgeMinutes * 60;
  }
  function updateBadge() {
    if (!viaMyApps || $("main").hidden) return;
    const now = Date.now() / 1000;
    let count = 0;
    for (const p of phones.values()) if (needsAdmin(p, now)) count++;
    if (count === badge) return;
    badge = count;
    post({ mt: "Action", type: "SetBadge", value: count });
  }
  // To myApps: JSON text, as innovaphone.lib1 sends it.
  function post(msg) {
    if (viaMyApps) window.parent.postMessage(JSON.stringify(msg), "*");
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
    setStatus("connecting", "connecting");
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
      // After a refused myApps login too: the reason stays shown, the page tries again
      // (1 s doubling to 32 s, as innovaphone's Connection.js).
      if ($("status").dataset.state !== "refused") setStatus("closed", "retrying");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 32000);
    };
  }

  function onMessage(msg) {
    if (msg.mt === "AppChallengeResult") return login(String(msg.challenge));
    if (msg.mt === "AppLoginResult") {
      if (!msg.ok) {
        if (viaMyApps) {
          // The reason as Connection.js gives it: from the Login myApps handed over.
          const l = lastLogin || {};
          const reason = l.info && l.info.unlicensed ? "UNLICENSED" : l.errorText ? l.errorText : l.error ? "Error " + l.error : "LOGIN_FAILURE";
          setStatus("refused", "refused");
          return say("refusedMyApps", objectName, reason);
        }
        setStatus("failed", "refused");
        say("refusedToken");
        sessionStorage.removeItem("innoprov-admin-token");
        token = null;
        $("login").hidden = false;
        return;
      }
      retry = 1000;
      setStatus("connected", "connected");
      if (message && message[0] !== "urlRefusedText") {
        message = null;
        $("message").textContent = "";
      }
      $("main").hidden = false;
      $("login").hidden = true;
      send({ mt: "AdminSubscribe" }, () => {});
      loadPbx();
      loadDirectory();
      return send({ mt: "AdminListPhones" }, (r) => {
        if (r.error) {
          setStatus("failed", "notAllowed");
          $("main").hidden = true;
          return say("notAllowedText", r.error);
        }
        phones.clear();
        for (const p of r.phones || []) phones.set(p.mac, p);
        render();
        if (wantedMac && phones.has(wantedMac)) select(wantedMac);
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
    if (viaMyApps) {
      window.parent.postMessage(JSON.stringify({ mt: "getLogin", app: objectName, challenge: challenge }), "*");
      return;
    }
    if (!token) {
      $("login").hidden = false;
      setStatus("connecting", "waitingToken");
      $("token").focus();
      return;
    }
    const l = { app: objectName, domain: "", sip: objectName, guid: "0".repeat(32), dn: "Admin" };
    const digest = sha256Hex([l.app, l.domain, l.sip, l.guid, l.dn, challenge, token].join(":"));
    ws.send(JSON.stringify({ mt: "AppLogin", app: l.app, domain: l.domain, sip: l.sip, guid: l.guid, dn: l.dn, digest: digest }));
  }

  // myApps answers getLogin with Login; only a login made for this App object is used.
  // What myApps sends the page (JSON text, as innovaphone.lib1 reads it).
  window.addEventListener("message", (event) => {
    if (!viaMyApps || event.source !== window.parent || typeof event.data !== "string") return;
    let obj;
    try {
      obj = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (!obj || typeof obj.mt !== "string") return;
    if (obj.mt === "SetScheme") return setScheme(obj.scheme);
    if (obj.mt === "SetLang") return setLang(obj.lang);
    if (obj.mt === "SetArgs") return takeArgs(obj.args);
    if (obj.mt === "PrepareReload") return post({ mt: "PrepareReloadComplete" });
    if (obj.mt !== "Login" || obj.pbxObj !== objectName || !ws) return;
    lastLogin = obj;
    const out = { mt: "AppLogin", app: obj.app, domain: obj.domain, sip: obj.sip, guid: obj.guid, dn: obj.dn };
    if (obj.info !== undefined) out.info = obj.info;
    out.digest = obj.digest;
    out.pbxObj = objectName;
    ws.send(JSON.stringify(out));
  });

  // SetArgs (and the page's own URL arguments): `q` filters the list, `mac` opens a phone.
  let wantedMac = null;
  function takeArgs(given) {
    if (!given || typeof given !== "object") return;
    if (typeof given.q === "string") {
      $("filter").value = given.q;
      render();
    }
    if (typeof given.mac === "string") {
      wantedMac = given.mac.toLowerCase().replace(/[^0-9a-f]/g, "");
      if (phones.has(wantedMac)) select(wantedMac);
    }
  }

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
      if (r.error) return say("raw", r.error);
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
      [t("keyProfile"), p.key_profile || t("byTemplate")],
      ["Keys", p.keys ? p.keys.map(keyText).join(", ") || "-" : null],
      // Zero touch: the vendor's redirect service, in its own words.
      ["Redirect", p.redirect ? p.redirect.state + (p.redirect.detail && p.redirect.detail !== p.redirect.state ? " (" + p.redirect.detail + ")" : "") : null],
      ["Device PIN", p.redirect && p.redirect.pin ? p.redirect.pin : null],
      [t("deviceCode"), p.redirect && p.redirect.device_code ? p.redirect.device_code : null],
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
    $("act-profile-choice").value = p.key_profile || "";
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
      if (!r.error) showPbx(r);
    });
  }
  function showPbx(r) {
    pbxIdentity = r;
    $("pbx").hidden = false;
    $("pbx-name").textContent = r.object || r.pinned || t("pbxUnknown");
    $("pbx-how").textContent = t(r.object ? "pbxConfigured" : r.pinned ? "pbxPinned" : "pbxNext");
    $("pbx-reset").hidden = !r.pinned || !!r.object;
  }

  // --- the directory and the key profiles (AdminDirectory, AdminPutKeyProfile,
  // AdminDeleteKeyProfile); the editor offers the PBX's users as BLF partners.
  let directory = { users: [], profiles: [] };
  let editing = { name: "", keys: [] };
  function keyText(k) {
    const what = t("key_" + k.type);
    const target = k.target || k.number || "";
    return target ? what + " " + target + (k.label ? " (" + k.label + ")" : "") : what;
  }
  function loadDirectory(selectName) {
    send({ mt: "AdminDirectory" }, (r) => {
      if (r.error) return;
      directory = r;
      const s = r.status || {};
      const state = t("directoryState", s.rows || 0, s.listed || 0, s.last_change ? when(s.last_change) : t("never"));
      $("directory-state").textContent = state + "; " + t(s.replicating ? "directoryLive" : "directoryIdle") + (s.problem ? " — " + s.problem : "");
      $("directory-users").replaceChildren(...(r.users || []).map((u) => {
        const o = document.createElement("option");
        o.value = u.sip;
        o.textContent = u.name;
        return o;
      }));
      const names = (r.profiles || []).map((p) => p.name);
      const option = (value, text) => {
        const o = document.createElement("option");
        o.value = value;
        o.textContent = text;
        return o;
      };
      $("profile-choice").replaceChildren(option("", t("newProfile")), ...names.map((n) => option(n, n)));
      const current = $("act-profile-choice").value;
      $("act-profile-choice").replaceChildren(option("", t("byTemplate")), ...names.map((n) => option(n, n)));
      $("act-profile-choice").value = names.includes(current) ? current : "";
      editProfile(selectName !== undefined ? selectName : editing.name);
    });
  }
  function editProfile(name) {
    const found = (directory.profiles || []).find((p) => p.name === name);
    editing = found ? { name: found.name, keys: found.keys.slice() } : { name: "", keys: [] };
    $("profile-choice").value = found ? found.name : "";
    $("profile-name").value = editing.name;
    showKeys();
  }
  function showKeys() {
    $("profile-keys").replaceChildren(...editing.keys.map((k, i) => {
      const li = document.createElement("li");
      const text = document.createElement("span");
      text.textContent = keyText(k);
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = t("keyRemove");
      remove.addEventListener("click", () => {
        editing.keys.splice(i, 1);
        showKeys();
      });
      li.append(text, " ", remove);
      return li;
    }));
  }
  function addKey() {
    const type = $("key-type").value;
    const value = $("key-target").value.trim();
    const label = $("key-label").value.trim();
    const key = { type: type };
    if (type === "blf") Object.assign(key, { target: value, label: label });
    if (type === "speed_dial") Object.assign(key, { number: value, label: label });
    editing.keys.push(key);
    $("key-target").value = "";
    $("key-label").value = "";
    showKeys();
  }
  function saveProfile() {
    const name = $("profile-name").value.trim();
    send({ mt: "AdminPutKeyProfile", name: name, keys: editing.keys }, (r) => {
      if (r.error) return say("profileFailed", r.error);
      say("profileSaved", name);
      loadDirectory(name);
    });
  }
  function deleteProfile() {
    const name = $("profile-choice").value;
    if (!name) return;
    send({ mt: "AdminDeleteKeyProfile", name: name }, (r) => {
      if (r.error) return say("profileFailed", r.error);
      say("profileDeleted", name);
      loadDirectory("");
    });
  }

  function act(action, extra) {
    if (!selected) return;
    const msg = Object.assign({ mt: "AdminAction", mac: selected, action: action }, extra || {});
    send(msg, (r) => {
      if (r.error) return say("actionFailed", action, r.error);
      say("actionDone", action, msg.mac);
      // A new key profile changes what the detail shows.
      if ((action === "key_profile" || action === "redirect") && selected === msg.mac) select(msg.mac);
    });
  }

  function resetDelete() {
    const b = $("act-delete");
    b.textContent = t("actDelete");
    delete b.dataset.armed;
  }

  // --- wiring
  $("filter").addEventListener("input", render);
  $("state-filter").addEventListener("change", render);
  $("act-resync").addEventListener("click", () => act("resync"));
  $("act-enrolment").addEventListener("click", () => act("enrolment"));
  // The code printed after the MAC on the label (Gigaset's MAC-ID), sent when typed in.
  $("act-redirect").addEventListener("click", () => act("redirect", { device_code: $("act-device-code").value.trim() }));
  $("act-vendor").addEventListener("click", () => act("vendor", { vendor: $("act-vendor-choice").value || null }));
  $("act-profile").addEventListener("click", () => act("key_profile", { profile: $("act-profile-choice").value || null }));
  $("profile-choice").addEventListener("change", () => editProfile($("profile-choice").value));
  $("key-add").addEventListener("click", addKey);
  $("profile-save").addEventListener("click", saveProfile);
  $("profile-delete").addEventListener("click", deleteProfile);
  $("pbx-reset").addEventListener("click", () => {
    const b = $("pbx-reset");
    if (!b.dataset.armed) {
      b.dataset.armed = "1";
      b.textContent = t("pbxResetArmed");
      return;
    }
    delete b.dataset.armed;
    b.textContent = t("pbxReset");
    send({ mt: "AdminResetPbx" }, (r) => {
      if (r.error) say("pbxResetFailed", r.error);
      else say("pbxResetDone");
      loadPbx();
    });
  });
  $("act-delete").addEventListener("click", () => {
    const b = $("act-delete");
    if (!b.dataset.armed) {
      b.dataset.armed = "1";
      b.textContent = t("actDeleteArmed", selected);
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
    setStatus("connecting", "connecting");
    // AppChallenge is taken at any time: an open connection just starts over.
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ mt: "AppChallenge" }));
    else if (!ws) connect();
  });

  setScheme(args.get("scheme"));
  setLang(args.get("lang") || navigator.language);
  if (!viaMyApps) {
    // `#token=...` (the demo prints such a link) is taken once and removed from the address bar.
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
    if (fromHash) {
      sessionStorage.setItem("innoprov-admin-token", fromHash);
      history.replaceState(null, "", location.pathname + location.search);
    }
    token = sessionStorage.getItem("innoprov-admin-token");
    if (embedded) {
      setStatus("connecting", "website");
      say("websiteText");
    }
  } else {
    post({ mt: "Alive" });
    const own = {};
    for (const [key, value] of args) if (!["name", "lang", "scheme", "url", "title", "originalUrl"].includes(key)) own[key] = value;
    takeArgs(own);
  }
  if (urlRefused) say("urlRefusedText", urlRefused);
  // A phone's link-down time passes without any message: the badge is checked every 30 s.
  setInterval(updateBadge, 30000);
  connect();
})();
