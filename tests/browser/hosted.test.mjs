// Browser suite: clicks through mailroom's hosted auth pages in Debian's headless Chromium
// (driven by playwright-core; no browser is downloaded), with JavaScript turned off, since the
// pages must work without it.
//
// Against a live mailroom started with the standalone fakes' MAILROOM_* exports
// (`mailroom-fakes --mailroom-url URL`, whose fake Google shows an Allow / Deny consent page):
//   1. Google: a link made through the API, the page checked (title, the three choices,
//      accessible names), "Google", the fake's consent page, "Allow", the success redirect
//      (a small HTTP server in this file, which also takes the notify_url POST), the account
//      through the API; then the used link refuses a second use.
//   2. IMAP: a fresh Dovecot user, "Other email provider (IMAP)", the address step, the
//      settings form filled with the test rig's STARTTLS ports, "Connect", the success
//      redirect and a MAIL account.
// Screenshots: test-artifacts/browser/ (hosted-choose.png, hosted-google-consent.png,
// hosted-done.png, hosted-imap-email.png, hosted-imap.png, hosted-imap-done.png; on a failure
// failure-<step>.png and .html).
//
// Environment (docs/testing.md): MAILROOM_BROWSER_URL, MAILROOM_BROWSER_API_KEY,
// MAILROOM_TEST_MAIL_HOST, MAILROOM_TEST_IMAP_PORT, MAILROOM_TEST_SMTP_PORT,
// MAILROOM_TEST_MAIL_USERS; optional MAILROOM_BROWSER_CHROMIUM (default /usr/bin/chromium)
// and MAILROOM_BROWSER_ARTIFACTS (default <repo>/test-artifacts/browser).

import { describe, it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { inspect } from "node:util";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------------------
// Environment: fail loudly (never skip) when something is missing.
// ---------------------------------------------------------------------------

const REQUIRED_ENV = [
  "MAILROOM_BROWSER_URL",
  "MAILROOM_BROWSER_API_KEY",
  "MAILROOM_TEST_MAIL_HOST",
  "MAILROOM_TEST_IMAP_PORT",
  "MAILROOM_TEST_SMTP_PORT",
  "MAILROOM_TEST_MAIL_USERS",
];
const CHROMIUM = process.env.MAILROOM_BROWSER_CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = process.env.MAILROOM_BROWSER_ARTIFACTS || path.resolve(HERE, "../../test-artifacts/browser");

function environmentProblems() {
  const problems = [];
  const missing = REQUIRED_ENV.filter((name) => !process.env[name]);
  if (missing.length > 0) problems.push(`missing required environment variable(s): ${missing.join(", ")}`);
  const url = process.env.MAILROOM_BROWSER_URL;
  if (url && !/^https?:\/\/[^/]/.test(url)) problems.push(`MAILROOM_BROWSER_URL must look like http://host:port, got ${JSON.stringify(url)}`);
  for (const name of ["MAILROOM_TEST_IMAP_PORT", "MAILROOM_TEST_SMTP_PORT"]) {
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
  try {
    fs.accessSync(CHROMIUM, fs.constants.X_OK);
  } catch {
    problems.push(`no Chromium at ${CHROMIUM} (Debian package chromium; or set MAILROOM_BROWSER_CHROMIUM)`);
  }
  return problems;
}

const ENV_PROBLEMS = environmentProblems();

const BASE_URL = (process.env.MAILROOM_BROWSER_URL ?? "").replace(/\/+$/, "");
const API_KEY = process.env.MAILROOM_BROWSER_API_KEY;
const MAIL_HOST = process.env.MAILROOM_TEST_MAIL_HOST;
const IMAP_PORT = Number(process.env.MAILROOM_TEST_IMAP_PORT);
const SMTP_PORT = Number(process.env.MAILROOM_TEST_SMTP_PORT);
const MAIL_USERS_FILE = process.env.MAILROOM_TEST_MAIL_USERS;

// Per the machine notes: without the background-networking flags Chromium keeps trying to
// reach Google's hosts, which this closed network refuses.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const STEP_TIMEOUT_MS = 120_000;
const ACTION_TIMEOUT_MS = 15_000;
// IMAP login + SMTP login against the rig, with the server's own timeouts behind it.
const LINK_TIMEOUT_MS = 60_000;

const show = (v) => inspect(v, { depth: 6, breakLength: 120 });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// mailroom's API (plain fetch with X-API-KEY)
// ---------------------------------------------------------------------------

async function api(method, apiPath, body) {
  let res;
  try {
    res = await fetch(`${BASE_URL}${apiPath}`, {
      method,
      headers: {
        "X-API-KEY": API_KEY,
        accept: "application/json",
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    assert.fail(`${method} ${apiPath}: cannot reach mailroom at ${BASE_URL}: ${err.cause?.code ?? ""} ${err.cause?.message ?? err.message}`);
  }
  const text = await res.text();
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // keep the text for the assertion message
  }
  return { status: res.status, body: parsed };
}

/** POST /api/v1/hosted/accounts/link; returns the page URL. */
async function createLink(receiver, flow) {
  const { status, body } = await api("POST", "/api/v1/hosted/accounts/link", {
    type: "create",
    providers: ["GOOGLE", "OUTLOOK", "MAIL"],
    expiresOn: new Date(Date.now() + 3600_000).toISOString(),
    api_url: BASE_URL,
    name: `browser-${flow}`,
    success_redirect_url: `${receiver.url}/success?flow=${flow}`,
    failure_redirect_url: `${receiver.url}/failure?flow=${flow}`,
    notify_url: `${receiver.url}/notify?flow=${flow}`,
  });
  assert.equal(status, 201, `POST /api/v1/hosted/accounts/link answered ${status}: ${show(body)}`);
  assert.equal(body?.object, "HostedAuthUrl", `link: ${show(body)}`);
  assert.ok(typeof body.url === "string" && body.url.startsWith(`${BASE_URL}/`), `the link must be under ${BASE_URL}/: ${show(body)}`);
  return body.url;
}

async function getAccount(id) {
  const { status, body } = await api("GET", `/api/v1/accounts/${encodeURIComponent(id)}`);
  assert.equal(status, 200, `GET /api/v1/accounts/${id} answered ${status}: ${show(body)}`);
  return body;
}

/** Add a fresh Dovecot user (passwd-file line) and return its credentials. */
function createMailUser() {
  const address = `browser-${randomBytes(6).toString("hex")}@example.test`;
  const password = randomBytes(12).toString("hex");
  let prefix = "";
  const size = fs.statSync(MAIL_USERS_FILE).size;
  if (size > 0) {
    const fd = fs.openSync(MAIL_USERS_FILE, "r");
    const last = Buffer.alloc(1);
    fs.readSync(fd, last, 0, 1, size - 1);
    fs.closeSync(fd);
    if (last[0] !== 0x0a) prefix = "\n";
  }
  fs.appendFileSync(MAIL_USERS_FILE, `${prefix}${address}:{PLAIN}${password}\n`);
  return { address, password };
}

// ---------------------------------------------------------------------------
// The integrator's side: success / failure redirects and notify_url POSTs
// ---------------------------------------------------------------------------

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function startReceiver() {
  const events = [];
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://receiver");
    let body = "";
    for await (const chunk of req) body += chunk;
    const kind = url.pathname.slice(1);
    const event = { kind, method: req.method, query: Object.fromEntries(url.searchParams), body, at: Date.now() };
    if (kind === "notify") {
      try {
        event.json = JSON.parse(body);
      } catch {
        event.json = undefined;
      }
      events.push(event);
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
      return;
    }
    if (kind === "success" || kind === "failure") {
      events.push(event);
      const title = kind === "success" ? "Example app: mailbox connected" : "Example app: mailbox not connected";
      const rows = [...url.searchParams]
        .map(([k, v]) => `<tr><th scope="row">${escapeHtml(k)}</th><td><code>${escapeHtml(v)}</code></td></tr>`)
        .join("");
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(
        `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title>` +
          `<style>body{font:16px/1.5 system-ui,sans-serif;margin:3rem}th{text-align:left;padding-right:1rem}</style></head>` +
          `<body><main><h1>${title}</h1><p>mailroom redirected here with:</p><table>${rows}</table></main></body></html>`,
      );
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found");
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    events,
    close: () => new Promise((resolve) => server.close(() => resolve())),
    /** The first event matching `pred`, waiting up to `ms`. */
    async waitFor(label, pred, ms = 15_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const e = events.find(pred);
        if (e) return e;
        if (Date.now() >= deadline) assert.fail(`${label}: nothing within ${ms} ms; the receiver got ${show(events)}`);
        await sleep(100);
      }
    },
  };
}

// ---------------------------------------------------------------------------
// Browser helpers
// ---------------------------------------------------------------------------

async function screenshot(page, name) {
  const file = path.join(ARTIFACTS, name);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** Run a step; on failure keep a screenshot and the HTML of where the browser was. */
async function step(page, name, fn) {
  try {
    return await fn();
  } catch (err) {
    try {
      await screenshot(page, `failure-${name}.png`);
      fs.writeFileSync(path.join(ARTIFACTS, `failure-${name}.html`), await page.content());
      err.message += `\n(browser at ${page.url()}; see ${path.join(ARTIFACTS, `failure-${name}.png`)})`;
    } catch {
      // the original error matters more
    }
    throw err;
  }
}

/**
 * What a person with a screen reader needs: a language, a title, one h1, a name for every
 * control (from the accessibility tree Chromium builds), a <label> for every input.
 */
async function checkAccessible(page, label) {
  const lang = await page.locator("html").getAttribute("lang");
  assert.ok(lang && lang.length >= 2, `${label}: <html lang> is missing`);
  assert.ok((await page.title()).trim().length > 0, `${label}: empty <title>`);
  assert.equal(await page.getByRole("heading", { level: 1 }).count(), 1, `${label}: exactly one h1`);
  const tree = await page.locator("body").ariaSnapshot();
  const unnamed = tree
    .split("\n")
    .filter((line) => /^\s*- (button|link|textbox|spinbutton|combobox|checkbox|radio|searchbox)\b/.test(line))
    .filter((line) => !/^\s*- \w+ "[^"]*\S[^"]*"/.test(line));
  assert.deepEqual(unnamed, [], `${label}: controls without an accessible name in\n${tree}`);
  const inputs = page.locator("input:not([type=hidden]), select, textarea");
  for (let i = 0; i < (await inputs.count()); i++) {
    const input = inputs.nth(i);
    const id = await input.getAttribute("id");
    assert.ok(id, `${label}: an input without an id cannot have a <label for>`);
    const labels = page.locator(`label[for="${id}"]`);
    assert.equal(await labels.count(), 1, `${label}: input #${id} needs exactly one <label for="${id}">`);
    const text = (await labels.first().textContent()).trim();
    assert.ok(text.length > 0, `${label}: the label of #${id} is empty`);
  }
  // No scripts at all: the pages work without JavaScript (this browser has it turned off).
  assert.equal(await page.locator("script").count(), 0, `${label}: the hosted pages must not need scripts`);
  return tree;
}

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

if (ENV_PROBLEMS.length > 0) {
  const message =
    `browser suite cannot run:\n  - ${ENV_PROBLEMS.join("\n  - ")}\n` +
    "scripts/test provides these (docs/testing.md); to run by hand see tests/browser/README.md.";
  console.error(message);
  test("environment for the browser suite", () => assert.fail(message));
} else {
  defineSuite();
}

function defineSuite() {
  describe(`hosted auth pages of ${BASE_URL} in headless Chromium`, { timeout: 4 * STEP_TIMEOUT_MS }, () => {
    let receiver;
    let context;
    let userDataDir;
    const accounts = [];

    before(async () => {
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      for (const f of fs.readdirSync(ARTIFACTS)) {
        if (f.startsWith("failure-")) fs.rmSync(path.join(ARTIFACTS, f), { force: true });
      }
      receiver = await startReceiver();
      userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "mailroom-chromium-"));
      context = await chromium.launchPersistentContext(userDataDir, {
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_ARGS,
        javaScriptEnabled: false,
        viewport: { width: 800, height: 720 },
        locale: "en-US",
        colorScheme: "light",
        timeout: 60_000,
      });
      context.setDefaultTimeout(ACTION_TIMEOUT_MS);
      context.setDefaultNavigationTimeout(LINK_TIMEOUT_MS);
    });

    after(async () => {
      for (const id of accounts) {
        await api("DELETE", `/api/v1/accounts/${encodeURIComponent(id)}`).catch(() => {});
      }
      await context?.close().catch(() => {});
      await receiver?.close();
      if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
    });

    it("1. Google: choose page, Google, the fake's consent page, Allow, success redirect, GOOGLE_OAUTH account", { timeout: STEP_TIMEOUT_MS }, async () => {
      const link = await createLink(receiver, "google");
      const page = await context.newPage();

      await step(page, "google-choose", async () => {
        const res = await page.goto(link);
        assert.equal(res.status(), 200, `GET ${link}`);
        assert.match(res.headers()["content-type"] ?? "", /^text\/html/);
        assert.equal(await page.title(), "Connect your mailbox");
        await page.getByRole("heading", { level: 1, name: "Connect your mailbox" }).waitFor();
        await page.getByText("For browser-google").waitFor();
        const tree = await checkAccessible(page, "choose page");
        // The three choices, by role and accessible name, and nothing else to click.
        const google = page.getByRole("button", { name: /^Google\b/ });
        const microsoft = page.getByRole("button", { name: /^Microsoft\b/ });
        const imap = page.getByRole("link", { name: /\bIMAP\b/ });
        for (const [what, loc] of [["Google", google], ["Microsoft", microsoft], ["IMAP", imap]]) {
          assert.equal(await loc.count(), 1, `one ${what} choice expected in\n${tree}`);
          assert.ok(await loc.isVisible(), `the ${what} choice must be visible`);
        }
        assert.equal(await page.getByRole("button").count(), 2, `two buttons (Google, Microsoft) in\n${tree}`);
        assert.equal(await page.getByRole("link").count(), 1, `one link (IMAP) in\n${tree}`);
        assert.equal(await page.getByRole("list").getByRole("listitem").count(), 3, `three choices in\n${tree}`);
        await screenshot(page, "hosted-choose.png");
      });

      await step(page, "google-consent", async () => {
        await page.getByRole("button", { name: /^Google\b/ }).click();
        await page.waitForURL((u) => u.pathname === "/o/oauth2/v2/auth");
        // What mailroom asked Google for (the fake checks it too).
        const q = new URL(page.url()).searchParams;
        assert.equal(q.get("response_type"), "code");
        assert.equal(q.get("redirect_uri"), `${BASE_URL}/oauth/google/callback`);
        assert.equal(q.get("code_challenge_method"), "S256");
        assert.equal(q.get("access_type"), "offline");
        assert.ok((q.get("state") ?? "").length >= 16, `state: ${q.get("state")}`);
        assert.match(q.get("scope") ?? "", /https:\/\/www\.googleapis\.com\/auth\/gmail\./);
        await page.getByRole("heading", { level: 1, name: /Google Account/ }).waitFor();
        await page.getByRole("button", { name: "Cancel" }).waitFor();
        await screenshot(page, "hosted-google-consent.png");
        await page.getByRole("button", { name: "Allow" }).click();
        await page.waitForURL((u) => u.href.startsWith(`${receiver.url}/`));
      });

      const done = await step(page, "google-done", async () => {
        const url = new URL(page.url());
        assert.equal(url.pathname, "/success", `mailroom must redirect to success_redirect_url, got ${url.href}`);
        await page.getByRole("heading", { name: /mailbox connected/ }).waitFor();
        await screenshot(page, "hosted-done.png");
        assert.equal(url.searchParams.get("flow"), "google", "the success URL's own query is kept");
        assert.equal(url.searchParams.get("status"), "CREATION_SUCCESS", `status in ${url.href}`);
        const accountId = url.searchParams.get("account_id");
        assert.ok(accountId, `account_id in ${url.href}`);
        accounts.push(accountId);
        return { accountId };
      });

      const account = await getAccount(done.accountId);
      assert.equal(account.object, "Account", show(account));
      assert.equal(account.id, done.accountId);
      assert.equal(account.type, "GOOGLE_OAUTH", `account: ${show(account)}`);
      assert.match(account.name ?? "", /@/, `the account is named after the Gmail address: ${show(account)}`);

      const notified = await receiver.waitFor(
        "notify_url POST (google)",
        (e) => e.kind === "notify" && e.query.flow === "google",
      );
      assert.equal(notified.method, "POST");
      assert.deepEqual(
        { status: notified.json?.status, account_id: notified.json?.account_id, name: notified.json?.name },
        { status: "CREATION_SUCCESS", account_id: done.accountId, name: "browser-google" },
        `notify body: ${notified.body}`,
      );
      assert.ok(!receiver.events.some((e) => e.kind === "failure"), `no failure redirect: ${show(receiver.events)}`);

      await step(page, "google-replay", async () => {
        // Single use: the same link now refuses.
        const again = await page.goto(link);
        assert.equal(again.status(), 410, `a used link must answer 410, got ${again.status()}`);
        await page.getByRole("heading", { level: 1, name: "Link already used" }).waitFor();
      });
      await page.close();
    });

    it("2. IMAP: the address step, the settings form (rig STARTTLS ports), Connect, success redirect, MAIL account", { timeout: STEP_TIMEOUT_MS }, async () => {
      const user = createMailUser();
      const link = await createLink(receiver, "imap");
      const page = await context.newPage();

      await step(page, "imap-email", async () => {
        const res = await page.goto(link);
        assert.equal(res.status(), 200, `GET ${link}`);
        await page.getByRole("link", { name: /\bIMAP\b/ }).click();
        await page.waitForURL((u) => u.pathname.endsWith("/imap"));
        assert.equal(await page.title(), "Connect by IMAP");
        await page.getByRole("heading", { level: 1, name: "Connect by IMAP" }).waitFor();
        await checkAccessible(page, "IMAP address step");
        const email = page.getByLabel("Email address");
        assert.equal(await email.getAttribute("type"), "email");
        await email.fill(user.address);
        await screenshot(page, "hosted-imap-email.png");
        await page.getByRole("button", { name: "Continue" }).click();
        await page.waitForURL((u) => u.pathname.endsWith("/imap") && u.searchParams.get("email") === user.address);
      });

      await step(page, "imap-form", async () => {
        await page.getByRole("heading", { level: 1, name: "Connect by IMAP" }).waitFor();
        const tree = await checkAccessible(page, "IMAP settings form");
        assert.equal(await page.getByLabel("Email address").inputValue(), user.address);
        assert.equal(await page.getByLabel("Username").inputValue(), user.address, "the username defaults to the address");
        const password = page.getByLabel("Password");
        assert.equal(await password.getAttribute("type"), "password");
        const incoming = page.getByRole("group", { name: /Incoming mail/ });
        const outgoing = page.getByRole("group", { name: /Outgoing mail/ });
        assert.equal(await incoming.count(), 1, `a fieldset "Incoming mail" in\n${tree}`);
        assert.equal(await outgoing.count(), 1, `a fieldset "Outgoing mail" in\n${tree}`);
        await password.fill(user.password);
        await incoming.getByLabel("Server").fill(MAIL_HOST);
        // The form sends imap_encryption "default": 993 means implicit TLS, any other port
        // STARTTLS; SMTP 465 is implicit TLS, others STARTTLS. The rig's STARTTLS ports.
        await incoming.getByLabel("Port").fill(String(IMAP_PORT));
        await outgoing.getByLabel("Server").fill(MAIL_HOST);
        await outgoing.getByLabel("Port").fill(String(SMTP_PORT));
        await screenshot(page, "hosted-imap.png");
        await page.getByRole("button", { name: "Connect" }).click();
        try {
          await page.waitForURL((u) => u.href.startsWith(`${receiver.url}/`), { timeout: LINK_TIMEOUT_MS });
        } catch (err) {
          const alert = await page.getByRole("alert").allTextContents().catch(() => []);
          err.message += `\nthe form says: ${show(alert)}`;
          throw err;
        }
      });

      const done = await step(page, "imap-done", async () => {
        const url = new URL(page.url());
        assert.equal(url.pathname, "/success", `mailroom must redirect to success_redirect_url, got ${url.href}`);
        await page.getByRole("heading", { name: /mailbox connected/ }).waitFor();
        await screenshot(page, "hosted-imap-done.png");
        assert.equal(url.searchParams.get("flow"), "imap");
        assert.equal(url.searchParams.get("status"), "CREATION_SUCCESS", `status in ${url.href}`);
        const accountId = url.searchParams.get("account_id");
        assert.ok(accountId, `account_id in ${url.href}`);
        accounts.push(accountId);
        return { accountId };
      });

      const account = await getAccount(done.accountId);
      assert.equal(account.type, "MAIL", `account: ${show(account)}`);
      const mail = account.connection_params?.mail;
      assert.ok(mail, `connection_params.mail: ${show(account)}`);
      assert.equal(mail.imap_host, MAIL_HOST);
      assert.equal(mail.imap_port, IMAP_PORT);
      assert.equal(mail.imap_user, user.address);
      assert.equal(mail.smtp_port, SMTP_PORT);
      assert.ok(!JSON.stringify(account).includes(user.password), "the account must not echo the password");

      const notified = await receiver.waitFor("notify_url POST (imap)", (e) => e.kind === "notify" && e.query.flow === "imap");
      assert.equal(notified.json?.status, "CREATION_SUCCESS", `notify body: ${notified.body}`);
      assert.equal(notified.json?.account_id, done.accountId, `notify body: ${notified.body}`);
      await page.close();
    });
  });
}
