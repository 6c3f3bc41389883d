// The console's script: sends actions to the /v1 routes (the same ones the CLI uses),
// keeps countdowns and times in the browser's zone, and redraws the page's live regions
// when the event stream reports a change. Tokens stay in HttpOnly cookies; this script
// only ever sees the CSRF token, which it echoes in X-CSRF-Token.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

/** A new idempotency key (works on plain HTTP too, where randomUUID is missing). */
function newKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return "console-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// ------------------------------------------------------------------ the session

/** Trades the refresh cookie for new tokens; true when the session goes on. */
async function renew() {
  const r = await fetch("/console/session/refresh", { method: "POST", headers: { "x-csrf-token": csrf() } });
  return r.ok;
}

let signingIn = null;

/** Shows the sign-in dialog over the page (the page and its forms stay) until it works. */
function signInAgain() {
  if (signingIn) return signingIn;
  const dialog = document.getElementById("sign-in-again");
  const form = document.getElementById("sign-in-again-form");
  const refused = document.getElementById("sign-in-again-refused");
  signingIn = new Promise((resolve) => {
    form.onsubmit = async (e) => {
      e.preventDefault();
      const body = new URLSearchParams(new FormData(form));
      body.set("csrf", csrf());
      const r = await fetch("/console/session", { method: "POST", body, headers: { "x-csrf-token": csrf() } });
      if (r.ok) {
        form.reset();
        dialog.close();
        signingIn = null;
        resolve();
      } else {
        refused.textContent = await refusalText(r);
        refused.hidden = false;
      }
    };
    dialog.showModal();
    document.getElementById("again-password").focus();
  });
  return signingIn;
}

/** Sends a request as the signed-in person; an ended session is renewed or signed in again, then the request is sent again (same idempotency key). */
async function send(method, path, body, key, contentType = "application/json") {
  const headers = { "x-csrf-token": csrf(), "content-type": contentType };
  if (key) headers["idempotency-key"] = key;
  for (;;) {
    const r = await fetch(path, { method, headers, body });
    if (r.status !== 401) return r;
    if (!(await renew())) await signInAgain();
  }
}

async function refusalText(r) {
  try {
    const e = (await r.json()).error;
    // Lists in the details say what is missing (missing_evidence_keys: photo_after).
    const lists = Object.entries(e.details ?? {}).filter(([, v]) => Array.isArray(v) && v.length);
    const words = (k) => k.charAt(0).toUpperCase() + k.slice(1).replaceAll("_", " ");
    const more = lists.map(([k, v]) => ` ${words(k)}: ${v.join(", ")}.`).join("");
    return `${e.code}: ${e.message}.${more}`;
  } catch {
    return `refused (${r.status})`;
  }
}

// -------------------------------------------------------------------- actions

/** A form's fields as the route's JSON body: dotted names nest, numbers stay numbers, times become RFC 3339, empty fields are left out. */
function bodyOf(form) {
  const body = {};
  for (const el of form.elements) {
    if (!el.name || el.type === "file" || el.value === "") continue;
    let value = el.value;
    if (el.type === "number") value = Number(value);
    if (el.type === "datetime-local") value = new Date(value).toISOString();
    if ("list" in el.dataset) value = value.split("\n").map((s) => s.replace(/\r$/, "")).filter((s) => s !== "");
    const path = el.name.split(".");
    let at = body;
    path.slice(0, -1).forEach((p, i) => {
      at[p] ??= /^\d+$/.test(path[i + 1]) ? [] : {};
      at = at[p];
    });
    at[path[path.length - 1]] = value;
  }
  for (const box of form.querySelectorAll("[data-check]")) {
    body.checklist ??= {};
    body.checklist[box.dataset.check] = box.checked;
  }
  return body;
}

/** Stores a file and returns its blob: URI. */
async function upload(file) {
  const r = await send("POST", "/v1/blobs", file, null, file.type || "application/octet-stream");
  if (!r.ok) throw new Error(await refusalText(r));
  return (await r.json()).uri;
}

/** What submitting each kind of form sends. */
async function submitted(form) {
  const key = form.dataset.key;
  if (form.classList.contains("upload")) {
    const uri = await upload(form.elements.file.files[0]);
    const body = { kind: "photo", uri, evidence_key: form.elements.evidence_key.value };
    return send("POST", form.dataset.path, JSON.stringify(body), key);
  }
  if (form.classList.contains("signature")) {
    const canvas = form.querySelector("canvas");
    if (!canvas.dataset.signed) throw new Error("Sign in the box first.");
    const png = await new Promise((ok) => canvas.toBlob(ok, "image/png"));
    const uri = await upload(png);
    const body = { kind: "signature", uri, evidence_key: "signature" };
    return send("POST", form.dataset.path, JSON.stringify(body), key);
  }
  return send(form.dataset.method || "POST", form.dataset.path, JSON.stringify(bodyOf(form)), key);
}

document.addEventListener("submit", async (e) => {
  const form = e.target;
  if (!form.dataset.path) return;
  e.preventDefault();
  const button = form.querySelector('button[type="submit"]');
  const outcome = form.querySelector(".outcome");
  if (button.disabled) return;
  if ("confirm" in form.dataset && form.dataset.armed !== "1") {
    // Takes something away: a second press within five seconds confirms it.
    form.dataset.armed = "1";
    const label = button.textContent;
    button.textContent = `${label}: press again to confirm`;
    setTimeout(() => {
      delete form.dataset.armed;
      button.textContent = label;
    }, 5000);
    return;
  }
  button.disabled = true;
  outcome.className = "outcome";
  outcome.textContent = "Sending…";
  busy(+1);
  try {
    const r = await submitted(form);
    if (!r.ok) throw new Error(await refusalText(r));
    const answer = await r.json().catch(() => ({}));
    outcome.textContent = "Done.";
    if (answer.token) {
      // A secret the server shows once (a join token): shown here, never stored.
      outcome.textContent = "Created. Copy it now, it is not shown again: ";
      const code = document.createElement("code");
      code.className = "secret";
      code.textContent = answer.token;
      outcome.append(code);
    }
    const created = answer.id ?? answer.task_id;
    if (form.dataset.created && created) {
      outcome.innerHTML = `Created. <a href="${form.dataset.created}${encodeURIComponent(created)}">Open it</a>`;
    }
    form.reset();
    form.dataset.key = newKey();
    delete form.dataset.dirty;
    await redraw();
  } catch (err) {
    outcome.className = "outcome refusal";
    outcome.textContent = err.message;
    // Kept as it is (refusal and all) until the person acts on it again.
    form.dataset.dirty = "1";
  } finally {
    button.disabled = false;
    busy(-1);
  }
});

document.addEventListener("input", (e) => {
  if (e.target.form) e.target.form.dataset.dirty = "1";
});

// ---------------------------------------------------------- the signature pad

document.addEventListener("pointerdown", (e) => {
  const canvas = e.target.closest?.("canvas#signature-pad");
  if (!canvas) return;
  const ctx = canvas.getContext("2d");
  const at = (ev) => {
    const box = canvas.getBoundingClientRect();
    return [((ev.clientX - box.left) * canvas.width) / box.width, ((ev.clientY - box.top) * canvas.height) / box.height];
  };
  ctx.lineWidth = 3;
  ctx.lineCap = "round";
  ctx.beginPath();
  ctx.moveTo(...at(e));
  canvas.setPointerCapture(e.pointerId);
  const move = (ev) => {
    ctx.lineTo(...at(ev));
    ctx.stroke();
    canvas.dataset.signed = "1";
  };
  canvas.addEventListener("pointermove", move);
  canvas.addEventListener("pointerup", () => canvas.removeEventListener("pointermove", move), { once: true });
});

document.addEventListener("click", (e) => {
  if (!e.target.matches("[data-clear]")) return;
  const canvas = e.target.form.querySelector("canvas");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  delete canvas.dataset.signed;
});

// ------------------------------------------------------------- times and SLAs

function span(seconds) {
  const s = Math.abs(Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h ${String(m).padStart(2, "0")}m` : `${m}m ${String(s % 60).padStart(2, "0")}s`;
}

function tick() {
  for (const el of document.querySelectorAll("time[data-due]")) {
    const left = (Date.parse(el.dataset.due) - Date.now()) / 1000;
    el.textContent = left >= 0 ? `${span(left)} left` : `breached ${span(left)} ago`;
    el.title = new Date(el.dataset.due).toLocaleString();
    const row = el.closest("tr");
    if (left < 0 && row && !row.classList.contains("sla-BREACHED")) {
      row.className = "sla-BREACHED";
      row.querySelector(".sla-status").textContent = "BREACHED";
    }
  }
}

function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]:not([data-due])")) {
    const when = new Date(el.getAttribute("datetime"));
    if (!isNaN(when)) el.textContent = when.toLocaleString();
  }
}

// ------------------------------------------------------------ live regions

let redrawing = null;
let stale = false;
let inFlight = 0;

/** Counts actions and redraws under way; `data-busy` on the page says one may still swap a
 * region, which `data-applied` alone cannot (an action's own redraw can follow the stream's). */
function busy(delta) {
  inFlight += delta;
  if (inFlight > 0) document.documentElement.dataset.busy = String(inFlight);
  else delete document.documentElement.dataset.busy;
}

/** The newest log position the event stream has reported. */
let latest = 0;

/** Fetches this page again and swaps each live region nobody is filling a form in. */
async function redraw() {
  if (redrawing) {
    stale = true;
    return redrawing;
  }
  busy(+1);
  redrawing = (async () => {
    const target = latest;
    const r = await fetch(location.href, { headers: { accept: "text/html" } });
    if (!r.ok || r.redirected) return;
    const fresh = new DOMParser().parseFromString(await r.text(), "text/html");
    // Outer regions first: one being filled in stays, and the regions inside it are
    // redrawn on their own (one already redrawn with its outer region is skipped).
    for (const region of document.querySelectorAll("[data-live][id]")) {
      const next = fresh.getElementById(region.id);
      if (!next || !region.isConnected || region.querySelector("form[data-dirty]")) continue;
      region.replaceWith(document.importNode(next, true));
    }
    localTimes(document);
    tick();
    // The log position the page now shows (tests wait on it before they click).
    document.documentElement.dataset.applied = String(Math.max(target, Number(document.documentElement.dataset.applied)));
  })();
  await redrawing.finally(() => {
    redrawing = null;
    busy(-1);
  });
  if (stale) {
    stale = false;
    await redraw();
  }
}

/** Follows GET /v1/stream from the page's log position; any event on the page's topics redraws. */
async function follow(topics, after) {
  let delay = 1000;
  for (;;) {
    try {
      const r = await fetch(`/v1/stream?topics=${topics}&after=${after}`, { headers: { accept: "text/event-stream" } });
      if (r.status === 401 && !(await renew())) return;
      if (r.ok) {
        delay = 1000;
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffered = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffered += value;
          const lines = buffered.split("\n");
          buffered = lines.pop();
          const ids = lines.filter((l) => l.startsWith("id:"));
          if (ids.length) {
            after = ids[ids.length - 1].slice(3).trim();
            latest = Math.max(latest, Number(after));
            redraw();
          }
        }
      }
    } catch {
      // The connection dropped: resume from the last event seen.
    }
    await new Promise((ok) => setTimeout(ok, delay));
    delay = Math.min(delay * 2, 30000);
  }
}

// -------------------------------------------------------------------- start

document.addEventListener("DOMContentLoaded", async () => {
  localTimes(document);
  tick();
  setInterval(tick, 1000);
  // A region with no topic is redrawn after the person's own actions only.
  const live = document.querySelector("[data-live]:not([data-live=''])");
  const after = document.querySelector('meta[name="log-position"]')?.content;
  document.documentElement.dataset.applied = after ?? "0";
  if (live && after) follow(live.dataset.live, after);
  const resume = document.querySelector("form[data-resume]");
  if (resume && (await renew())) location.replace(resume.elements.next.value);
});
