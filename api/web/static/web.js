// genq's web pages: what every page shares. Plain JavaScript, no build step, nothing from a CDN.
// `genq.api(method, path, body)` calls the JSON API (the session cookie plus the page's CSRF token);
// `genq.t(text)` translates; `genq.explain(error)` turns an API error into words for people.
"use strict";

const genq = (() => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";
  const catalog = JSON.parse((document.getElementById("i18n") || {}).textContent || "{}");
  const lang = document.body ? document.body.dataset.lang : "en";

  function t(text, values) {
    let out = catalog[text] || text;
    for (const [name, value] of Object.entries(values || {})) out = out.replaceAll(`{${name}}`, String(value));
    return out;
  }

  class ApiError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || (status === 0 ? "network" : "http_error");
      this.details = error.details || {};
    }
  }

  async function api(method, path, body, headers) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...(headers || {}) } };
    if (method !== "GET") init.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, null);
    }
    let data = null;
    if (resp.status !== 204) {
      try { data = await resp.json(); } catch (err) { data = null; }
    }
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }

  const FIELD_NAMES = {
    phone: "Phone number", code: "Code from the text message", "input.image_url": "Product photo",
    "input.upload_key": "Product photo", "input.prompt": "Prompt", "input.scene": "Scene",
    "input.category": "Category", "input.model": "Video model", "input.resolution": "Resolution",
    "input.duration": "Length", "input.version": "3D version", input: "Product photo", plan: "Plan",
  };

  function explain(err) {
    if (!(err instanceof ApiError)) return t("Something went wrong on our side. Please try again in a moment.");
    const d = err.details || {};
    switch (err.code) {
      case "network": return t("Could not reach the server. Check your connection and try again.");
      case "unauthorized":
        return err.status === 401 && d.field === "code"
          ? t("The code is wrong, used or expired. Ask for a new one.")
          : t("Your session has ended. Please sign in again.");
      case "rate_limited": return t("Too many tries. Wait {n} seconds and try again.", { n: d.retry_after_s || 60 });
      case "insufficient_credits": return t("Not enough credits. Buy a plan first.");
      case "batch_too_large": return t("Too many rows for your plan: {message}", { message: err.message });
      case "payment_channel_unavailable": return t("The payment service did not answer. Try again, or pay another way.");
      case "not_found": return t("Not found, or it belongs to someone else.");
      case "too_late": return t("Too late to cancel: the results are being saved.");
      case "conflict": return t("This cannot be done now: {message}", { message: err.message });
      case "forbidden":
        return d.reason === "csrf"
          ? t("This page has expired or came from another site. Reload the page and try again.")
          : t("This is for administrators only.");
      case "invalid_input": {
        const field = String(d.field || "").replace(/^rows\[(\d+)\]\./, "");
        const row = /^rows\[(\d+)\]/.exec(String(d.field || ""));
        const name = t(FIELD_NAMES[field] || field || "Input");
        const where = row ? t("Row {n}", { n: Number(row[1]) + 1 }) + ": " : "";
        return where + t("Please check “{field}”: {message}", { field: name, message: err.message });
      }
      default: return err.message || t("Something went wrong on our side. Please try again in a moment.");
    }
  }

  function show(el, text) {
    if (!el) return;
    el.textContent = text || "";
    el.hidden = !text;
  }

  function when(iso) {
    if (!iso) return "–";
    return new Date(iso).toLocaleString(lang === "zh-CN" ? "zh-CN" : "en-GB", { dateStyle: "medium", timeStyle: "short" });
  }

  function seconds(value) {
    if (value === null || value === undefined) return "–";
    return value < 60 ? `${value.toFixed(1)} s` : `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  // The credits shown in the header of every signed-in page.
  async function refreshCredits() {
    const badge = document.getElementById("credits-badge");
    if (!badge) return null;
    try {
      const m = await api("GET", "/app/v1/membership");
      document.getElementById("credits-badge-value").textContent = m.credits;
      badge.hidden = false;
      return m;
    } catch (err) {
      return null;
    }
  }

  document.addEventListener("DOMContentLoaded", () => { refreshCredits(); });

  return { api, t, explain, show, when, seconds, el, csrf, lang, ApiError, refreshCredits };
})();
