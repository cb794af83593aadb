// The workbench's pages (/app): each is rendered by the server; this fills it from the JSON API at
// /app/v1 (the same handlers as /v1) and keeps it live from the event streams.
"use strict";

(() => {
  const { api, t, explain, show, when, seconds, el } = genq;
  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
  const TERMINAL = new Set(["succeeded", "failed", "timed_out", "cancelled", "audit_failed"]);
  const CANCELLABLE = new Set(["pending_audit", "queued", "submitting", "processing"]);
  const RETRYABLE = new Set(["failed", "timed_out", "cancelled"]);
  const STATUSES = ["pending_audit", "queued", "submitting", "processing", "archiving", ...TERMINAL];

  const statusLabel = (status) => t(`status:${status}`);
  const credits = (n) => (n === 1 ? t("{n} credit", { n }) : t("{n} credits", { n }));
  const kindLabel = (kind) => t(`kind:${kind}`);

  function badge(node, status) {
    node.textContent = statusLabel(status);
    node.dataset.status = status;
  }

  function randomKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // --- sign in ----------------------------------------------------------------------------------

  function loginPage() {
    const form = $("#login-form");
    const phone = $("#phone");
    const code = $("#code");
    const status = $("#login-status");
    const error = $("#login-error");
    const sendButton = $("#send-code");

    sendButton.addEventListener("click", async () => {
      show(error, "");
      if (!phone.value.trim()) return show(error, t("Enter your phone number."));
      sendButton.disabled = true;
      try {
        await api("POST", "/v1/auth/sms-code", { phone: phone.value.trim() });
        $("#code-step").hidden = false;
        show(status, t("We sent a code to {phone}. It arrives within a minute.", { phone: phone.value.trim() }));
        code.focus();
      } catch (err) {
        show(error, explain(err));
      } finally {
        sendButton.disabled = false;
      }
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      show(error, "");
      if (!code.value.trim()) return show(error, t("Enter the code from the text message."));
      $("#sign-in").disabled = true;
      try {
        const tokens = await api("POST", "/v1/auth/login", { phone: phone.value.trim(), code: code.value.trim() });
        await api("POST", "/app/session", { refresh_token: tokens.refresh_token });
        show(status, t("Signed in."));
        window.location.assign(form.dataset.next || "/app");
      } catch (err) {
        show(error, explain(err));
        $("#sign-in").disabled = false;
      }
    });
  }

  // --- membership and buying a plan -------------------------------------------------------------

  async function loadMembership() {
    try {
      const m = await genq.refreshCredits();
      if (!m) throw new genq.ApiError(0, null);
      $("#m-plan").textContent = m.plan ? t(`plan:${m.plan}`) + (m.member ? "" : ` (${t("lapsed")})`) : t("Free (no plan)");
      $("#m-credits").textContent = m.credits;
      $("#m-plan-credits").textContent = m.plan_credits;
      $("#m-until").textContent = m.member ? when(m.member_until) : "–";
      $("#membership").dataset.member = m.member ? "yes" : "no";
      show($("#membership-error"), "");
      return m;
    } catch (err) {
      show($("#membership-error"), explain(err));
      return null;
    }
  }

  async function buyPanel() {
    const choices = $("#plan-choices");
    const error = $("#buy-error");
    try {
      const plans = (await api("GET", "/app/v1/plans")).filter((p) => p.price_fen > 0);
      choices.replaceChildren(...plans.map((p, i) => el("label", { class: "plan-choice" },
        el("input", { type: "radio", name: "plan", value: p.name, checked: i === 0 }),
        ` ${t(`plan:${p.name}`)} — ¥${(p.price_fen / 100).toFixed(2)} · `,
        t("{credits} credits, {n} jobs at once, {days} days", { credits: p.credits, n: p.concurrency, days: p.days }))));
    } catch (err) {
      show(error, explain(err));
    }
    $("#buy-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      show(error, "");
      const form = event.currentTarget;
      const plan = form.elements.plan && form.elements.plan.value;
      if (!plan) return show(error, t("Choose a plan."));
      $("#buy-button").disabled = true;
      try {
        const order = await api("POST", "/app/v1/orders", { plan, channel: form.elements.channel.value });
        waitForPayment(order);
      } catch (err) {
        show(error, explain(err));
        $("#buy-button").disabled = false;
      }
    });
  }

  function waitForPayment(order) {
    const panel = $("#payment");
    const status = $("#payment-status");
    const before = $("#m-until").textContent;
    panel.hidden = false;
    $("#payment-qr").src = `/app/orders/${order.id}/qr.svg`;
    panel.dataset.orderId = order.id;
    show(status, t("Waiting for the payment…"));
    const started = Date.now();
    let done = false;
    const check = async (ask) => {
      if (done) return;
      try {
        const now = await api(ask ? "POST" : "GET", `/app/v1/orders/${order.id}${ask ? "/refresh" : ""}`);
        if (now.status === "paid") {
          done = true;
          show(status, t("Paid. Your plan is active."));
          panel.dataset.paid = "yes";
          $("#payment-check").hidden = true;
          await loadMembership();
          $("#buy-button").disabled = false;
        } else if (now.status === "failed") {
          done = true;
          show(status, t("The payment did not go through. Try again."));
          $("#buy-button").disabled = false;
        }
      } catch (err) {
        show(status, explain(err));
      }
      if (!done && Date.now() - started < 15 * 60 * 1000) setTimeout(() => check(false), 1500);
    };
    $("#payment-check").onclick = () => check(true);
    setTimeout(() => check(false), 1000);
    return before;
  }

  // --- the job form (also the batch form's defaults) --------------------------------------------

  let priceList = null;
  async function prices() {
    if (!priceList) priceList = await api("GET", "/app/v1/pricing");
    return priceList;
  }

  function priceOf(kind, input) {
    const offer = (priceList || []).find((p) => p.kind === kind
      && Object.entries(p.variant).every(([k, v]) => String(input[k]) === String(v)));
    return offer ? offer.price : null;
  }

  function chosenKind(form) {
    return form.elements.kind.value;
  }

  function showKindFields(form) {
    const kind = chosenKind(form);
    for (const node of $$("[data-kinds]", form)) node.hidden = !node.dataset.kinds.split(" ").includes(kind);
  }

  function kindInput(form, kind, withImage) {
    const value = (name) => (form.elements[name] ? String(form.elements[name].value).trim() : "");
    const input = {};
    const image = () => {
      if (!withImage) return;
      if (value("upload_key")) input.upload_key = value("upload_key");
      else if (value("image_url")) input.image_url = value("image_url");
    };
    if (kind === "basic_clean") image();
    if (kind === "model_pose12") Object.assign(input, { scene: value("scene"), category: value("category") }), image();
    if (kind === "video") {
      Object.assign(input, { model: value("model"), resolution: value("resolution"), duration: Number(value("duration")) });
      if (value("prompt")) input.prompt = value("prompt");
      image();
    }
    if (kind === "model_3d") {
      input.version = value("version");
      if (value("prompt")) input.prompt = value("prompt");
      image();
    }
    return input;
  }

  function uploader(form, prefix, onBusy) {
    const file = $(`#${prefix}-photo`);
    if (!file) return;
    const progress = $(`#${prefix}-progress`);
    const status = $(`#${prefix}-upload-status`);
    const key = $(`#${prefix}-upload-key`);
    const preview = $(`#${prefix}-preview`);
    file.addEventListener("change", async () => {
      key.value = "";
      const chosen = file.files[0];
      if (!chosen) return;
      if (!["image/png", "image/jpeg", "image/webp"].includes(chosen.type)) {
        return show(status, t("Choose a PNG, JPEG or WEBP photo."));
      }
      preview.src = URL.createObjectURL(chosen);
      preview.hidden = false;
      onBusy(true);
      try {
        await upload(chosen, progress, status, key);
      } catch (err) {
        progress.hidden = true;
        show(status, err instanceof genq.ApiError ? explain(err) : t("The upload failed. Check your connection and try again."));
      } finally {
        onBusy(false);
      }
    });
  }

  async function upload(chosen, progress, status, key) {
    const grant = await api("POST", "/app/v1/uploads", { content_type: chosen.type });
    if (chosen.size > grant.max_bytes) {
      throw new genq.ApiError(422, { error: { code: "invalid_input", message: t("the photo is larger than {mb} MB", { mb: grant.max_bytes / 1048576 }), details: { field: "input.upload_key" } } });
    }
    const data = new FormData();
    for (const [name, value] of Object.entries(grant.fields)) data.append(name, value);
    data.append("file", chosen);
    progress.hidden = false;
    progress.value = 0;
    show(status, t("Uploading…"));
    await new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", grant.url);
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) progress.value = Math.round((100 * event.loaded) / event.total);
      });
      xhr.addEventListener("load", () => (xhr.status < 300 ? resolve() : reject(new Error(`storage answered ${xhr.status}`))));
      xhr.addEventListener("error", () => reject(new Error("network")));
      xhr.send(data);
    });
    progress.value = 100;
    key.value = grant.key;
    show(status, t("Uploaded: {name}", { name: chosen.name }));
  }

  async function jobForm() {
    const form = $("#job-form");
    const price = $("#job-price");
    const submit = $("#job-submit");
    const error = $("#job-error");
    let busy = false;
    const update = () => {
      showKindFields(form);
      const kind = chosenKind(form);
      const cost = priceOf(kind, kindInput(form, kind, false));
      price.textContent = cost === null ? t("not offered") : credits(cost);
      price.dataset.credits = cost === null ? "" : cost;
      submit.disabled = busy || cost === null;
    };
    form.addEventListener("change", update);
    uploader(form, "job", (b) => { busy = b; update(); });
    try {
      await prices();
    } catch (err) {
      show(error, explain(err));
    }
    update();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      show(error, "");
      const kind = chosenKind(form);
      const input = kindInput(form, kind, true);
      if ((kind === "basic_clean" || kind === "model_pose12") && !input.upload_key && !input.image_url) {
        return show(error, t("Choose a product photo first."));
      }
      submit.disabled = true;
      try {
        const job = await api("POST", "/app/v1/jobs", { kind, input }, { "Idempotency-Key": randomKey() });
        window.location.assign(`/app/jobs/${job.id}`);
      } catch (err) {
        show(error, explain(err));
        update();
      }
    });
  }

  // --- job lists --------------------------------------------------------------------------------

  function jobTable(jobs) {
    if (!jobs.length) return el("p", { class: "muted", text: t("No jobs yet.") });
    const rows = jobs.map((job) => {
      const status = el("span", { class: "badge" });
      badge(status, job.status);
      return el("tr", { dataset: { jobId: job.id, status: job.status } },
        el("td", {}, el("a", { href: `/app/jobs/${job.id}`, text: kindLabel(job.kind) })),
        el("td", {}, status),
        el("td", { text: when(job.created_at) }),
        el("td", { text: credits(job.price) }));
    });
    const head = el("tr", {}, ...["Job", "Status", "Created", "Price"].map((h) => el("th", { scope: "col", text: t(h) })));
    return el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
  }

  async function jobList(target, { status, more } = {}) {
    const limit = Number(target.dataset.limit || 20);
    let cursor = null;
    const items = [];
    const load = async () => {
      const query = new URLSearchParams({ limit: String(limit) });
      if (status && status()) query.set("status", status());
      if (cursor) query.set("cursor", cursor);
      const page = await api("GET", `/app/v1/jobs?${query}`);
      items.push(...page.items);
      cursor = page.next_cursor;
      target.replaceChildren(jobTable(items));
      if (more) more.hidden = !cursor;
    };
    const reset = async () => { items.length = 0; cursor = null; await load(); };
    if (more) more.addEventListener("click", load);
    await reset();
    return reset;
  }

  async function jobsPage() {
    const filter = $("#status-filter");
    try {
      const reset = await jobList($("#job-list"), { status: () => filter.value, more: $("#more-jobs") });
      filter.addEventListener("change", () => reset().catch((err) => show($("#jobs-error"), explain(err))));
    } catch (err) {
      show($("#jobs-error"), explain(err));
    }
  }

  async function homePage() {
    await loadMembership();
    buyPanel();
    jobForm();
    jobList($("#recent-jobs")).catch(() => {});
  }

  // --- one job, live ----------------------------------------------------------------------------

  const REASONS = {
    vendor_slots: "Waiting for a free slot at the vendor.",
    plan_concurrency: "Waiting for one of your other jobs to finish (your plan runs a few at once).",
    vendor_busy: "The vendor is busy; it is tried again shortly.",
    degraded: "The vendor is having trouble, so fewer jobs run at once.",
    paused: "The batch is paused.",
  };

  function renderResults(job) {
    const box = $("#job-results");
    if (job.status !== "succeeded") {
      if (TERMINAL.has(job.status)) box.replaceChildren(el("p", { class: "muted", text: t("This job has no results.") }));
      return;
    }
    if (!job.results) {
      box.replaceChildren(el("p", { class: "muted", text: t("The files were deleted after the retention period.") }));
      return;
    }
    const images = [];
    const others = [];
    job.results.forEach((result, i) => {
      const name = `${kindLabel(job.kind)} ${i + 1}`;
      const size = result.size < 1048576 ? `${Math.max(1, Math.round(result.size / 1024))} KB` : `${(result.size / 1048576).toFixed(1)} MB`;
      const link = el("a", { href: result.url, download: "", class: "download", text: `${t("Download")} (${size})`, "aria-label": `${t("Download")} ${name}` });
      if (result.content_type.startsWith("image/")) {
        images.push(el("figure", { class: "result" },
          el("a", { href: result.url, target: "_blank", rel: "noopener" }, el("img", { src: result.url, alt: name, loading: "lazy" })),
          el("figcaption", {}, link)));
      } else if (result.content_type.startsWith("video/")) {
        others.push(el("figure", { class: "result video" },
          el("video", { src: result.url, controls: true, playsinline: true, preload: "metadata", "aria-label": name }),
          el("figcaption", {}, link)));
      } else {
        const label = result.content_type.includes("gltf") ? t("3D model (GLB)") : result.content_type.includes("zip") ? t("3D model (OBJ, zip)") : result.content_type;
        others.push(el("p", { class: "file" }, el("b", { text: label }), " ", link));
      }
    });
    if (images.length) others.push(el("div", { class: "result-grid" }, ...images));
    box.replaceChildren(...others);
  }

  function renderJob(job) {
    badge($("#job-status"), job.status);
    $("#job").dataset.status = job.status;
    $("#job-kind").textContent = kindLabel(job.kind);
    $("#job-price-paid").textContent = credits(job.price);
    const queue = $("#job-queue");
    if (job.status === "queued" && job.queue) {
      show(queue, `${t(REASONS[job.queue.reason] || job.queue.reason)} ${t("Position {n} in line.", { n: job.queue.position })}`);
      queue.dataset.reason = job.queue.reason;
    } else show(queue, "");
    show($("#job-failure"), job.error && job.status !== "succeeded" ? `${t(`status:${job.status}`)}: ${job.error.message} (${job.error.code})` : "");
    $("#job-cancel").hidden = !CANCELLABLE.has(job.status);
    $("#job-retry").hidden = !RETRYABLE.has(job.status);
    $("#job-download-all").hidden = !(job.status === "succeeded" && job.results && job.results.length);
    timings = { base: job.timings, stage: STAGE[job.status], at: Date.now() };
    showTimings();
    const retried = $("#job-retried");
    if (job.retried_by && job.retried_by.length) {
      retried.replaceChildren(t("Retried as:"), " ", ...job.retried_by.map((id) => el("a", { href: `/app/jobs/${id}`, text: id })));
      retried.hidden = false;
    }
    $("#job-input").replaceChildren(...Object.entries(job.input).filter(([, v]) => v !== null && v !== "" && !(Array.isArray(v) && !v.length)).flatMap(([k, v]) => [
      el("dt", { text: t(`field:${k}`) }), el("dd", { text: typeof v === "object" ? JSON.stringify(v) : String(v) })]));
    renderResults(job);
  }

  // Stage timings: the server's at the last event, the current stage's and the total counted on here.
  const STAGE = { pending_audit: "moderation", queued: "queue", submitting: "vendor", processing: "vendor", archiving: "archiving" };
  let timings = { base: null, stage: null, at: 0 };
  function showTimings() {
    const running = timings.stage ? (Date.now() - timings.at) / 1000 : 0;
    for (const node of $$("[data-timing]")) {
      const name = node.dataset.timing;
      const base = timings.base ? timings.base[name] : null;
      const extra = name === "total" || name === timings.stage ? running : 0;
      node.textContent = base === null || base === undefined ? "–" : seconds(base + extra);
    }
  }

  // Credits come back a moment after a cancel or failure (the refund is its own step): look again.
  async function creditsSettle(times) {
    for (let i = 0; i < times; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await genq.refreshCredits();
    }
  }

  async function jobPage() {
    const id = $("#job").dataset.jobId;
    const failure = $("#job-action-error");
    let job;
    try {
      job = await api("GET", `/app/v1/jobs/${id}`);
    } catch (err) {
      return show(failure, explain(err));
    }
    renderJob(job);
    setInterval(showTimings, 1000);
    if (!TERMINAL.has(job.status)) follow(id, (latest) => { job = latest; });
    $("#job-cancel").addEventListener("click", async () => {
      show(failure, "");
      try {
        job = await api("POST", `/app/v1/jobs/${id}/cancel`);
        renderJob(job);
        creditsSettle(5);
      } catch (err) {
        show(failure, explain(err));
      }
    });
    $("#job-retry").addEventListener("click", async () => {
      show(failure, "");
      try {
        const again = await api("POST", `/app/v1/jobs/${id}/retry`);
        window.location.assign(`/app/jobs/${again.id}`);
      } catch (err) {
        show(failure, explain(err));
      }
    });
  }

  function follow(id, onJob) {
    const stream = new EventSource(`/app/v1/jobs/${id}/events`);
    const onStatus = (event) => {
      const job = JSON.parse(event.data);
      onJob(job);
      renderJob(job);
      if (TERMINAL.has(job.status)) {
        stream.close();  // the server ends the stream here; do not let EventSource reconnect
        creditsSettle(job.status === "succeeded" ? 1 : 5);
      }
    };
    for (const status of STATUSES) stream.addEventListener(status, onStatus);
    stream.addEventListener("queue", (event) => {
      const queue = JSON.parse(event.data);
      const node = $("#job-queue");
      if ($("#job").dataset.status === "queued") {
        show(node, `${t(REASONS[queue.reason] || queue.reason)} ${t("Position {n} in line.", { n: queue.position })}`);
        node.dataset.reason = queue.reason;
      }
    });
    return stream;
  }

  // --- batches ----------------------------------------------------------------------------------

  function parseCsv(text) {
    const rows = [];
    let row = [];
    let cell = "";
    let quoted = false;
    for (let i = 0; i < text.length; i += 1) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { cell += '"'; i += 1; }
        else if (c === '"') quoted = false;
        else cell += c;
      } else if (c === '"') quoted = true;
      else if (c === ",") { row.push(cell); cell = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i += 1;
        row.push(cell); cell = "";
        if (row.some((v) => v.trim() !== "")) rows.push(row);
        row = [];
      } else cell += c;
    }
    row.push(cell);
    if (row.some((v) => v.trim() !== "")) rows.push(row);
    return rows;
  }

  function batchRows(text) {
    const table = parseCsv(text);
    if (table.length < 2) return [];
    const header = table[0].map((h) => h.trim());
    return table.slice(1).map((cells) => {
      const input = {};
      let externalId = null;
      header.forEach((name, i) => {
        const value = (cells[i] || "").trim();
        if (!name || value === "") return;
        if (name === "external_id") externalId = value;
        else if (name === "duration") input.duration = Number(value);
        else if (name === "low_poly") input.low_poly = ["1", "true", "yes"].includes(value.toLowerCase());
        else input[name] = value;
      });
      return externalId ? { input, external_id: externalId } : { input };
    });
  }

  async function batchesPage() {
    const form = $("#batch-form");
    const error = $("#batch-error");
    const rowsBox = $("#batch-rows");
    const update = () => {
      showKindFields(form);
      const kind = chosenKind(form);
      const defaults = kindInput(form, kind, false);
      const rows = batchRows(rowsBox.value);
      $("#batch-row-count").textContent = rows.length;
      const each = rows.map((row) => priceOf(kind, { ...defaults, ...row.input }));
      $("#batch-price").textContent = rows.length && each.every((p) => p !== null)
        ? credits(each.reduce((a, b) => a + b, 0)) : "–";
    };
    form.addEventListener("change", update);
    rowsBox.addEventListener("input", update);
    $("#batch-csv").addEventListener("change", async (event) => {
      const file = event.target.files[0];
      if (file) { rowsBox.value = await file.text(); update(); }
    });
    prices().then(update).catch((err) => show(error, explain(err)));
    update();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      show(error, "");
      const kind = chosenKind(form);
      const rows = batchRows(rowsBox.value);
      if (!rows.length) return show(error, t("Give at least one row, under a header line."));
      const body = { defaults: { kind, input: kindInput(form, kind, false) }, rows };
      if (form.elements.name.value.trim()) body.name = form.elements.name.value.trim();
      $("#batch-submit").disabled = true;
      try {
        const batch = await api("POST", "/app/v1/batches", body, { "Idempotency-Key": randomKey() });
        window.location.assign(`/app/batches/${batch.id}`);
      } catch (err) {
        show(error, explain(err));
        $("#batch-submit").disabled = false;
      }
    });
    try {
      const page = await api("GET", "/app/v1/batches?limit=20");
      $("#batch-list").replaceChildren(page.items.length ? el("ul", { class: "plain" }, ...page.items.map((b) => el("li", {},
        el("a", { href: `/app/batches/${b.id}`, text: b.name || b.id }), ` · ${kindLabel(b.kind)} · ${t(`batch:${b.status}`)} · ${b.finished}/${b.rows} · ${when(b.created_at)}`)))
        : el("p", { class: "muted", text: t("No batches yet.") }));
    } catch (err) {
      show(error, explain(err));
    }
  }

  function renderBatch(batch) {
    $("#batch-name-shown").textContent = batch.name || "";
    const status = $("#batch-status");
    status.textContent = t(`batch:${batch.status}`);
    status.dataset.status = batch.status;
    $("#batch").dataset.status = batch.status;
    $("#batch").dataset.finished = batch.finished;
    $("#batch-progress").value = batch.progress;
    const counts = Object.entries(batch.counts).filter(([, n]) => n > 0).map(([s, n]) => `${statusLabel(s)} ${n}`).join(", ");
    $("#batch-progress-text").textContent = `${batch.finished} / ${batch.rows}` + (counts ? ` (${counts})` : "");
    $("#batch-charged").textContent = batch.credits_charged;
    $("#batch-refunded").textContent = batch.credits_refunded;
    $("#batch-eta").textContent = batch.estimated_completion_at ? when(batch.estimated_completion_at) : "–";
    show($("#batch-failures"), batch.failures.map((f) => `${f.code}: ${f.count}`).join(", "));
    const open = batch.finished < batch.rows;
    $("#batch-pause").hidden = !(batch.status === "running" && open);
    $("#batch-resume").hidden = batch.status !== "paused";
    $("#batch-cancel").hidden = !(open && batch.status !== "cancelled");
    $("#batch-retry").hidden = !batch.failures.length;
    $("#batch-zip").hidden = !((batch.counts.succeeded || 0) > 0 && !open);
  }

  async function renderRows(id) {
    const rows = await api("GET", `/app/v1/batches/${id}/jobs`);
    const body = rows.map((r) => {
      const status = el("span", { class: "badge" });
      badge(status, r.status);
      return el("tr", {}, el("td", { text: String(r.row + 1) }), el("td", {}, status),
        el("td", {}, el("a", { href: `/app/jobs/${r.job_id}`, text: r.job_id })),
        el("td", { text: r.error ? r.error.message : "" }));
    });
    const head = el("tr", {}, ...["Row", "Status", "Job", "Problem"].map((h) => el("th", { scope: "col", text: t(h) })));
    $("#batch-rows-table").replaceChildren(el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, head), el("tbody", {}, ...body))));
  }

  async function batchPage() {
    const id = $("#batch").dataset.batchId;
    const failure = $("#batch-action-error");
    let stream = null;
    const watch = () => {
      if (stream) stream.close();
      stream = new EventSource(`/app/v1/batches/${id}/events`);
      stream.addEventListener("progress", (event) => {
        const batch = JSON.parse(event.data);
        renderBatch(batch);
        renderRows(id).catch(() => {});
        if (batch.finished >= batch.rows) { stream.close(); stream = null; genq.refreshCredits(); }
      });
    };
    try {
      const batch = await api("GET", `/app/v1/batches/${id}`);
      renderBatch(batch);
      await renderRows(id);
      if (batch.finished < batch.rows) watch();
    } catch (err) {
      return show(failure, explain(err));
    }
    for (const action of ["pause", "resume", "cancel", "retry"]) {
      $(`#batch-${action}`).addEventListener("click", async () => {
        show(failure, "");
        try {
          const batch = await api("POST", `/app/v1/batches/${id}/${action}`);
          renderBatch(batch);
          await renderRows(id);
          genq.refreshCredits();
          if (batch.finished < batch.rows && !stream) watch();
        } catch (err) {
          show(failure, explain(err));
        }
      });
    }
  }

  const PAGES = { login: loginPage, home: homePage, jobs: jobsPage, job: jobPage, batches: batchesPage, batch: batchPage };
  document.addEventListener("DOMContentLoaded", () => {
    const page = PAGES[document.body.dataset.page];
    if (page) page();
  });
})();
