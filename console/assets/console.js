// rex console: live overview and select-all. Served as a file (CSP: default-src 'self').
"use strict";

function ageText(ms) {
  if (ms === null || ms === undefined) return "-";
  const s = Math.floor(ms / 1000);
  if (s < 60) return (ms / 1000).toFixed(1) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}

// Cells carry the same data-field names as the server-rendered table, so that what the page
// shows after an update can be found (and tested) the same way as before it.
function cell(field, text) {
  const td = document.createElement("td");
  td.dataset.field = field;
  td.textContent = text;
  return td;
}

function queueRow(q) {
  const tr = document.createElement("tr");
  tr.dataset.queue = q.queue;
  const name = document.createElement("td");
  const link = document.createElement("a");
  link.href = "/queues/" + encodeURIComponent(q.queue);
  link.textContent = q.queue;
  name.appendChild(link);
  if (!q.configured) {
    const note = document.createElement("span");
    note.className = "muted";
    note.textContent = " (not configured)";
    name.appendChild(note);
  }
  tr.appendChild(name);
  for (const field of ["ready", "delayed", "running", "failed"]) {
    tr.appendChild(cell(field, String(q[field])));
  }
  tr.appendChild(cell("oldest", ageText(q.oldest_pending_ms)));
  tr.appendChild(cell("paused", q.paused === null ? "?" : q.paused ? "paused" : "active"));
  return tr;
}

function liveQueues(table) {
  const status = document.getElementById("live-status");
  const refresh = async () => {
    try {
      const response = await fetch(table.dataset.live, { credentials: "same-origin" });
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || response.statusText);
      const body = table.tBodies[0];
      body.replaceChildren(...data.queues.map(queueRow));
      if (status) status.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
    } catch (e) {
      if (status) status.textContent = "Update failed: " + e.message;
    }
  };
  setInterval(refresh, 2000);
}

// Charts are images the server draws: reloaded now and then (the history changes at most
// every few seconds).
function liveChart(img) {
  const every = Number(img.dataset.refresh) || 10000;
  const base = img.getAttribute("src");
  setInterval(() => {
    img.src = base + (base.includes("?") ? "&" : "?") + "t=" + Date.now();
  }, every);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const img of document.querySelectorAll("img[data-refresh]")) liveChart(img);
  const table = document.querySelector("table[data-live]");
  if (table) liveQueues(table);
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", () => {
      for (const box of document.querySelectorAll("input[name=ids]")) box.checked = all.checked;
    });
  }
});
