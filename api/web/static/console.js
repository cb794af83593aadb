// The operators' console (/console): the live views poll the console's JSON routes every 2 s; the job
// search and the bulk actions, and a user's disabling, go through the admin API at /console/v1/admin.
"use strict";

(() => {
  const { api, explain, show, el, when } = genq;
  const $ = (selector, root) => (root || document).querySelector(selector);
  const EVERY_MS = 2000;

  function ago(iso) {
    if (!iso) return "–";
    const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 90) return `${Math.round(s)} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    return `${(s / 3600).toFixed(1)} h ago`;
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 90) return `${seconds.toFixed(1)} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  function row(cells, attrs) {
    return el("tr", attrs || {}, ...cells.map((c) => (c instanceof Node ? c : el("td", { text: c }))));
  }

  function fill(tbody, rows, empty, columns) {
    tbody.replaceChildren(...(rows.length ? rows : [row([el("td", { colspan: columns, class: "muted", text: empty })])]));
  }

  // Poll `path` every 2 s while the tab is visible; `draw` gets each answer. Errors in words, kept
  // until the next good answer.
  function live(path, draw, errorEl, stampEl) {
    let timer = null;
    async function tick() {
      timer = null;
      try {
        const data = await api("GET", path);
        draw(data);
        show(errorEl, "");
        if (stampEl) stampEl.textContent = `Updated ${new Date(data.at).toLocaleTimeString("en-GB")}.`;
      } catch (err) {
        show(errorEl, `Could not refresh: ${explain(err)}`);
      }
      if (!document.hidden) timer = setTimeout(tick, EVERY_MS);
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && timer === null) tick();
    });
    tick();
  }

  // --- queues ---------------------------------------------------------------------------------------

  function queuesPage() {
    live("/console/api/queues", (data) => {
      const body = $("#queues-table tbody");
      fill(body, data.queues.map((q) => row([el("th", { scope: "row", text: q.name }), String(q.ready), String(q.delayed), age(q.oldest_s)], { "data-queue": q.name })), "No queue.", 4);
      const t = data.throughput;
      const rows = t.rows.map((r) => row([
        r.kind, r.vendor,
        el("td", { class: "buckets", title: `from ${when(t.since)}, ${t.bucket_s / 60} minutes each`, text: r.finished.join(" · ") }),
        String(r.finished.reduce((a, b) => a + b, 0)), String(r.succeeded), String(r.failed),
      ], { "data-kind": r.kind, "data-vendor": r.vendor }));
      fill($("#throughput-table tbody"), rows, "No job ended in the last hour.", 6);
    }, $("#queues-error"), $("#queues-updated"));
  }

  // --- vendor slots ---------------------------------------------------------------------------------

  function table(caption, heads, rows, empty, cls) {
    return el("div", { class: "table-wrap" }, el("table", { class: cls },
      el("caption", { text: caption }),
      el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", { scope: "col", text: h })))),
      rows.length ? el("tbody", {}, ...rows) : el("tbody", {}, row([el("td", { colspan: heads.length, class: "muted", text: empty })]))));
  }

  function reasonsText(reasons) {
    return Object.entries(reasons).filter(([, n]) => n).map(([r, n]) => `${r} ${n}`).join(", ");
  }

  function roomSummary(room, reasons) {
    const cells = [
      el("th", { scope: "row" }, el("a", { href: `#room-${room.room}`, text: room.room })),
      el("td", { class: "limit", text: String(room.limit) }),
      el("td", { class: "effective", text: String(room.effective_limit) }),
      el("td", { class: `degraded${room.degraded ? " bad" : ""}`, text: room.degraded ? "yes" : "no" }),
      el("td", { class: "in-flight", text: `${room.in_flight} of ${room.effective_limit}` }),
      el("td", { class: "waiting", text: String(room.waiting) }),
      ...reasons.map((r) => el("td", { "data-reason": r, text: String(room.by_reason[r] || 0) })),
    ];
    return row(cells, { "data-room": room.room });
  }

  // A room with jobs in it: who holds its slots, who waits and why, who is next.
  function roomCard(room, reasons) {
    const paused = room.paused_ms ? ` · paused ${(room.paused_ms / 1000).toFixed(1)} s more (the vendor said it is busy)` : "";
    const facts = el("p", { class: "room-facts" },
      "limit ", el("b", { text: String(room.limit) }), " · in force ", el("b", { text: String(room.effective_limit) }),
      room.degraded ? el("b", { class: "bad", text: " · degraded: the vendor is failing" }) : " · not degraded",
      " · in flight ", el("b", { class: "in-flight", text: `${room.in_flight} of ${room.effective_limit}` }),
      " · waiting ", el("b", { class: "waiting", text: String(room.waiting) }), paused);
    const holders = room.holders.map((h) => row([
      el("td", {}, el("code", { text: h.job_id })), h.phone, h.kind, h.status,
      el("td", { title: h.since ? when(h.since) : "", text: h.since ? `${when(h.since)} (${ago(h.since)})` : "–" }),
    ], { "data-job": h.job_id }));
    const byReason = el("ul", { class: "reasons", "aria-label": "Waiting, by reason" }, ...reasons.map((r) =>
      el("li", { "data-reason": r }, el("b", { text: r }), `: ${room.by_reason[r] || 0}`)));
    const byUser = room.by_user.map((u) => row([u.phone || u.user_id, String(u.waiting), reasonsText(u.reasons)], { "data-user": u.user_id }));
    const next = room.first.map((w) => row([
      String(w.position), el("td", {}, el("code", { text: w.job_id })), w.phone,
      el("td", { class: "reason", text: w.reason }), ago(w.since),
    ], { "data-job": w.job_id, "data-reason": w.reason }));
    const shownNote = room.waiting > room.first.length
      ? el("p", { class: "muted", text: `The first ${room.first.length} of ${room.waiting} waiting jobs.` }) : null;
    return el("section", { class: `card room${room.degraded ? " is-degraded" : ""}`, id: `room-${room.room}`, "data-room": room.room, "aria-label": `Room ${room.room}` },
      el("h2", {}, room.room, " ", room.degraded ? el("span", { class: "badge", "data-status": "failed", text: "degraded" }) : null),
      facts,
      table("In flight: the jobs holding a slot", ["Job", "User", "Kind", "Status", "Admitted"], holders, "No job holds a slot.", "holders"),
      el("h3", { text: "Waiting, by reason" }), byReason,
      table("Waiting, by user", ["User", "Waiting", "Reasons"], byUser, "Nobody waits.", "by-user"),
      table("Next to be admitted", ["#", "Job", "User", "Reason", "Waiting since"], next, "Nobody waits.", "waiters"),
      shownNote);
  }

  function slotsPage() {
    const holder = $("#rooms");
    const reasons = holder.dataset.reasons.split(",");
    live("/console/api/slots", (data) => {
      fill($("#rooms-summary tbody"), data.rooms.map((room) => roomSummary(room, reasons)), "No room.", 6 + reasons.length);
      const busy = data.rooms.filter((room) => room.in_flight || room.waiting || room.holders.length);
      holder.replaceChildren(...(busy.length ? busy.map((room) => roomCard(room, reasons))
        : [el("p", { class: "card muted", text: "Every room is idle: no job holds a slot or waits." })]));
    }, $("#slots-error"), $("#slots-updated"));
  }

  // --- jobs: search and bulk actions --------------------------------------------------------------------

  function jobsPage() {
    const form = $("#job-search");
    const body = $("#jobs-table tbody");
    const more = $("#jobs-more");
    const error = $("#jobs-error");
    let applied = null; // the filter the last search applied, as the admin API reads it
    let cursor = null;
    let pending = null; // the bulk action awaiting confirmation

    const query = () => new URLSearchParams(Array.from(new FormData(form)).filter(([, v]) => String(v).trim()));

    function jobRow(j) {
      const status = el("span", { class: "badge", "data-status": j.status, text: j.status });
      return row([
        el("td", {}, el("code", { text: j.id })), el("td", {}, status), j.kind, `${j.vendor} · ${j.model}`,
        el("td", { title: j.user_id, text: j.phone }), when(j.created_at), when(j.finished_at),
        el("td", { class: "wrap", title: j.error_message || "", text: j.error_code || "" }),
        el("td", {}, j.retry_of ? el("code", { text: j.retry_of }) : ""),
      ], { "data-job": j.id, "data-status": j.status, "data-retry-of": j.retry_of || "" });
    }

    async function load(append) {
      show(error, "");
      const params = query();
      if (append && cursor) params.set("cursor", cursor);
      try {
        const page = await api("GET", `/console/api/jobs?${params}`);
        applied = page.filter;
        cursor = page.next_cursor;
        const rows = page.items.map(jobRow);
        if (append) body.append(...rows);
        else fill(body, rows, "No job matches.", 9);
        more.hidden = !cursor;
        $("#results-count").textContent = `(${body.querySelectorAll("tr[data-job]").length}${cursor ? "+" : ""})`;
      } catch (err) {
        applied = null;
        fill(body, [], "–", 9);
        show(error, explain(err));
      }
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      history.replaceState(null, "", `/console/jobs?${query()}`);
      resetBulk();
      load(false);
    });
    more.addEventListener("click", () => load(true));

    const VERB = { retry: ["retried", "Retry", "each becomes a new job, charged to its owner"], cancel: ["cancelled", "Cancel", "each is stopped and refunded"] };

    function resetBulk() {
      pending = null;
      $("#bulk-confirm").hidden = true;
      show($("#bulk-error"), "");
    }

    async function dryRun(action) {
      resetBulk();
      show($("#bulk-result"), "");
      $("#bulk-new").hidden = true;
      if (!applied) return show($("#bulk-error"), "Search first: the bulk action acts on the jobs the search matches.");
      try {
        const answer = await api("POST", `/console/v1/admin/jobs/${action}`, { filter: applied, dry_run: true });
        const [done, verb, what] = VERB[action];
        if (!answer.matched) {
          return show($("#bulk-result"), action === "retry"
            ? "No job matching this search can be retried: only failed, timed-out or cancelled jobs can."
            : "No job matching this search can be cancelled: only waiting or running jobs can.");
        }
        pending = action;
        const n = answer.matched === 1 ? "1 job" : `${answer.matched} jobs`;
        $("#bulk-question").textContent = `${verb} ${n}? Dry run: ${n} would be ${done} (${what}).`;
        $("#bulk-question").dataset.matched = answer.matched;
        $("#bulk-go").textContent = `${verb} ${n}`;
        $("#bulk-confirm").hidden = false;
        $("#bulk-go").focus();
      } catch (err) {
        show($("#bulk-error"), explain(err));
      }
    }

    async function confirm() {
      const action = pending;
      if (!action) return;
      $("#bulk-go").disabled = true;
      try {
        const answer = await api("POST", `/console/v1/admin/jobs/${action}`, { filter: applied, dry_run: false });
        resetBulk();
        const [done] = VERB[action];
        show($("#bulk-result"), `${answer.acted} of ${answer.matched} jobs ${done}.` +
          (answer.acted < answer.matched ? " The others had moved on meanwhile." : ""));
        if (action === "retry" && answer.job_ids.length) {
          const list = $("#bulk-new");
          list.replaceChildren(el("li", { text: "New jobs:" }), ...answer.job_ids.map((id) => el("li", { "data-job": id }, el("code", { text: id }))));
          list.hidden = false;
        }
        await load(false);
      } catch (err) {
        show($("#bulk-error"), explain(err));
      } finally {
        $("#bulk-go").disabled = false;
      }
    }

    $("#bulk-retry").addEventListener("click", () => dryRun("retry"));
    $("#bulk-cancel").addEventListener("click", () => dryRun("cancel"));
    $("#bulk-go").addEventListener("click", confirm);
    $("#bulk-back").addEventListener("click", () => { resetBulk(); show($("#bulk-result"), "Nothing was done."); });
    load(false);
  }

  // --- users -------------------------------------------------------------------------------------------

  function usersPage() {
    const error = $("#users-error");
    document.addEventListener("click", async (event) => {
      const button = event.target.closest("button.user-toggle");
      if (!button) return;
      const tr = button.closest("tr");
      const phone = tr.querySelector("th").firstChild.textContent.trim();
      const action = button.dataset.action;
      show(error, "");
      button.disabled = true;
      try {
        const user = await api("POST", `/console/v1/admin/users/${encodeURIComponent(tr.dataset.userId)}/${action}`);
        const disabled = Boolean(user.disabled_at);
        const state = tr.querySelector(".user-state");
        state.replaceChildren(el("span", { class: "badge", "data-status": disabled ? "failed" : "succeeded", text: disabled ? "disabled" : "active" }));
        button.dataset.action = disabled ? "enable" : "disable";
        button.textContent = disabled ? "Enable" : "Disable";
        button.setAttribute("aria-label", `${button.textContent} ${phone}`);
      } catch (err) {
        show(error, `${phone}: ${explain(err)}`);
      } finally {
        button.disabled = false;
      }
    });
  }

  const PAGES = { "console-queues": queuesPage, "console-slots": slotsPage, "console-jobs": jobsPage, "console-users": usersPage };
  document.addEventListener("DOMContentLoaded", () => {
    const start = PAGES[document.body.dataset.page];
    if (start) start();
  });
})();
