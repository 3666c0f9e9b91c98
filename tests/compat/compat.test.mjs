// SDK compatibility suite: drives a live mailroom server with the official
// unipile-node-sdk (pinned in package.json) with response validation at level
// "error", so any response that does not match the SDK's own schemas fails.
//
// Environment (see docs/testing.md): MAILROOM_COMPAT_URL, MAILROOM_COMPAT_API_KEY,
// MAILROOM_TEST_MAIL_HOST, MAILROOM_TEST_IMAP_PORT, MAILROOM_TEST_IMAPS_PORT,
// MAILROOM_TEST_SMTP_PORT, MAILROOM_TEST_MAIL_USERS, and a grant of the fake Google's seeded
// Gmail mailbox: MAILROOM_COMPAT_GOOGLE_ACCESS_TOKEN, MAILROOM_COMPAT_GOOGLE_REFRESH_TOKEN.

import { test, describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import tls from "node:tls";
import { inspect } from "node:util";
import {
  UnipileClient,
  UnsuccessfulRequestError,
  InvalidResponseTypeError,
  untypedYetValidator,
} from "unipile-node-sdk";

// ---------------------------------------------------------------------------
// Environment: fail loudly (never skip) when something is missing.
// ---------------------------------------------------------------------------

const REQUIRED_ENV = [
  "MAILROOM_COMPAT_URL",
  "MAILROOM_COMPAT_API_KEY",
  "MAILROOM_TEST_MAIL_HOST",
  "MAILROOM_TEST_IMAP_PORT",
  "MAILROOM_TEST_IMAPS_PORT",
  "MAILROOM_TEST_SMTP_PORT",
  "MAILROOM_TEST_MAIL_USERS",
  // A grant of the fake Google's Gmail mailbox (mailroom-fakes --seed-mail), for the read calls
  // on a Gmail account (step 20).
  "MAILROOM_COMPAT_GOOGLE_ACCESS_TOKEN",
  "MAILROOM_COMPAT_GOOGLE_REFRESH_TOKEN",
  // The same for the fake Microsoft's Outlook mailbox (step 21).
  "MAILROOM_COMPAT_MICROSOFT_ACCESS_TOKEN",
  "MAILROOM_COMPAT_MICROSOFT_REFRESH_TOKEN",
];

/** Problems with the environment, as messages; empty when the suite can run. */
function environmentProblems() {
  const problems = [];
  const missing = REQUIRED_ENV.filter((name) => !process.env[name]);
  if (missing.length > 0) {
    problems.push(`missing required environment variable(s): ${missing.join(", ")}`);
  }
  const url = process.env.MAILROOM_COMPAT_URL;
  if (url && !/^https?:\/\/[^/]/.test(url)) {
    problems.push(
      `MAILROOM_COMPAT_URL must look like http://host:port (the SDK accepts only lower-case http/https), got ${JSON.stringify(url)}`,
    );
  }
  for (const name of ["MAILROOM_TEST_IMAP_PORT", "MAILROOM_TEST_IMAPS_PORT", "MAILROOM_TEST_SMTP_PORT"]) {
    const raw = process.env[name];
    const n = Number(raw);
    if (raw && !(Number.isInteger(n) && n > 0 && n <= 65535)) problems.push(`${name}=${JSON.stringify(raw)} is not a TCP port`);
  }
  const users = process.env.MAILROOM_TEST_MAIL_USERS;
  if (users) {
    try {
      fs.accessSync(users, fs.constants.R_OK | fs.constants.W_OK);
    } catch (err) {
      problems.push(`MAILROOM_TEST_MAIL_USERS=${JSON.stringify(users)} is not a readable and writable file (${err.code})`);
    }
  }
  return problems;
}

const ENV_PROBLEMS = environmentProblems();

// The SDK turns a trailing slash into "//api/v1/..." (it concatenates strings).
const BASE_URL = (process.env.MAILROOM_COMPAT_URL ?? "").replace(/\/+$/, "");
const API_KEY = process.env.MAILROOM_COMPAT_API_KEY;
const MAIL_HOST = process.env.MAILROOM_TEST_MAIL_HOST;
const IMAP_PORT = Number(process.env.MAILROOM_TEST_IMAP_PORT);
const IMAPS_PORT = Number(process.env.MAILROOM_TEST_IMAPS_PORT);
const SMTP_PORT = Number(process.env.MAILROOM_TEST_SMTP_PORT);
const MAIL_USERS_FILE = process.env.MAILROOM_TEST_MAIL_USERS;

const CLIENT_OPTIONS = { validateRequestPayload: true, validateRequestPayloadLevel: "error" };

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const STEP_TIMEOUT_MS = 60_000;
const UTC_MS_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
// Standard (not URL-safe) base64 with correct padding, non-empty.
const STD_BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function show(value) {
  return inspect(value, { depth: 8, breakLength: 120 });
}

/** Add a fresh Dovecot user (passwd-file line) and return its credentials. */
function createMailUser() {
  const address = `compat-${randomBytes(6).toString("hex")}@example.test`;
  const password = randomBytes(12).toString("hex");
  let prefix = "";
  const size = fs.statSync(MAIL_USERS_FILE).size;
  if (size > 0) {
    // Do not glue our line onto a last line that lacks its newline.
    const fd = fs.openSync(MAIL_USERS_FILE, "r");
    const last = Buffer.alloc(1);
    fs.readSync(fd, last, 0, 1, size - 1);
    fs.closeSync(fd);
    if (last[0] !== 0x0a) prefix = "\n";
  }
  fs.appendFileSync(MAIL_USERS_FILE, `${prefix}${address}:{PLAIN}${password}\n`);
  return { address, password };
}

function mailConnectInput({ address, password }) {
  return {
    provider: "MAIL",
    imap_host: MAIL_HOST,
    imap_port: IMAP_PORT,
    imap_encryption: "starttls",
    imap_user: address,
    imap_password: password,
    smtp_host: MAIL_HOST,
    smtp_port: SMTP_PORT,
    smtp_user: address,
    smtp_password: password,
  };
}

const ACCOUNT_TYPES = ["MOBILE", "MAIL", "GOOGLE_OAUTH", "ICLOUD", "OUTLOOK", "GOOGLE_CALENDAR", "WHATSAPP",
  "LINKEDIN", "SLACK", "TWITTER", "EXCHANGE", "TELEGRAM", "INSTAGRAM", "MESSENGER"];
const SOURCE_STATUSES = ["OK", "STOPPED", "ERROR", "CREDENTIALS", "PERMISSIONS", "CONNECTING"];

/** fetch() only says "fetch failed"; name the server and the cause. */
function rethrowTransport(label, err) {
  if (err instanceof TypeError && err.message === "fetch failed") {
    assert.fail(`${label}: cannot reach mailroom at ${BASE_URL}: ${err.cause?.code ?? ""} ${err.cause?.message ?? err.cause ?? ""}`);
  }
}

/**
 * TypeBox reports a failed union as just "Expected union value". Point at the
 * usual culprits (SDK 1.9.3 schemas, docs unipile-api.md §2.2, §2.3, §4.1).
 */
function schemaHints(value) {
  const hints = [];
  const walk = (v, path) => {
    if (Array.isArray(v)) return v.forEach((x, i) => walk(x, `${path}/${i}`));
    if (v === null || typeof v !== "object") return;
    for (const [k, x] of Object.entries(v)) {
      const p = `${path}/${k}`;
      if (/(_at|date)$/.test(k) && x !== null) {
        const d = new Date(x);
        if (typeof x !== "string" || Number.isNaN(d.getTime()) || d.toISOString() !== x) {
          hints.push(`${p}: dates must equal new Date(v).toISOString() (e.g. 2024-05-01T10:00:00.000Z), got ${show(x)}`);
        }
      }
      if (k === "cursor" && x !== null && typeof x !== "object" && !(typeof x === "string" && STD_BASE64_RE.test(x))) {
        hints.push(`${p}: cursor must be null or standard base64 (A-Z a-z 0-9 + / with = padding), got ${show(x)}`);
      }
      walk(x, p);
    }
    if (v.object === "Account") {
      if (!ACCOUNT_TYPES.includes(v.type)) hints.push(`${path}/type: must be one of ${ACCOUNT_TYPES.join("|")}, got ${show(v.type)}`);
      if (!Array.isArray(v.groups)) hints.push(`${path}/groups: required array`);
      if (!Array.isArray(v.sources)) hints.push(`${path}/sources: required array of {id, status}`);
      else v.sources.forEach((src, i) => {
        if (typeof src?.id !== "string") hints.push(`${path}/sources/${i}/id: required string`);
        if (!SOURCE_STATUSES.includes(src?.status)) hints.push(`${path}/sources/${i}/status: must be one of ${SOURCE_STATUSES.join("|")}`);
      });
      const mail = v.connection_params?.mail;
      if (v.type === "MAIL") {
        if (!mail) hints.push(`${path}/connection_params/mail: required for type MAIL`);
        else {
          for (const f of ["imap_host", "imap_user", "smtp_host", "smtp_user"]) {
            if (typeof mail[f] !== "string") hints.push(`${path}/connection_params/mail/${f}: required string`);
          }
          for (const f of ["imap_port", "smtp_port"]) {
            if (typeof mail[f] !== "number") hints.push(`${path}/connection_params/mail/${f}: required number`);
          }
          if (mail.imap_encryption !== undefined && !["tls", "ssl", "starttls", "default"].includes(mail.imap_encryption)) {
            hints.push(`${path}/connection_params/mail/imap_encryption: tls|ssl|starttls|default or absent`);
          }
        }
      }
      for (const f of ["id", "name"]) {
        if (typeof v[f] !== "string" || (f === "id" && v[f].length === 0)) hints.push(`${path}/${f}: required non-empty string`);
      }
    }
  };
  walk(value, "");
  return hints;
}

/**
 * Await an SDK call that must succeed. The SDK's own errors carry little in
 * `.message` (UnsuccessfulRequestError has an empty one), so turn them into
 * assertion failures that show the server's answer.
 */
async function ok(label, promise) {
  try {
    return await promise;
  } catch (err) {
    if (err instanceof InvalidResponseTypeError) {
      assert.fail(
        `${label}: the response does not match the unipile-node-sdk schema.\n` +
          `schema errors (first 5): ${show((err.body ?? []).slice(0, 5).map(({ path, message, value }) => ({ path, message, value })))}\n` +
          `likely causes: ${show(schemaHints(err.invalid_response))}\n` +
          `response: ${show(err.invalid_response)}`,
      );
    }
    if (err instanceof UnsuccessfulRequestError) {
      assert.fail(`${label}: request failed; error body: ${show(err.body)}`);
    }
    rethrowTransport(label, err);
    throw err;
  }
}

/** Await an SDK call that must fail with the given API error status and type. */
async function apiError(label, promise, { status, type }) {
  let result;
  try {
    result = await promise;
  } catch (err) {
    if (err instanceof InvalidResponseTypeError) {
      assert.fail(
        `${label}: expected ${status} ${type}, but got a 2xx response that does not even match the SDK schema: ` +
          show(err.invalid_response),
      );
    }
    rethrowTransport(label, err);
    assert.ok(
      err instanceof UnsuccessfulRequestError,
      `${label}: expected an UnsuccessfulRequestError, got ${show(err)}`,
    );
    const body = err.body;
    assert.ok(
      body !== null && typeof body === "object" && !(body instanceof Blob),
      `${label}: the error body is not JSON (the SDK parses only application/json); got ${show(body)}`,
    );
    assert.equal(body.type, type, `${label}: err.body.type; body: ${show(body)}`);
    assert.equal(body.status, status, `${label}: err.body.status; body: ${show(body)}`);
    assert.equal(typeof body.title, "string", `${label}: err.body.title must be a string; body: ${show(body)}`);
    return body;
  }
  assert.fail(`${label}: expected ${status} ${type}, but the call succeeded with ${show(result)}`);
}

function assertCursor(label, cursor) {
  assert.equal(typeof cursor, "string", `${label}: cursor must be a string, got ${show(cursor)}`);
  assert.ok(cursor.length > 0, `${label}: cursor must not be empty`);
  assert.match(cursor, STD_BASE64_RE, `${label}: cursor must be standard (not URL-safe) base64`);
}

function assertAccountList(label, list) {
  assert.equal(list.object, "AccountList", `${label}: object`);
  assert.ok(Array.isArray(list.items), `${label}: items must be an array`);
  assert.ok("cursor" in list, `${label}: the cursor key must be present (null on the last page)`);
  if (list.cursor !== null) assertCursor(label, list.cursor);
  for (const item of list.items) assert.equal(item.object, "Account", `${label}: item.object`);
}

/** Follow cursors from a first page to the end; returns every account seen, in order. */
async function walkAccounts(label, input) {
  const accounts = [];
  let page = await ok(`${label} page 1`, client.account.getAll(input));
  for (let n = 1; ; n++) {
    assertAccountList(`${label} page ${n}`, page);
    if (input.limit) {
      assert.ok(page.items.length <= input.limit, `${label} page ${n}: ${page.items.length} items > limit ${input.limit}`);
    }
    accounts.push(...page.items);
    if (page.cursor === null) break;
    assert.ok(page.items.length > 0, `${label} page ${n}: an empty page must have cursor null`);
    assert.ok(n < 1000, `${label}: more than 1000 pages; the cursor does not advance`);
    page = await ok(`${label} page ${n + 1}`, client.account.getAll({ cursor: page.cursor }));
  }
  return accounts;
}

// ---------------------------------------------------------------------------
// Plain HTTP for the mailroom-only endpoints the SDK does not cover (outbox)
// ---------------------------------------------------------------------------

const POLL_INTERVAL_MS = 250;
const DELIVERY_TIMEOUT_MS = 30_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** GET a mailroom API path with the API key; returns { status, body } (body parsed when JSON). */
async function apiGet(label, path) {
  let res;
  try {
    res = await fetch(`${BASE_URL}${path}`, { headers: { "X-API-KEY": API_KEY, accept: "application/json" } });
  } catch (err) {
    rethrowTransport(label, err);
    throw err;
  }
  const text = await res.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {
    // leave it as text; the caller's assertion shows it
  }
  return { status: res.status, body };
}

/** Poll GET /api/v1/outbox/{id} until status "sent"; fails on "failed" or after the deadline. */
async function waitForSent(label, trackingId, timeoutMs = DELIVERY_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  const path = `/api/v1/outbox/${encodeURIComponent(trackingId)}`;
  for (;;) {
    const { status, body } = await apiGet(label, path);
    assert.equal(status, 200, `${label}: GET ${path} answered ${status}: ${show(body)}`);
    if (body?.status === "sent") return body;
    if (body?.status === "failed") assert.fail(`${label}: the send failed: ${show(body)}`);
    if (Date.now() >= deadline) assert.fail(`${label}: not "sent" within ${timeoutMs} ms; last answer: ${show(body)}`);
    await sleep(POLL_INTERVAL_MS);
  }
}

/** Wait out a short CONNECTING phase; the account must end up OK (sends need it). */
async function waitAccountOk(label, accountId) {
  const deadline = Date.now() + DELIVERY_TIMEOUT_MS;
  for (;;) {
    const account = await ok(label, client.account.getOne(accountId));
    const status = account.sources?.[0]?.status;
    if (status === "OK") return account;
    if (status !== "CONNECTING" || Date.now() >= deadline) {
      assert.fail(`${label}: the account must be OK before sending, got ${show(account.sources)}`);
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

// ---------------------------------------------------------------------------
// A tiny IMAP client over implicit TLS (node:tls; no npm dependency). Enough
// for LOGIN, SELECT, UID SEARCH, UID FETCH and LOGOUT: tagged commands, reads
// every response until the tagged one, and reads server literals {n}.
// ---------------------------------------------------------------------------

const IMAP_IDLE_TIMEOUT_MS = 15_000;

/** An IMAP quoted string (RFC 3501 §4.3). */
function imapQuote(s) {
  assert.ok(!/[\r\n\0]/.test(s), `cannot quote ${show(s)} for IMAP`);
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

class ImapClient {
  #socket = null;
  #buf = Buffer.alloc(0);
  #waiter = null;
  #failure = null;
  #tag = 0;
  #label;

  constructor(label) {
    this.#label = label;
  }

  /** Connect with implicit TLS (self-signed certificate accepted) and read the greeting. */
  static async connect(label, host, port) {
    const imap = new ImapClient(label);
    await imap.#open(host, port);
    const greeting = await imap.#readResponse();
    if (!/^\* OK\b/i.test(greeting.text)) {
      imap.close();
      assert.fail(`${label}: unexpected IMAP greeting ${show(greeting.text)}`);
    }
    return imap;
  }

  #open(host, port) {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ host, port, rejectUnauthorized: false });
      this.#socket = socket;
      const onConnectError = (err) =>
        reject(new Error(`${this.#label}: cannot connect to IMAPS ${host}:${port}: ${err.message}`));
      socket.once("error", onConnectError);
      socket.once("secureConnect", () => {
        socket.off("error", onConnectError);
        resolve();
      });
      socket.setTimeout(IMAP_IDLE_TIMEOUT_MS, () =>
        socket.destroy(new Error(`no data from the IMAP server for ${IMAP_IDLE_TIMEOUT_MS} ms`)),
      );
      socket.on("data", (chunk) => {
        this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
        this.#wake();
      });
      socket.on("error", (err) => this.#fail(err));
      socket.on("close", () => this.#fail(new Error("the IMAP server closed the connection")));
    });
  }

  #fail(err) {
    this.#failure ??= err;
    this.#wake();
  }

  #wake() {
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.();
  }

  /** Wait for more data; throws once the connection has failed (buffered data is read first). */
  async #more(what) {
    if (this.#failure) throw new Error(`${this.#label}: ${this.#failure.message} (while reading ${what})`);
    await new Promise((resolve) => {
      this.#waiter = resolve;
    });
  }

  async #readLine() {
    for (;;) {
      const i = this.#buf.indexOf("\r\n");
      if (i >= 0) {
        const line = this.#buf.subarray(0, i).toString("latin1");
        this.#buf = this.#buf.subarray(i + 2);
        return line;
      }
      await this.#more("a response line");
    }
  }

  async #readBytes(n) {
    while (this.#buf.length < n) await this.#more(`a literal of ${n} bytes`);
    const bytes = Buffer.from(this.#buf.subarray(0, n));
    this.#buf = this.#buf.subarray(n);
    return bytes;
  }

  /** One whole response: its text (literal markers left in place) and its literals, in order. */
  async #readResponse() {
    let text = "";
    const literals = [];
    for (;;) {
      const line = await this.#readLine();
      text += line;
      const m = /\{(\d+)\+?\}$/.exec(line);
      if (!m) return { text, literals };
      literals.push(await this.#readBytes(Number(m[1])));
    }
  }

  /** Send a tagged command; returns the untagged responses; fails unless the tagged answer is OK. */
  async command(cmd, shown = cmd) {
    const tag = `c${++this.#tag}`;
    if (this.#failure) throw new Error(`${this.#label}: ${this.#failure.message} (before ${shown})`);
    this.#socket.write(`${tag} ${cmd}\r\n`);
    const untagged = [];
    for (;;) {
      const r = await this.#readResponse();
      if (r.text.startsWith(`${tag} `)) {
        const answer = r.text.slice(tag.length + 1);
        if (!/^OK\b/i.test(answer)) assert.fail(`${this.#label}: IMAP ${shown} -> ${answer}`);
        return untagged;
      }
      if (r.text.startsWith("+")) assert.fail(`${this.#label}: IMAP ${shown}: unexpected continuation ${show(r.text)}`);
      untagged.push(r);
    }
  }

  login(user, password) {
    return this.command(`LOGIN ${imapQuote(user)} ${imapQuote(password)}`, `LOGIN ${imapQuote(user)} "***"`);
  }

  /** UID SEARCH with the given criteria; returns the UIDs. */
  async uidSearch(criteria) {
    const untagged = await this.command(`UID SEARCH ${criteria}`);
    const uids = [];
    for (const { text } of untagged) {
      const m = /^\* SEARCH\b(.*)$/i.exec(text);
      if (m) uids.push(...m[1].trim().split(/\s+/).filter(Boolean).map(Number));
    }
    return uids;
  }

  /** The raw RFC 5322 bytes of one message (BODY.PEEK[], so \Seen is not set). */
  async fetchRaw(uid) {
    const untagged = await this.command(`UID FETCH ${uid} (UID BODY.PEEK[])`);
    const hit = untagged.find((r) => /^\* \d+ FETCH\b/i.test(r.text) && new RegExp(`\\bUID ${uid}\\b`).test(r.text));
    assert.ok(hit, `${this.#label}: no FETCH response for UID ${uid}: ${show(untagged.map((r) => r.text))}`);
    assert.match(hit.text, /BODY\[\] \{\d+\}/, `${this.#label}: BODY[] did not come as a literal: ${show(hit.text)}`);
    assert.equal(hit.literals.length, 1, `${this.#label}: expected one literal in ${show(hit.text)}`);
    return hit.literals[0];
  }

  async logout() {
    try {
      await this.command("LOGOUT");
    } finally {
      this.close();
    }
  }

  close() {
    this.#socket?.destroy();
  }
}

/**
 * Log in as `user` over IMAPS and wait (polling) until INBOX holds exactly one
 * message with this Message-ID; returns its raw bytes when `fetchBody` is set.
 */
async function findDelivered(label, user, messageId, { fetchBody = false, timeoutMs = DELIVERY_TIMEOUT_MS } = {}) {
  const imap = await ImapClient.connect(label, MAIL_HOST, IMAPS_PORT);
  try {
    await imap.login(user.address, user.password);
    const deadline = Date.now() + timeoutMs;
    let uids;
    for (;;) {
      // A fresh SELECT each round makes newly delivered mail visible.
      await imap.command("SELECT INBOX");
      uids = await imap.uidSearch(`HEADER Message-ID ${imapQuote(messageId)}`);
      if (uids.length > 0) break;
      if (Date.now() >= deadline) assert.fail(`${label}: no message with Message-ID ${messageId} in INBOX of ${user.address} within ${timeoutMs} ms`);
      await sleep(POLL_INTERVAL_MS);
    }
    assert.equal(uids.length, 1, `${label}: the message arrived ${uids.length} times (UIDs ${uids.join(", ")})`);
    const raw = fetchBody ? await imap.fetchRaw(uids[0]) : null;
    await imap.logout();
    return raw;
  } finally {
    imap.close();
  }
}

// ---------------------------------------------------------------------------
// A minimal MIME reader: headers (unfolded), multipart by boundary, leaf
// bodies decoded per Content-Transfer-Encoding. Works on latin1 strings so
// every byte survives.
// ---------------------------------------------------------------------------

/** Split a header value into its lower-cased main value and parameters (RFC 2045, RFC 2231). */
function parseHeaderParams(v) {
  const pieces = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    if (quoted && c === "\\" && i + 1 < v.length) {
      cur += c + v[++i];
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === ";" && !quoted) {
      pieces.push(cur);
      cur = "";
      continue;
    }
    cur += c;
  }
  pieces.push(cur);
  const value = pieces.shift().trim().toLowerCase();
  const params = {};
  const continued = {};
  for (const piece of pieces) {
    const eq = piece.indexOf("=");
    if (eq < 0) continue;
    let name = piece.slice(0, eq).trim().toLowerCase();
    let val = piece.slice(eq + 1).trim();
    if (val.length >= 2 && val.startsWith('"') && val.endsWith('"')) val = val.slice(1, -1).replace(/\\(.)/g, "$1");
    const extended = name.endsWith("*");
    if (extended) name = name.slice(0, -1);
    const section = /^(.*)\*(\d+)$/.exec(name);
    if (section) {
      (continued[section[1]] ??= []).push({ n: Number(section[2]), val, extended });
      continue;
    }
    params[name] = extended ? decode2231(val, true) : val;
  }
  for (const [name, sections] of Object.entries(continued)) {
    sections.sort((a, b) => a.n - b.n);
    params[name] = sections.map((s) => (s.extended ? decode2231(s.val, s.n === 0) : s.val)).join("");
  }
  return { value, params };
}

/** RFC 2231 extended value: charset'lang'%XX..., the charset prefix only on the first section. */
function decode2231(val, first) {
  const m = first ? /^([^']*)'[^']*'(.*)$/.exec(val) : null;
  const pct = m ? m[2] : val;
  try {
    return decodeURIComponent(pct);
  } catch {
    return pct;
  }
}

function splitEntity(raw) {
  const s = `\r\n${raw}`;
  const i = s.indexOf("\r\n\r\n");
  const block = i < 0 ? s.slice(2) : s.slice(2, i);
  const body = i < 0 ? "" : s.slice(i + 4);
  const headers = [];
  for (const line of block.replace(/\r\n(?=[ \t])/g, "").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.push({ name: line.slice(0, colon).trim().toLowerCase(), value: line.slice(colon + 1).trim() });
  }
  return { headers, body };
}

/** Parse a message (latin1 string) into a tree of { headers, type, params, body, parts }. */
function parseMime(raw, depth = 0) {
  assert.ok(depth < 20, "MIME nesting deeper than 20 levels");
  const { headers, body } = splitEntity(raw);
  const header = (name) => headers.find((h) => h.name === name)?.value;
  const ct = parseHeaderParams(header("content-type") ?? "text/plain");
  const entity = { headers, header, type: ct.value, params: ct.params, body, parts: [] };
  if (ct.value.startsWith("multipart/")) {
    const boundary = ct.params.boundary;
    assert.ok(boundary, `multipart without a boundary: ${show(header("content-type"))}`);
    // The CRLF before "--boundary" belongs to the delimiter (RFC 2046 §5.1.1).
    const chunks = `\r\n${body}`.split(`\r\n--${boundary}`);
    chunks.shift(); // preamble
    let closed = false;
    for (const chunk of chunks) {
      if (chunk.startsWith("--")) {
        closed = true;
        break;
      }
      const eol = chunk.indexOf("\r\n"); // the rest of the delimiter line (transport padding)
      assert.ok(eol >= 0 && /^[ \t]*$/.test(chunk.slice(0, eol)), `malformed delimiter line after --${boundary}`);
      entity.parts.push(parseMime(chunk.slice(eol + 2), depth + 1));
    }
    assert.ok(closed, `multipart ${ct.value} lacks its close delimiter --${boundary}--`);
  }
  return entity;
}

function mimeLeaves(entity) {
  return entity.parts.length === 0 && !entity.type.startsWith("multipart/") ? [entity] : entity.parts.flatMap(mimeLeaves);
}

function mimeFilename(entity) {
  const cd = entity.header("content-disposition");
  return (cd && parseHeaderParams(cd).params.filename) ?? entity.params.name ?? null;
}

function transferEncoding(entity) {
  return (entity.header("content-transfer-encoding") ?? "7bit").trim().toLowerCase();
}

/** A leaf's body bytes, decoded per its Content-Transfer-Encoding. */
function decodeLeaf(entity) {
  const cte = transferEncoding(entity);
  if (cte === "base64") {
    const b64 = entity.body.replace(/[\r\n\t ]/g, "");
    assert.match(b64, STD_BASE64_RE, `the base64 body of ${show(mimeFilename(entity) ?? entity.type)} is not valid base64`);
    return Buffer.from(b64, "base64");
  }
  if (cte === "quoted-printable") {
    const s = entity.body.replace(/[ \t]+(?=\r\n|$)/g, "").replace(/=\r\n/g, "");
    return Buffer.from(s.replace(/=([0-9A-Fa-f]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16))), "latin1");
  }
  assert.ok(["7bit", "8bit", "binary"].includes(cte), `unknown Content-Transfer-Encoding ${show(cte)}`);
  return Buffer.from(entity.body, "latin1");
}

function firstDifference(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

// ---------------------------------------------------------------------------
// The suite (steps run in order and share state).
// ---------------------------------------------------------------------------

let client;

if (ENV_PROBLEMS.length > 0) {
  // Never skip silently: a misconfigured run is a failed run.
  const message =
    `compat suite cannot run:\n  - ${ENV_PROBLEMS.join("\n  - ")}\n` +
    "scripts/test provides these (docs/testing.md); to run by hand see tests/compat/README.md.";
  console.error(message);
  test("environment for the compat suite", () => assert.fail(message));
} else {
  client = new UnipileClient(BASE_URL, API_KEY, CLIENT_OPTIONS);
  defineSuite();
}

function defineSuite() {
  describe(`mailroom at ${BASE_URL} vs unipile-node-sdk (validation level "error")`, { timeout: 10 * STEP_TIMEOUT_MS }, () => {
    const state = { user: null, accountId: null, user2: null, accountId2: null, sender: null, senderId: null, sentMessageId: null };
    const leftovers = new Set();

    after(async () => {
      // Best effort: do not leave accounts behind on a shared server.
      for (const id of leftovers) {
        try {
          await client.account.delete(id);
        } catch {
          // ignore
        }
      }
    });

    function needAccount() {
      assert.ok(state.accountId, "precondition: step 1 (account.connect) did not produce an account");
    }

    it("1. account.connect (MAIL, IMAP STARTTLS + SMTP submission) returns AccountCreated", { timeout: STEP_TIMEOUT_MS }, async () => {
      state.user = createMailUser();
      const res = await ok("account.connect", client.account.connect(mailConnectInput(state.user)));
      assert.equal(res.object, "AccountCreated", `object; response: ${show(res)}`);
      assert.equal(typeof res.account_id, "string", `account_id; response: ${show(res)}`);
      assert.ok(res.account_id.length > 0, "account_id must not be empty");
      state.accountId = res.account_id;
      leftovers.add(res.account_id);
    });

    it("2. account.getAll lists the account; limit=1 paginates with a standard-base64 cursor", { timeout: STEP_TIMEOUT_MS }, async () => {
      needAccount();
      const list = await ok("account.getAll()", client.account.getAll());
      assertAccountList("account.getAll()", list);

      // A second account guarantees at least two, so limit=1 must paginate.
      state.user2 = createMailUser();
      const res2 = await ok("account.connect (second account)", client.account.connect(mailConnectInput(state.user2)));
      assert.equal(res2.object, "AccountCreated", `second connect; response: ${show(res2)}`);
      state.accountId2 = res2.account_id;
      leftovers.add(res2.account_id);
      assert.notEqual(state.accountId2, state.accountId, "two connects must yield two account ids");

      const all = (await walkAccounts("account.getAll()", {})).map((a) => a.id);
      assert.ok(all.includes(state.accountId), `account.getAll() does not list ${state.accountId}: ${show(all)}`);
      assert.ok(all.includes(state.accountId2), `account.getAll() does not list ${state.accountId2}: ${show(all)}`);
      assert.equal(new Set(all).size, all.length, `account.getAll() lists an id twice: ${show(all)}`);

      const first = await ok("account.getAll({limit:1})", client.account.getAll({ limit: 1 }));
      assertAccountList("account.getAll({limit:1})", first);
      assert.equal(first.items.length, 1, "limit=1: first page must hold exactly one account");
      assert.notEqual(first.cursor, null, "limit=1 with >= 2 accounts: cursor must not be null");
      assertCursor("account.getAll({limit:1})", first.cursor);

      const second = await ok("account.getAll({cursor})", client.account.getAll({ cursor: first.cursor }));
      assertAccountList("account.getAll({cursor})", second);
      assert.equal(second.items.length, 1, "limit=1: the page after the cursor must hold exactly one account");
      assert.notEqual(second.items[0].id, first.items[0].id, "the cursor must advance to a different account");

      const paged = (await walkAccounts("account.getAll({limit:1})", { limit: 1 })).map((a) => a.id);
      assert.deepEqual(
        [...paged].sort(),
        [...all].sort(),
        "walking limit=1 pages must visit every account exactly once",
      );
    });

    it("3. account.getOne returns the MAIL account with its connection params", { timeout: STEP_TIMEOUT_MS }, async () => {
      needAccount();
      let account = await ok("account.getOne", client.account.getOne(state.accountId));
      // Tolerate a short CONNECTING phase right after creation.
      for (let i = 0; i < 30 && account.sources?.[0]?.status === "CONNECTING"; i++) {
        await new Promise((r) => setTimeout(r, 500));
        account = await ok("account.getOne", client.account.getOne(state.accountId));
      }
      assert.equal(account.object, "Account");
      assert.equal(account.id, state.accountId);
      assert.equal(account.type, "MAIL");
      assert.equal(account.name, state.user.address);
      assert.match(account.created_at, UTC_MS_RE, "created_at must be YYYY-MM-DDTHH:MM:SS.sssZ");
      assert.equal(new Date(account.created_at).toISOString(), account.created_at);
      const mail = account.connection_params?.mail;
      assert.ok(mail, `connection_params.mail missing: ${show(account)}`);
      assert.equal(mail.imap_host, MAIL_HOST);
      assert.equal(mail.imap_port, IMAP_PORT);
      assert.equal(mail.imap_user, state.user.address);
      assert.equal(mail.smtp_host, MAIL_HOST);
      assert.equal(mail.smtp_port, SMTP_PORT);
      assert.equal(mail.smtp_user, state.user.address);
      assert.ok(Array.isArray(account.sources) && account.sources.length > 0, `sources: ${show(account.sources)}`);
      assert.equal(account.sources[0].status, "OK", `sources: ${show(account.sources)}`);
      assert.ok(
        !JSON.stringify(account).includes(state.user.password),
        "the account resource must not echo the mailbox password",
      );
    });

    it("4. account.connect with a wrong password fails with 401 errors/invalid_credentials", { timeout: STEP_TIMEOUT_MS }, async () => {
      const user = createMailUser();
      const wrong = { address: user.address, password: `${user.password}-wrong` };
      await apiError("account.connect (wrong password)", client.account.connect(mailConnectInput(wrong)), {
        status: 401,
        type: "errors/invalid_credentials",
      });
      const names = (await walkAccounts("account.getAll()", {})).map((a) => a.name);
      assert.ok(!names.includes(user.address), "a rejected connect must not create an account");
    });

    it("5. account.delete returns AccountDeleted; the account is then 404 errors/resource_not_found", { timeout: STEP_TIMEOUT_MS }, async () => {
      needAccount();
      const res = await ok("account.delete", client.account.delete(state.accountId));
      assert.equal(res.object, "AccountDeleted", `response: ${show(res)}`);
      leftovers.delete(state.accountId);
      await apiError("account.getOne (deleted)", client.account.getOne(state.accountId), {
        status: 404,
        type: "errors/resource_not_found",
      });
      const ids = (await walkAccounts("account.getAll() after delete", {})).map((a) => a.id);
      assert.ok(!ids.includes(state.accountId), "a deleted account must not be listed");
    });

    it("6. a client with a wrong API key gets 401 errors/invalid_credentials", { timeout: STEP_TIMEOUT_MS }, async () => {
      const badClient = new UnipileClient(BASE_URL, `${API_KEY}-wrong`, CLIENT_OPTIONS);
      await apiError("account.getAll (wrong key)", badClient.account.getAll(), {
        status: 401,
        type: "errors/invalid_credentials",
      });
    });

    it("7. email.send with attachments through the SDK: EmailSent, outbox \"sent\", delivered intact (IMAPS)", { timeout: 3 * STEP_TIMEOUT_MS }, async () => {
      // Fresh mailboxes: the sender (a connected MAIL account), a To and a Cc recipient.
      const sender = createMailUser();
      const to = createMailUser();
      const cc = createMailUser();
      const connected = await ok("account.connect (sender)", client.account.connect(mailConnectInput(sender)));
      assert.equal(connected.object, "AccountCreated", `connect; response: ${show(connected)}`);
      const accountId = connected.account_id;
      leftovers.add(accountId);
      state.sender = sender;
      state.senderId = accountId;
      await waitAccountOk("account.getOne (sender)", accountId);

      const textBytes = Buffer.from("hello attachment");
      // Every byte value (NUL, CR, LF, 0x80-0xFF...) then random bytes: 3000 bytes that are not text.
      const blobBytes = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(3000 - 256)]);
      const res = await ok(
        "email.send",
        client.email.send({
          account_id: accountId,
          to: [{ identifier: to.address, display_name: "To" }],
          cc: [{ identifier: cc.address }],
          subject: "compat send",
          body: "<p>hello from the SDK</p>",
          attachments: [
            ["hello.txt", textBytes],
            ["blob.bin", blobBytes],
          ],
          custom_headers: [{ name: "X-Compat", value: "1" }],
        }),
      );
      assert.equal(res.object, "EmailSent", `object; response: ${show(res)}`);
      assert.equal(typeof res.tracking_id, "string", `tracking_id; response: ${show(res)}`);
      assert.ok(res.tracking_id.length > 0, "tracking_id must not be empty");
      // The SDK hides the HTTP status: 201 "sent", or 202 "queued" for a transient failure (docs/sending.md).
      if (res.status !== undefined) {
        assert.ok(["sent", "queued"].includes(res.status), `status; response: ${show(res)}`);
      }

      const item = await waitForSent("GET /api/v1/outbox/{tracking_id}", res.tracking_id);
      assert.equal(item.id, res.tracking_id, `outbox id; item: ${show(item)}`);
      assert.equal(item.account_id, accountId, `outbox account_id; item: ${show(item)}`);
      assert.equal(item.subject, "compat send", `outbox subject; item: ${show(item)}`);
      assert.ok(Array.isArray(item.recipients), `outbox recipients must be an array; item: ${show(item)}`);
      const recipients = item.recipients.map((r) => String(r).toLowerCase());
      for (const user of [to, cc]) {
        assert.ok(recipients.includes(user.address), `outbox recipients must include ${user.address}: ${show(item.recipients)}`);
      }
      assert.equal(typeof item.message_id, "string", `outbox message_id; item: ${show(item)}`);
      assert.ok(item.message_id.length > 0, `outbox message_id must not be empty; item: ${show(item)}`);
      if (res.message_id !== undefined) assert.equal(res.message_id, item.message_id, "EmailSent.message_id vs the outbox");
      state.sentMessageId = item.message_id;

      // Delivery: read the To recipient's INBOX over implicit-TLS IMAP; the Cc copy must arrive too.
      const raw = await findDelivered("IMAPS (To)", to, item.message_id, { fetchBody: true });
      await findDelivered("IMAPS (Cc)", cc, item.message_id);

      const message = parseMime(raw.toString("latin1"));
      const header = (name) => message.header(name);
      assert.equal(header("message-id"), item.message_id, "Message-ID header");
      assert.equal(header("subject"), "compat send", "Subject header");
      assert.equal(header("x-compat"), "1", "X-Compat header (custom_headers)");
      assert.ok(header("from")?.toLowerCase().includes(sender.address), `From must be the account's address: ${show(header("from"))}`);
      assert.ok(header("to")?.toLowerCase().includes(to.address), `To header: ${show(header("to"))}`);
      assert.ok(header("cc")?.toLowerCase().includes(cc.address), `Cc header: ${show(header("cc"))}`);
      assert.equal(header("bcc"), undefined, "no Bcc header is ever sent");

      const leaves = mimeLeaves(message);
      const outline = leaves.map((l) => ({ type: l.type, filename: mimeFilename(l), cte: transferEncoding(l) }));
      const html = leaves.filter((l) => l.type === "text/html" && mimeFilename(l) === null);
      assert.equal(html.length, 1, `one text/html body part expected; parts: ${show(outline)}`);
      assert.ok(decodeLeaf(html[0]).toString("utf8").includes("<p>hello from the SDK</p>"), "the HTML body");
      const plain = leaves.filter((l) => l.type === "text/plain" && mimeFilename(l) === null);
      assert.equal(plain.length, 1, `one derived text/plain alternative expected; parts: ${show(outline)}`);
      assert.ok(decodeLeaf(plain[0]).toString("utf8").includes("hello from the SDK"), "the plain-text alternative");

      for (const [filename, bytes, type] of [
        ["hello.txt", textBytes, "text/plain"],
        ["blob.bin", blobBytes, "application/octet-stream"],
      ]) {
        const parts = leaves.filter((l) => mimeFilename(l) === filename);
        assert.equal(parts.length, 1, `exactly one part named ${filename}; parts: ${show(outline)}`);
        const [part] = parts;
        assert.equal(part.type, type, `${filename}: Content-Type from the file name`);
        assert.equal(transferEncoding(part), "base64", `${filename}: Content-Transfer-Encoding`);
        const decoded = decodeLeaf(part);
        assert.ok(
          decoded.equals(bytes),
          `${filename}: decoded ${decoded.length} bytes, sent ${bytes.length}; first difference at byte ${firstDifference(decoded, bytes)}`,
        );
      }
    });

    it("8. email.send from an unknown account_id fails with 404 errors/resource_not_found", { timeout: STEP_TIMEOUT_MS }, async () => {
      const unknown = randomBytes(16).toString("base64url"); // 22 characters, the shape of a mailroom id
      await apiError(
        "email.send (unknown account)",
        client.email.send({
          account_id: unknown,
          to: [{ identifier: "nobody@example.test", display_name: "To" }],
          subject: "compat send",
          body: "<p>hello from the SDK</p>",
          attachments: [["hello.txt", Buffer.from("hello attachment")]],
        }),
        { status: 404, type: "errors/resource_not_found" },
      );
      // Nothing was stored: the newest sends do not include one for that account.
      const { status, body } = await apiGet("GET /api/v1/outbox", "/api/v1/outbox");
      assert.equal(status, 200, `GET /api/v1/outbox answered ${status}: ${show(body)}`);
      assert.ok(Array.isArray(body?.items), `GET /api/v1/outbox: items; body: ${show(body)}`);
      assert.ok(!body.items.some((i) => i.account_id === unknown), "a refused send must not be stored in the outbox");
    });

    it("9. account.createHostedAuthLink returns a HostedAuthUrl whose page answers 200 text/html", { timeout: STEP_TIMEOUT_MS }, async () => {
      // Milliseconds and Z, as the SDK's own examples build it.
      const expiresOn = new Date(Date.now() + 3600_000).toISOString();
      assert.match(expiresOn, UTC_MS_RE);
      const res = await ok(
        "account.createHostedAuthLink",
        client.account.createHostedAuthLink({
          type: "create",
          providers: ["GOOGLE", "OUTLOOK", "MAIL"],
          expiresOn,
          api_url: BASE_URL,
          name: "compat",
          success_redirect_url: "https://app.example.test/connected",
          failure_redirect_url: "https://app.example.test/failed",
          notify_url: "https://app.example.test/notify",
        }),
      );
      assert.equal(res.object, "HostedAuthUrl", `object; response: ${show(res)}`);
      assert.equal(typeof res.url, "string", `url; response: ${show(res)}`);
      assert.ok(
        res.url.startsWith(`${BASE_URL}/`),
        `the link must be under the server's URL ${BASE_URL}/, got ${show(res.url)}`,
      );
      let page;
      try {
        page = await fetch(res.url, { redirect: "manual", headers: { accept: "text/html" } });
      } catch (err) {
        rethrowTransport("GET the hosted link", err);
        throw err;
      }
      const html = await page.text();
      assert.equal(page.status, 200, `GET ${res.url} answered ${page.status}: ${html.slice(0, 500)}`);
      const type = page.headers.get("content-type") ?? "";
      assert.match(type, /^text\/html\b/i, `GET ${res.url}: content-type ${show(type)}`);
      assert.match(html, /<html[\s>]/i, `GET ${res.url}: not an HTML page: ${html.slice(0, 500)}`);
    });

    it("10. account.createHostedAuthLink with a bad type fails with 400 errors/invalid_parameters", { timeout: STEP_TIMEOUT_MS }, async () => {
      await apiError(
        "account.createHostedAuthLink (type delete)",
        client.account.createHostedAuthLink({
          type: "delete",
          providers: ["MAIL"],
          expiresOn: new Date(Date.now() + 3600_000).toISOString(),
          api_url: BASE_URL,
        }),
        { status: 400, type: "errors/invalid_parameters" },
      );
    });

    // Steps 11-14 read the index. Nothing starts a sync pass in this server yet (the sync
    // supervisor comes later), so the sender's index may be empty: every check holds for an
    // empty list and, item by item, for indexed mail (the Sent copy of step 7 once synced).

    function readAccount() {
      assert.ok(state.senderId, "precondition: step 7 (email.send) did not produce a sender account");
      return state.senderId;
    }

    function assertEmailList(label, list, { kind = "2_full", accountId } = {}) {
      assert.equal(list.object, "EmailList", `${label}: object`);
      assert.ok(Array.isArray(list.items), `${label}: items must be an array`);
      assert.ok("cursor" in list, `${label}: the cursor key must be present (null on the last page)`);
      if (list.cursor !== null) assertCursor(label, list.cursor);
      for (const item of list.items) {
        assert.equal(item.object, "Email", `${label}: item.object`);
        assert.equal(item.kind, kind, `${label}: item.kind; item: ${show(item)}`);
        if (accountId) assert.equal(item.account_id, accountId, `${label}: item.account_id`);
        assert.match(item.date, UTC_MS_RE, `${label}: item.date`);
        if (kind === "1_meta") {
          assert.equal(item.body, "", `${label}: meta_only items have an empty body`);
          assert.equal(item.body_plain, "", `${label}: meta_only items have an empty body_plain`);
        }
      }
    }

    it("11. email.getAll: EmailList of the account's indexed mail with filters, meta_only, cursors; bad filters 400, unknown account 404", { timeout: STEP_TIMEOUT_MS }, async () => {
      const accountId = readAccount();
      const list = await ok("email.getAll({account_id})", client.email.getAll({ account_id: accountId }));
      assertEmailList("email.getAll({account_id})", list, { accountId });
      const all = await ok("email.getAll()", client.email.getAll());
      assertEmailList("email.getAll()", all);
      const folders = await ok("email.getAllFolders({account_id})", client.email.getAllFolders({ account_id: accountId }));
      const sent = folders.items.find((f) => f.role === "sent");

      const now = Date.now();
      const filtered = await ok(
        "email.getAll (every filter)",
        client.email.getAll(
          {
            account_id: accountId,
            role: "sent",
            ...(sent ? { folder: sent.provider_id } : {}),
            from: state.sender.address,
            any_email: `${state.sender.address},nobody@example.test`,
            before: new Date(now + 3600_000).toISOString(),
            after: new Date(now - 86400_000).toISOString(),
            limit: 5,
          },
          { extra_params: { meta_only: "true", search: "compat send", exclude_folders: "Trash,Junk" } },
        ),
      );
      assertEmailList("email.getAll (every filter)", filtered, { kind: "1_meta", accountId });
      for (const item of filtered.items) {
        assert.equal(item.role, "sent", `role filter; item: ${show(item)}`);
        assert.equal(item.from_attendee.identifier, state.sender.address, `from filter; item: ${show(item)}`);
      }
      if (state.sentMessageId) {
        const byMid = await ok(
          "email.getAll (message_id)",
          client.email.getAll({ account_id: accountId }, { extra_params: { message_id: state.sentMessageId, include_headers: "true" } }),
        );
        assertEmailList("email.getAll (message_id)", byMid, { accountId });
        for (const item of byMid.items) {
          assert.equal(item.message_id, state.sentMessageId);
          assert.ok(Array.isArray(item.headers), `include_headers: headers; item: ${show(item)}`);
        }
      }

      // Walk the account's mail one per page: every email once, cursors in standard base64.
      const seen = [];
      let page = await ok("email.getAll({limit:1})", client.email.getAll({ account_id: accountId, limit: 1 }));
      for (let n = 1; ; n++) {
        assertEmailList(`email.getAll({limit:1}) page ${n}`, page, { accountId });
        assert.ok(page.items.length <= 1, `page ${n}: more than limit=1 items`);
        seen.push(...page.items.map((i) => i.id));
        if (page.cursor === null) break;
        assert.ok(n < 1000, "the cursor does not advance");
        page = await ok(`email.getAll({cursor}) page ${n + 1}`, client.email.getAll({ cursor: page.cursor }));
      }
      assert.deepEqual([...seen].sort(), list.items.map((i) => i.id).sort(), "walking limit=1 pages visits every email once");

      await apiError("email.getAll (bad before)", client.email.getAll({ account_id: accountId, before: "yesterday" }), {
        status: 400,
        type: "errors/invalid_parameters",
      });
      await apiError("email.getAll (bad role)", client.email.getAll({ account_id: accountId, role: "INBOX" }), {
        status: 400,
        type: "errors/invalid_parameters",
      });
      await apiError(
        "email.getAll (search without a word)",
        client.email.getAll({ account_id: accountId }, { extra_params: { search: "\"*\"" } }),
        { status: 400, type: "errors/invalid_parameters" },
      );
      await apiError("email.getAll (unknown account)", client.email.getAll({ account_id: randomBytes(16).toString("base64url") }), {
        status: 404,
        type: "errors/resource_not_found",
      });
      state.emails = list.items;
    });

    it("12. email.getOne (by id and byProviderId) answers the full Email; unknown ids are 404", { timeout: STEP_TIMEOUT_MS }, async () => {
      const accountId = readAccount();
      for (const item of (state.emails ?? []).slice(0, 3)) {
        const one = await ok("email.getOne", client.email.getOne(item.id));
        assert.equal(one.object, "Email");
        assert.equal(one.id, item.id);
        assert.equal(one.kind, "2_full");
        const byPid = await ok("email.getOne.byProviderId", client.email.getOne.byProviderId(item.provider_id, accountId));
        assert.equal(byPid.id, item.id, `byProviderId(${item.provider_id})`);
        const withHeaders = await ok("email.getOne (include_headers)", client.email.getOne(item.id, { extra_params: { include_headers: "true" } }));
        assert.ok(Array.isArray(withHeaders.headers), `include_headers: ${show(withHeaders)}`);
      }
      await apiError("email.getOne (unknown)", client.email.getOne(randomBytes(16).toString("base64url")), {
        status: 404,
        type: "errors/resource_not_found",
      });
      await apiError("email.getOne.byProviderId (unknown)", client.email.getOne.byProviderId("1:999999@INBOX", accountId), {
        status: 404,
        type: "errors/resource_not_found",
      });
    });

    it("13. email.getAllFolders: FolderList (no cursor) of Folder items with roles and nb_mails", { timeout: STEP_TIMEOUT_MS }, async () => {
      const accountId = readAccount();
      for (const [label, input] of [
        ["email.getAllFolders({account_id})", { account_id: accountId }],
        ["email.getAllFolders()", {}],
      ]) {
        const list = await ok(label, client.email.getAllFolders(input));
        assert.equal(list.object, "FolderList", `${label}: object`);
        assert.ok(Array.isArray(list.items), `${label}: items`);
        for (const f of list.items) {
          assert.equal(f.object, "Folder", `${label}: item.object`);
          assert.equal(typeof f.nb_mails, "number", `${label}: nb_mails; item: ${show(f)}`);
          if (input.account_id) assert.equal(f.account_id, accountId, `${label}: account_id`);
        }
        if (input.account_id) state.folders = list.items;
      }
      await apiError("email.getAllFolders (unknown account)", client.email.getAllFolders({ account_id: randomBytes(16).toString("base64url") }), {
        status: 404,
        type: "errors/resource_not_found",
      });
    });

    it("14. email.getOneFolder (by id and byProviderId); unknown folders are 404", { timeout: STEP_TIMEOUT_MS }, async () => {
      const accountId = readAccount();
      for (const f of state.folders ?? []) {
        const one = await ok("email.getOneFolder", client.email.getOneFolder(f.id));
        assert.deepEqual(one, f, "getOneFolder(id) answers the listed folder");
        const byPid = await ok("email.getOneFolder.byProviderId", client.email.getOneFolder.byProviderId(f.provider_id, accountId));
        assert.equal(byPid.id, f.id, `byProviderId(${f.provider_id})`);
      }
      await apiError("email.getOneFolder (unknown)", client.email.getOneFolder(randomBytes(16).toString("base64url")), {
        status: 404,
        type: "errors/resource_not_found",
      });
      await apiError("email.getOneFolder.byProviderId (unknown)", client.email.getOneFolder.byProviderId("No-Such-Folder", accountId), {
        status: 404,
        type: "errors/resource_not_found",
      });
    });

    // Steps 15-18 need an email the API indexed itself. Until a sync worker indexes delivered mail, the one
    // way to get one through the API is a draft (POST /drafts files it and indexes it), so
    // they work on a draft: its attachment, its read state, its deletion.
    const drafted = { accountId: null, draftId: null, attachmentId: null, bytes: null };

    it("15. POST /drafts (client.request.send, FormData as the SDK builds it) returns DraftCreated", { timeout: STEP_TIMEOUT_MS }, async () => {
      const owner = createMailUser();
      const connected = await ok("account.connect (drafts)", client.account.connect(mailConnectInput(owner)));
      drafted.accountId = connected.account_id;
      leftovers.add(connected.account_id);
      await waitAccountOk("account.getOne (drafts)", drafted.accountId);
      drafted.bytes = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(744)]);
      const form = new FormData();
      form.append("account_id", drafted.accountId);
      form.append("to", JSON.stringify([{ identifier: "someone@example.test" }]));
      form.append("subject", "compat draft");
      form.append("body", "<p>a draft</p>");
      form.append("attachments", new Blob([drafted.bytes], { type: "application/octet-stream" }), "blob.bin");
      const res = await ok(
        "POST /drafts",
        client.request.send({
          path: ["drafts"],
          method: "POST",
          body: form,
          headers: {},
          // No SDK schema exists for DraftCreated: checked by hand below.
          options: { validateRequestPayload: false },
        }),
      );
      assert.equal(res.object, "DraftCreated", `response: ${show(res)}`);
      assert.equal(typeof res.draft_id, "string", `draft_id; response: ${show(res)}`);
      drafted.draftId = res.draft_id;
      // The attachment's id: from GET /emails/{id} where the read API serves it, else the MIME
      // builder's layout (multipart/mixed: the body is part 1, the file part 2).
      const { status, body } = await apiGet("GET /api/v1/emails/{draft_id}", `/api/v1/emails/${res.draft_id}`);
      drafted.attachmentId = status === 200 && body?.attachments?.[0]?.id ? body.attachments[0].id : "2";
    });

    function needDraft() {
      assert.ok(drafted.draftId, "precondition: step 11 (POST /drafts) did not produce a draft");
    }

    it("16. email.getEmailAttachment returns the file's bytes with its type (not JSON)", { timeout: STEP_TIMEOUT_MS }, async () => {
      needDraft();
      const blob = await ok(
        "email.getEmailAttachment",
        client.email.getEmailAttachment({ email_id: drafted.draftId, attachment_id: drafted.attachmentId }),
      );
      assert.ok(blob instanceof Blob, `the SDK must get a Blob (a non-JSON answer); got ${show(blob)}`);
      assert.ok(!blob.type.includes("json"), `content type ${show(blob.type)}`);
      const got = Buffer.from(await blob.arrayBuffer());
      assert.ok(got.equals(drafted.bytes), `got ${got.length} bytes, sent ${drafted.bytes.length}; first difference at byte ${firstDifference(got, drafted.bytes)}`);
      await apiError(
        "email.getEmailAttachment (unknown attachment)",
        client.email.getEmailAttachment({ email_id: drafted.draftId, attachment_id: "9" }),
        { status: 404, type: "errors/resource_not_found" },
      );
    });

    it("17. email.update: the SDK's [object Object] body is 400 errors/invalid_parameters; a JSON body through client.request.send works", { timeout: STEP_TIMEOUT_MS }, async () => {
      needDraft();
      const body = await apiError(
        "email.update (the SDK's broken body)",
        client.email.update({ email_id: drafted.draftId, unread: true }),
        { status: 400, type: "errors/invalid_parameters" },
      );
      assert.match(body.detail, /application\/json/, `the detail says how to send it: ${show(body)}`);
      for (const unread of [true, false]) {
        const res = await ok(
          `PUT /emails/{id} {unread: ${unread}} as JSON`,
          client.request.send({
            path: ["emails", drafted.draftId],
            method: "PUT",
            body: { unread },
            headers: { "Content-Type": "application/json" },
            // The SDK exports no EmailUpdated validator; `object` is checked by hand.
            validator: untypedYetValidator,
          }),
        );
        assert.equal(res.object, "EmailUpdated", `response: ${show(res)}`);
      }
      await apiError(
        "PUT /emails/{id} with two folders",
        client.request.send({
          path: ["emails", drafted.draftId],
          method: "PUT",
          body: { folders: ["INBOX", "Archive"] },
          headers: { "Content-Type": "application/json" },
          // The SDK exports no EmailUpdated validator; `object` is checked by hand.
            validator: untypedYetValidator,
        }),
        { status: 400, type: "errors/invalid_parameters" },
      );
    });

    it("18. email.delete returns EmailDeleted (to Trash, then expunged from it); then 404", { timeout: STEP_TIMEOUT_MS }, async () => {
      needDraft();
      for (const what of ["to the Trash", "expunged from the Trash"]) {
        const res = await ok(`email.delete (${what})`, client.email.delete(drafted.draftId));
        assert.equal(res.object, "EmailDeleted", `response: ${show(res)}`);
      }
      await apiError("email.delete (gone)", client.email.delete(drafted.draftId), {
        status: 404,
        type: "errors/resource_not_found",
      });
      await apiError("email.update (unknown)", client.email.update({ email_id: drafted.draftId, unread: true }), {
        status: 400,
        type: "errors/invalid_parameters",
      });
    });

    it("19. webhook.create / webhook.getAll / webhook.delete, with mailroom's own events subscribed", { timeout: STEP_TIMEOUT_MS }, async () => {
      // `.invalid` never resolves: nothing is ever sent anywhere from this step.
      const mail = await ok(
        "webhook.create (email)",
        client.webhook.create({
          source: "email",
          request_url: "https://compat-hooks.invalid/mail",
          name: "compat",
          format: "form",
          events: ["mail_received", "mail_sent", "mail_moved", "send_failed"],
          headers: [{ key: "X-Compat", value: "1" }],
          data: [{ name: "id", key: "email_id" }],
          ...(state.senderId ? { account_ids: [state.senderId] } : {}),
        }),
      );
      assert.equal(mail.object, "WebhookCreated", `response: ${show(mail)}`);
      assert.equal(typeof mail.webhook_id, "string");
      assert.match(mail.secret, /^whsec_[A-Za-z0-9+/]+=*$/, "a Standard Webhooks secret");
      const status = await ok(
        "webhook.create (account_status)",
        client.webhook.create({ source: "account_status", request_url: "https://compat-hooks.invalid/status" }),
      );
      assert.equal(status.object, "WebhookCreated", `response: ${show(status)}`);

      const list = await ok("webhook.getAll()", client.webhook.getAll());
      assert.equal(list.object, "WebhookList");
      const mine = list.items.find((w) => w.id === mail.webhook_id);
      assert.ok(mine, `webhook.getAll() does not list ${mail.webhook_id}: ${show(list)}`);
      assert.deepEqual(mine.events, ["mail_received", "mail_sent"], "the SDK's events only");
      assert.deepEqual(mine.mailroom_events, ["mail_moved", "send_failed"], "mailroom's apart");
      assert.equal(mine.format, "form");
      assert.deepEqual(mine.headers, [{ key: "X-Compat", value: "1" }]);
      assert.deepEqual(mine.data, [{ name: "id", key: "email_id" }]);
      if (state.senderId) {
        assert.equal(mine.account_ids[0].id, state.senderId);
        assert.equal(mine.account_ids[0].type, "MAIL");
      }
      assert.ok(list.items.some((w) => w.id === status.webhook_id), "the account_status webhook is listed");

      for (const id of [mail.webhook_id, status.webhook_id]) {
        const res = await ok("webhook.delete", client.webhook.delete(id));
        assert.equal(res.object, "WebhookDeleted", `response: ${show(res)}`);
      }
      const after = await ok("webhook.getAll() after delete", client.webhook.getAll());
      assert.ok(!after.items.some((w) => w.id === mail.webhook_id), "a deleted webhook must not be listed");
      await apiError("webhook.delete (gone)", client.webhook.delete(mail.webhook_id), {
        status: 404,
        type: "errors/resource_not_found",
      });
      await apiError(
        "webhook.create (bad source)",
        client.webhook.create({ source: "nope", request_url: "https://compat-hooks.invalid/x" }),
        { status: 400, type: "errors/invalid_parameters" },
      );
    });

    // The fake Google's mailbox (mailroom-fakes --seed-mail): "compat gmail one" (INBOX,
    // unread), "compat gmail report" (INBOX, a PDF attached), "compat gmail sent" (SENT).
    const GMAIL_PDF = Buffer.from("JVBERi0xLjQKJcOkw7zDtsOfCg==", "base64");

    it("20. a Gmail account: email.getAll / getOne / byProviderId / getAllFolders / getOneFolder / getEmailAttachment read its synced mail", { timeout: 3 * STEP_TIMEOUT_MS }, async () => {
      const linked = await ok(
        "POST /accounts (GOOGLE_OAUTH with the fake's grant)",
        client.request.send({
          path: ["accounts"],
          method: "POST",
          body: {
            provider: "GOOGLE_OAUTH",
            access_token: process.env.MAILROOM_COMPAT_GOOGLE_ACCESS_TOKEN,
            refresh_token: process.env.MAILROOM_COMPAT_GOOGLE_REFRESH_TOKEN,
          },
          headers: { "Content-Type": "application/json" },
          validator: untypedYetValidator,
        }),
      );
      assert.equal(linked.object, "AccountCreated", `response: ${show(linked)}`);
      const gmailId = linked.account_id;
      leftovers.add(gmailId);
      const account = await ok("account.getOne (Gmail)", client.account.getOne(gmailId));
      assert.equal(account.type, "GOOGLE_OAUTH");

      // The sync supervisor takes the account up and lists the mailbox.
      let list;
      const deadline = Date.now() + 2 * STEP_TIMEOUT_MS;
      for (;;) {
        list = await ok("email.getAll({account_id: Gmail})", client.email.getAll({ account_id: gmailId }));
        if (list.items.length >= 3 || Date.now() > deadline) break;
        await sleep(250);
      }
      assertEmailList("email.getAll({account_id: Gmail})", list, { accountId: gmailId });
      const bySubject = Object.fromEntries(list.items.map((i) => [i.subject, i]));
      for (const subject of ["compat gmail one", "compat gmail report", "compat gmail sent"]) {
        assert.ok(bySubject[subject], `${subject} is not listed: ${show(list.items.map((i) => i.subject))}`);
      }
      const [one, report, sent] = ["compat gmail one", "compat gmail report", "compat gmail sent"].map((s) => bySubject[s]);
      assert.equal(one.role, "inbox");
      assert.equal(one.read_date, null, "UNREAD in Gmail: not read");
      assert.equal(sent.role, "sent");
      assert.ok(report.has_attachments && report.attachments.length === 1, `attachments: ${show(report.attachments)}`);

      const inbox = await ok("email.getAll({role: inbox})", client.email.getAll({ account_id: gmailId, role: "inbox" }));
      assertEmailList("email.getAll({role: inbox})", inbox, { accountId: gmailId });
      assert.deepEqual(inbox.items.map((i) => i.subject).sort(), ["compat gmail one", "compat gmail report"]);

      for (const item of [one, report, sent]) {
        const full = await ok("email.getOne (Gmail)", client.email.getOne(item.id));
        assert.equal(full.id, item.id);
        assert.equal(full.kind, "2_full");
        const byPid = await ok("email.getOne.byProviderId (Gmail id)", client.email.getOne.byProviderId(item.provider_id, gmailId));
        assert.equal(byPid.id, item.id, `byProviderId(${item.provider_id})`);
      }
      assert.match(one.body_plain, /Hello from the compat suite/);

      const folders = await ok("email.getAllFolders({account_id: Gmail})", client.email.getAllFolders({ account_id: gmailId }));
      assert.equal(folders.object, "FolderList");
      const roles = folders.items.map((f) => f.role);
      for (const role of ["inbox", "sent", "drafts", "trash", "spam"]) {
        assert.ok(roles.includes(role), `Gmail's labels as folders: no ${role} in ${show(roles)}`);
      }
      for (const f of folders.items) {
        const got = await ok("email.getOneFolder (Gmail)", client.email.getOneFolder(f.id));
        assert.deepEqual(got, f, "getOneFolder(id) answers the listed folder");
      }
      const inboxFolder = await ok("email.getOneFolder.byProviderId (INBOX)", client.email.getOneFolder.byProviderId("INBOX", gmailId));
      assert.equal(inboxFolder.role, "inbox");
      assert.equal(inboxFolder.nb_mails, 2);

      const blob = await ok(
        "email.getEmailAttachment (Gmail)",
        client.email.getEmailAttachment({ email_id: report.id, attachment_id: report.attachments[0].id }),
      );
      assert.ok(blob instanceof Blob, `the SDK must get a Blob; got ${show(blob)}`);
      const bytes = Buffer.from(await blob.arrayBuffer());
      assert.ok(bytes.equals(GMAIL_PDF), `got ${show(bytes)}`);
    });

    // The fake Microsoft's mailbox (mailroom-fakes --seed-mail): "compat outlook one" (Inbox,
    // unread), "compat outlook report" (Inbox, a PDF attached), "compat outlook sent" (Sent
    // Items). The same read calls as step 20, the same answers' shapes.
    it("21. an Outlook account: email.getAll / getOne / byProviderId / getAllFolders / getOneFolder / getEmailAttachment read its synced mail", { timeout: 3 * STEP_TIMEOUT_MS }, async () => {
      const linked = await ok(
        "POST /accounts (OUTLOOK with the fake's grant)",
        client.request.send({
          path: ["accounts"],
          method: "POST",
          body: {
            provider: "OUTLOOK",
            access_token: process.env.MAILROOM_COMPAT_MICROSOFT_ACCESS_TOKEN,
            refresh_token: process.env.MAILROOM_COMPAT_MICROSOFT_REFRESH_TOKEN,
          },
          headers: { "Content-Type": "application/json" },
          validator: untypedYetValidator,
        }),
      );
      assert.equal(linked.object, "AccountCreated", `response: ${show(linked)}`);
      const outlookId = linked.account_id;
      leftovers.add(outlookId);
      const account = await ok("account.getOne (Outlook)", client.account.getOne(outlookId));
      assert.equal(account.type, "OUTLOOK");

      let list;
      const deadline = Date.now() + 2 * STEP_TIMEOUT_MS;
      for (;;) {
        list = await ok("email.getAll({account_id: Outlook})", client.email.getAll({ account_id: outlookId }));
        if (list.items.length >= 3 || Date.now() > deadline) break;
        await sleep(250);
      }
      assertEmailList("email.getAll({account_id: Outlook})", list, { accountId: outlookId });
      const bySubject = Object.fromEntries(list.items.map((i) => [i.subject, i]));
      const subjects = ["compat outlook one", "compat outlook report", "compat outlook sent"];
      for (const subject of subjects) {
        assert.ok(bySubject[subject], `${subject} is not listed: ${show(list.items.map((i) => i.subject))}`);
      }
      const [one, report, sent] = subjects.map((s) => bySubject[s]);
      assert.equal(one.role, "inbox");
      assert.equal(one.read_date, null, "unread in Outlook: not read");
      assert.notEqual(report.read_date, null, "read in Outlook");
      assert.equal(sent.role, "sent");
      assert.ok(report.has_attachments && report.attachments.length === 1, `attachments: ${show(report.attachments)}`);

      const inbox = await ok("email.getAll({role: inbox}) (Outlook)", client.email.getAll({ account_id: outlookId, role: "inbox" }));
      assertEmailList("email.getAll({role: inbox}) (Outlook)", inbox, { accountId: outlookId });
      assert.deepEqual(inbox.items.map((i) => i.subject).sort(), ["compat outlook one", "compat outlook report"]);

      for (const item of [one, report, sent]) {
        const full = await ok("email.getOne (Outlook)", client.email.getOne(item.id));
        assert.equal(full.id, item.id);
        assert.equal(full.kind, "2_full");
        const byPid = await ok("email.getOne.byProviderId (Graph id)", client.email.getOne.byProviderId(item.provider_id, outlookId));
        assert.equal(byPid.id, item.id, `byProviderId(${item.provider_id})`);
      }
      assert.match(one.body_plain, /Hello from the compat suite/);

      const folders = await ok("email.getAllFolders({account_id: Outlook})", client.email.getAllFolders({ account_id: outlookId }));
      assert.equal(folders.object, "FolderList");
      const roles = folders.items.map((f) => f.role);
      for (const role of ["inbox", "sent", "drafts", "trash", "spam"]) {
        assert.ok(roles.includes(role), `Outlook's well-known folders: no ${role} in ${show(roles)}`);
      }
      for (const f of folders.items) {
        const got = await ok("email.getOneFolder (Outlook)", client.email.getOneFolder(f.id));
        assert.deepEqual(got, f, "getOneFolder(id) answers the listed folder");
      }
      const inboxFolder = folders.items.find((f) => f.role === "inbox");
      const byPid = await ok(
        "email.getOneFolder.byProviderId (Outlook Inbox id)",
        client.email.getOneFolder.byProviderId(inboxFolder.provider_id, outlookId),
      );
      assert.equal(byPid.role, "inbox");
      assert.equal(byPid.nb_mails, 2);

      const blob = await ok(
        "email.getEmailAttachment (Outlook)",
        client.email.getEmailAttachment({ email_id: report.id, attachment_id: report.attachments[0].id }),
      );
      assert.ok(blob instanceof Blob, `the SDK must get a Blob; got ${show(blob)}`);
      const bytes = Buffer.from(await blob.arrayBuffer());
      assert.ok(bytes.equals(GMAIL_PDF), `the PDF's exact bytes; got ${show(bytes)}`);
    });
  });
}
