// SDK compatibility suite: drives a live mailroom server with the official
// unipile-node-sdk (pinned in package.json) with response validation at level
// "error", so any response that does not match the SDK's own schemas fails.
//
// Environment (see docs/testing.md): MAILROOM_COMPAT_URL, MAILROOM_COMPAT_API_KEY,
// MAILROOM_TEST_MAIL_HOST, MAILROOM_TEST_IMAP_PORT, MAILROOM_TEST_IMAPS_PORT,
// MAILROOM_TEST_SMTP_PORT, MAILROOM_TEST_MAIL_USERS.

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
    const state = { user: null, accountId: null, user2: null, accountId2: null };
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
  });
}
