// spotbot dashboard: refresh a page's <main> while it shows running work, send the buttons' requests, log in.
// No library, nothing fetched from elsewhere.
"use strict";

const CSRF_HEADER = "X-Spotbot-CSRF";
const csrf = () => document.querySelector('meta[name="spotbot-csrf"]').content;
let refreshTimer = null;
let busyUntil = 0; // after an action, refresh a while even where the page said the job had ended

function notice(text, bad) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.className = bad ? "bad" : "";
  box.hidden = false;
  clearTimeout(box.timer);
  box.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

// the page again, its <main> only (the server renders just that for this header)
async function refresh() {
  clearTimeout(refreshTimer);
  try {
    const answer = await fetch(location.href, { headers: { "X-Spotbot-Fragment": "main" }, credentials: "same-origin" });
    if (answer.redirected || answer.status === 401) { location.reload(); return; }
    if (answer.ok) {
      const holder = document.createElement("div");
      holder.innerHTML = await answer.text();
      const fresh = holder.querySelector("main");
      if (fresh) document.getElementById("main").replaceWith(fresh);
    }
  } catch (error) {
    // the server restarting: try again at the next tick
  }
  schedule();
}

// parts of a page that come after it (the job page's charts): each [data-src] gets the HTML its URL answers
async function fill() {
  for (const part of document.querySelectorAll("[data-src]")) {
    try {
      const answer = await fetch(part.dataset.src, { credentials: "same-origin" });
      if (answer.ok) part.innerHTML = await answer.text();
    } catch (error) {
      // tried again at the next refresh
    }
  }
}

function schedule() {
  fill();
  const every = parseInt(document.getElementById("main").dataset.refresh || "0", 10);
  if (every > 0) refreshTimer = setTimeout(refresh, every);
  else if (Date.now() < busyUntil) refreshTimer = setTimeout(refresh, 1500);
}

async function act(button) {
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  button.disabled = true;
  try {
    const answer = await fetch(button.dataset.action, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", [CSRF_HEADER]: csrf() },
      body: button.dataset.body || "{}",
    });
    let message = `${answer.status}`;
    try { const data = await answer.json(); message = data.message || (data.status ? `job ${data.status}` : message); } catch (e) { /* no JSON */ }
    notice(answer.ok ? `done: ${message}` : `refused: ${message}`, !answer.ok);
  } catch (error) {
    notice(`the server did not answer: ${error}`, true);
  }
  button.disabled = false;
  busyUntil = Date.now() + 20000;
  refresh();
}

async function login(form) {
  const token = form.querySelector("#token").value;
  const answer = await fetch("/dashboard/session", { method: "POST", credentials: "same-origin",
                                                     headers: { Authorization: `Bearer ${token}` } });
  if (answer.ok) { location.assign(form.dataset.next || "/dashboard"); return; }
  document.getElementById("login-error").hidden = false;
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (button) { event.preventDefault(); act(button); return; }
  if (event.target.id === "logout") {
    fetch("/dashboard/logout", { method: "POST", credentials: "same-origin", headers: { [CSRF_HEADER]: csrf() } })
      .then(() => location.assign("/dashboard/login"));
  }
});

document.addEventListener("submit", (event) => {
  if (event.target.id === "login") { event.preventDefault(); login(event.target); }
});

document.addEventListener("DOMContentLoaded", schedule);
