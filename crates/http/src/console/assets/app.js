// Otter console script: the few things a server-rendered page cannot do alone. API calls are
// authenticated by the session cookie (HttpOnly: this script never sees it) and carry the
// `X-Otter-Console` header the API asks of cookie-authenticated changes (a cross-site form cannot
// send it); errors are shown next to what failed.
"use strict";

/** Headers of every API call the console makes. */
const consoleHeaders = () => ({ "X-Otter-Console": "1" });

/** Calls the admin API; resolves to the JSON body, rejects with the API's error message. */
async function api(method, path, body) {
  const init = { method, headers: consoleHeaders(), credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch("/api/v1" + path, init);
  } catch (e) {
    throw new Error("The server cannot be reached (" + e.message + ").");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401) location.assign("/login?next=" + encodeURIComponent(location.pathname));
    throw new Error((data && data.error) || "The server answered " + response.status + ".");
  }
  return data;
}

const $ = (sel, root = document) => root.querySelector(sel);
const list = (text) => (text || "").split(/[,\n]/).map((s) => s.trim()).filter(Boolean);
function say(form, status, error) {
  const s = $(".status", form), e = $(".error", form);
  if (s) s.textContent = status || "";
  if (e) e.textContent = error || "";
}

/** Reads a server-sent event stream with fetch (the stream ends when the campaign does). */
async function follow(path, onEvent, signal) {
  const response = await fetch("/api/v1" + path, { headers: consoleHeaders(), credentials: "same-origin", signal });
  if (!response.ok || !response.body) throw new Error("live updates unavailable (" + response.status + ")");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) onEvent(name, data);
    }
  }
}

// ---- firmware: upload with progress, verification on test devices

function setupUpload(form) {
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const file = form.file.files[0];
    const version = form.version.value.trim();
    if (!file || !version) return say(form, "", "Choose a file and give its version.");
    const params = new URLSearchParams({ version });
    if (form.module.value.trim()) params.set("module", form.module.value.trim());
    const bar = $("#upload-progress"), pct = $("#upload-percent");
    $(".upload-progress", form).hidden = false;
    const button = $("button[type=submit]", form);
    button.disabled = true;
    say(form, "Uploading " + file.name + "…", "");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/products/" + encodeURIComponent(form.dataset.product) + "/firmware?" + params);
    xhr.setRequestHeader("X-Otter-Console", "1");
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      const p = Math.round((e.loaded / e.total) * 100);
      bar.value = p;
      pct.textContent = p + "%";
    };
    const failed = (message) => {
      button.disabled = false;
      $(".upload-progress", form).hidden = true;
      say(form, "", message);
    };
    xhr.onerror = () => failed("The upload failed: the server cannot be reached.");
    xhr.onload = () => {
      button.disabled = false;
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status !== 201) return failed((data && data.error) || "The server answered " + xhr.status + ".");
      bar.value = 100;
      pct.textContent = "100%";
      say(form, "Uploaded " + data.version + ": " + data.size + " bytes, SHA-256 " + data.sha256, "");
      setTimeout(() => location.reload(), 900);
    };
    xhr.send(file);
  });
}

function setupVerify(form) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = $("button", form);
    button.disabled = true;
    say(form, "Starting verification…", "");
    try {
      const body = { version: form.dataset.version, module: form.dataset.module, devices: list(form.devices.value) };
      const c = await api("POST", "/products/" + encodeURIComponent(form.dataset.product) + "/firmware/verify", body);
      say(form, "Verification campaign #" + c.id + " started…", "");
      await follow("/campaigns/" + c.id + "/stream", (name, data) => {
        if (name !== "campaign") return;
        const s = JSON.parse(data);
        const ok = (s.counts.succeeded || 0);
        say(form, "Check #" + s.id + " " + s.state + ": " + ok + " of " + s.total + " succeeded; firmware " + s.firmware_state, "");
      });
      location.reload();
    } catch (e) {
      button.disabled = false;
      say(form, "", e.message);
    }
  });
}

// ---- new campaign: dry-run preview, then start

const num = (v) => (v === "" || v == null ? undefined : Number(v));

function offsetMinutes(text) {
  const m = /^([+-])(\d{1,2}):?(\d{2})$/.exec(text.trim());
  if (!m) throw new Error("UTC offset must look like +08:00 or -05:30.");
  return (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
}

async function campaignRequest(form) {
  const f = form.elements;
  const option = f.version.selectedOptions[0];
  const strategy = { gate_percent: num(f.gate.value) ?? 100, retries: num(f.retries.value) ?? 0 };
  if (f.start_at.value) strategy.start_at_ms = new Date(f.start_at.value).getTime();
  if (f.rate.value) strategy.rate_per_minute = num(f.rate.value);
  if (f.waves.value.trim()) strategy.waves = list(f.waves.value).map(Number);
  if (f.timeout.value) strategy.timeout_secs = num(f.timeout.value);
  if (f.abort_percent.value) strategy.abort = { failure_percent: num(f.abort_percent.value), min_finished: num(f.abort_min.value) ?? 0 };
  if (f.window_start.value || f.window_minutes.value) {
    if (!f.window_start.value || !f.window_minutes.value) throw new Error("A window needs its opening time and its length.");
    const [h, m] = f.window_start.value.split(":").map(Number);
    strategy.window = { start_minute: h * 60 + m, duration_minutes: num(f.window_minutes.value), utc_offset_minutes: f.utc_offset.value.trim() ? offsetMinutes(f.utc_offset.value) : 0 };
  }
  const file = f.device_file.files[0];
  return {
    product: form.dataset.product,
    version: option.value,
    module: option.dataset.module,
    selection: { versions: list(f.versions.value), devices: list(f.devices.value), tags: list(f.tags.value) },
    device_file: file ? await file.text() : undefined,
    strategy,
    mode: f.requested.checked ? "requested" : "push",
    supersede: f.supersede.checked,
    allow_downgrade: f.allow_downgrade.checked,
    skip_verification: f.skip_verification.checked,
  };
}

const fmtTime = (ms) => new Date(ms).toLocaleString();

function renderPreview(section, r) {
  section.replaceChildren();
  const h = document.createElement("h2");
  h.textContent = "Dry run: " + r.targeting.selected.length + " devices would be upgraded";
  section.append(h);
  const p = document.createElement("p");
  p.textContent = r.targeting.skipped.length + " skipped; " + r.waves.length + " wave(s) of " + r.waves.join(", ") + " devices." + (r.projection.beyond_horizon ? " Not every device is released within a year." : "");
  section.append(p);
  const table = document.createElement("table");
  table.className = "list";
  table.innerHTML = "<thead><tr><th>Wave</th><th class=num>Devices</th><th>Earliest start</th><th>Earliest end</th></tr></thead><tbody></tbody>";
  for (const w of r.projection.waves) {
    const tr = table.tBodies[0].insertRow();
    for (const text of [w.wave + 1, w.devices, fmtTime(w.earliest_start_ms), fmtTime(w.earliest_end_ms)]) tr.insertCell().textContent = text;
    tr.cells[1].className = "num";
  }
  section.append(table);
  if (r.targeting.skipped.length) {
    const t = document.createElement("h3");
    t.textContent = "Skipped (first 20)";
    const ul = document.createElement("ul");
    for (const s of r.targeting.skipped.slice(0, 20)) {
      const li = document.createElement("li");
      li.textContent = s.device + ": " + s.reason;
      ul.append(li);
    }
    section.append(t, ul);
  }
  section.hidden = false;
}

function setupNewCampaign(form) {
  const start = $("#start"), preview = $("#preview");
  let previewed = null;
  const invalidate = () => { if (previewed !== null) { previewed = null; start.disabled = true; } };
  form.addEventListener("input", invalidate);
  form.addEventListener("change", invalidate);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    say(form, "", "");
    try {
      const request = await campaignRequest(form);
      const r = await api("POST", "/campaigns", { ...request, dry_run: true });
      renderPreview(preview, r);
      previewed = JSON.stringify(request);
      start.disabled = r.targeting.selected.length === 0;
    } catch (e) {
      preview.hidden = true;
      say(form, "", e.message);
    }
  });
  start.addEventListener("click", async () => {
    say(form, "", "");
    try {
      const request = await campaignRequest(form);
      if (JSON.stringify(request) !== previewed) throw new Error("The form changed since the preview: preview again.");
      start.disabled = true;
      const r = await api("POST", "/campaigns", request);
      location.assign("/campaigns/" + r.id);
    } catch (e) {
      start.disabled = false;
      say(form, "", e.message);
    }
  });
}

// ---- campaign detail: live counts, progress, rows; pause / resume / cancel

const FINISHED = ["succeeded", "failed", "timed_out", "canceled"];
const LIVE = ["scheduled", "running", "paused"];

function showCampaign(main, s) {
  main.dataset.state = s.state;
  // An ended campaign shows how it ended: "finished with failures" is not a clean "finished".
  const word = s.outcome === "finished_with_failures" ? s.outcome : s.state;
  const badge = $("#campaign-state .badge");
  badge.className = "badge s-" + word;
  badge.textContent = word.replaceAll("_", " ");
  $("#campaign-reason").textContent = s.reason || "";
  $("[data-count=total]").textContent = s.total;
  for (const dd of document.querySelectorAll("#counts dd[data-count]")) {
    if (dd.dataset.count === "retrying") dd.textContent = s.retrying || 0;
    else if (dd.dataset.count !== "total") dd.textContent = s.counts[dd.dataset.count] || 0;
  }
  const pct = (n) => (s.total ? (n * 100) / s.total : 0);
  for (const seg of document.querySelectorAll("#progress .seg")) seg.style.width = pct(s.counts[seg.dataset.seg] || 0).toFixed(3) + "%";
  const done = FINISHED.reduce((a, k) => a + (s.counts[k] || 0), 0);
  $("#progress").setAttribute("aria-valuenow", pct(done).toFixed(0));
  $("#progress-text").textContent = done + " of " + s.total + " devices finished (" + pct(done).toFixed(0) + "%), " + (s.counts.succeeded || 0) + " succeeded";
  $("[data-action=pause]").hidden = !(s.state === "running" || s.state === "scheduled");
  $("[data-action=resume]").hidden = s.state !== "paused";
  $("[data-action=cancel]").hidden = !LIVE.includes(s.state);
}

async function refreshRows(main) {
  const table = $("#device-table");
  const params = new URLSearchParams({ state: table.dataset.filter, offset: table.dataset.offset });
  const response = await fetch("/campaigns/" + main.dataset.campaign + "/rows?" + params);
  if (!response.ok) return;
  const holder = document.createElement("div");
  holder.innerHTML = await response.text(); // our own server's escaped HTML
  const fresh = holder.firstElementChild;
  if (fresh && fresh.id === "device-table") table.replaceWith(fresh);
}

function setupCampaign(main) {
  const id = main.dataset.campaign;
  const live = $("#live-status");
  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", async () => {
      const action = button.dataset.action;
      if (action === "cancel" && !confirm("Cancel campaign #" + id + "? Devices not finished are canceled.")) return;
      $("#action-error").textContent = "";
      button.disabled = true;
      try {
        const c = await api("POST", "/campaigns/" + id + "/" + action);
        showCampaign(main, c);
        refreshRows(main);
      } catch (e) {
        $("#action-error").textContent = e.message;
      } finally {
        button.disabled = false;
      }
    });
  }
  if (!LIVE.includes(main.dataset.state)) return;
  // Row refreshes: at once, and once more after a burst (never two requests at a time).
  let busy = false, again = false;
  const refresh = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try { await refreshRows(main); } finally { busy = false; }
    if (again) { again = false; refresh(); }
  };
  const connect = () => {
    live.textContent = "● live";
    follow("/campaigns/" + id + "/stream", (name, data) => {
      if (name !== "campaign") return;
      showCampaign(main, JSON.parse(data));
      refresh();
    }).then(() => {
      live.textContent = LIVE.includes(main.dataset.state) ? "" : "campaign " + main.dataset.state;
      if (LIVE.includes(main.dataset.state)) setTimeout(connect, 2000);
    }, (e) => {
      live.textContent = "live updates interrupted (" + e.message + "); retrying";
      setTimeout(connect, 3000);
    });
  };
  connect();
}

document.addEventListener("DOMContentLoaded", () => {
  const upload = $("#upload");
  if (upload) setupUpload(upload);
  for (const form of document.querySelectorAll("form.verify")) setupVerify(form);
  const nc = $("#new-campaign");
  if (nc) setupNewCampaign(nc);
  const campaign = $("#campaign");
  if (campaign) setupCampaign(campaign);
});
