// The web interface end to end in Debian's headless Chromium, driven by
// playwright-core (no browser download). Started by tests/e2e_browser.rs,
// which runs the reference server, the mail sink and the SMTP client, and
// answers this script's questions on stdin:
//
//   ASK publish-dns <domain>     → publishes the domain's records; "ok"
//   ASK mailbox-code <address>   → the code of the verification mail
//   ASK send <alias> <subject…>  → sends a mail over SMTP; "delivered"
//
// Every step prints "STEP <name>"; the last line is "RESULT ok", or the
// script exits non-zero with the reason. The browser console is watched
// the whole time: any Content-Security-Policy violation or script error
// fails the run.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import readline from "node:readline";

const env = (name) => {
  const v = process.env[name];
  if (!v) { throw new Error(`${name} is not set`); }
  return v;
};
const BASE = env("SMTPY_BASE_URL");
const EMAIL = env("SMTPY_OWNER_EMAIL");
const PASSWORD = env("SMTPY_OWNER_PASSWORD");
const DOMAIN = env("SMTPY_DOMAIN");
const MAILBOX = env("SMTPY_MAILBOX");
const SHOTS = env("SMTPY_SCREENSHOT_DIR");
const CHROMIUM = process.env.SMTPY_CHROMIUM || "/usr/bin/chromium";
const ALIAS = `shop@${DOMAIN}`;
const CONTACT = "friend@outside.example";

const answers = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(...words) {
  console.log(`ASK ${words.join(" ")}`);
  const { value, done } = await answers.next();
  if (done) { throw new Error(`no answer to ${words[0]}`); }
  if (value.startsWith("ERROR")) { throw new Error(`${words[0]}: ${value}`); }
  return value.trim();
}
const step = (name) => console.log(`STEP ${name}`);
function check(ok, what) { if (!ok) { throw new Error(`check failed: ${what}`); } }

mkdirSync(SHOTS, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), "smtpy-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1280, height: 860 },
  timeout: 60000,
});
context.setDefaultTimeout(15000);

// Everything the console says that points at a policy violation or a
// script error. The page also reports violations itself
// (securitypolicyviolation events), logged to the console by an init
// script, which the page's CSP does not govern.
const violations = [];
const errors = [];
let expectHttpErrors = false;
await context.addInitScript(() => {
  document.addEventListener("securitypolicyviolation", (e) => {
    console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
  });
});
const watch = (page) => {
  page.on("console", (m) => {
    const text = m.text();
    if (/Content[- ]Security[- ]Policy|CSP violation/i.test(text)) { violations.push(text); return; }
    if (m.type() === "error" && !(expectHttpErrors && /status of 4\d\d/.test(text))) { errors.push(text); }
  });
  page.on("pageerror", (e) => errors.push(`script error: ${e.message}`));
  page.on("response", (r) => { if (r.status() >= 400) { console.log(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`); } });
};
context.on("page", watch);
const page = context.pages()[0] || await context.newPage();
watch(page);

const shot = async (name, p = page) => {
  await p.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
};
const go = async (path) => {
  const resp = await page.goto(BASE + path);
  check(resp && resp.status() === 200, `GET ${path} answered ${resp && resp.status()}`);
  return resp;
};
const flash = async () => (await page.locator("#status").innerText()).trim();

// What every page must have for people using a screen reader or a
// keyboard: a name for each control, one <h1> and no skipped heading
// levels, a language.
const accessible = async (where) => {
  const problems = await page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea, button")) {
      const named = (el.labels && el.labels.length > 0) || el.getAttribute("aria-label")
        || el.getAttribute("aria-labelledby") || (el.tagName === "BUTTON" && el.textContent.trim());
      if (!named) { out.push(`unnamed ${el.tagName.toLowerCase()} ${el.name || el.id || ""}`); }
    }
    const levels = [...document.querySelectorAll("h1, h2, h3, h4")].map((h) => Number(h.tagName[1]));
    if (levels.filter((l) => l === 1).length !== 1) { out.push(`${levels.filter((l) => l === 1).length} h1 elements`); }
    levels.forEach((l, i) => { if (i > 0 && l > levels[i - 1] + 1) { out.push(`heading h${l} after h${levels[i - 1]}`); } });
    if (!document.documentElement.lang) { out.push("no lang"); }
    return out;
  });
  check(problems.length === 0, `${where}: ${problems.join("; ")}`);
};

try {
  step("the violation detector sees an inline style");
  await go("/login");
  await page.evaluate(() => {
    const s = document.createElement("style");
    s.textContent = "body { color: red; }";
    document.head.appendChild(s);
  });
  await page.waitForTimeout(300);
  check(violations.length > 0, "an injected inline style must be reported as a CSP violation");
  violations.length = 0;

  step("sign in");
  await go("/login");
  await accessible("/login");
  await shot("login");
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL("**/app/aliases");
  check((await flash()).includes("Signed in"), "signed-in message");

  step("keyboard: the first Tab reaches the skip link, which leads to the content");
  await go("/app/domains");
  await page.keyboard.press("Tab");
  check(await page.evaluate(() => document.activeElement.className) === "skip", "the first Tab reaches the skip link");
  await page.keyboard.press("Enter");
  check(page.url().endsWith("#main"), "the skip link jumps to the content");

  step("add a domain and verify it");
  await go("/app/domains");
  await page.getByLabel("Domain name").fill(DOMAIN);
  await page.getByRole("button", { name: "Add domain" }).click();
  await page.waitForURL(/\/app\/domains\/[0-9a-f-]+$/);
  check(await page.getByText(DOMAIN).first().isVisible(), "the new domain's page");
  check(await page.locator("[data-copy]").count() > 0, "DNS records with copy buttons");
  await ask("publish-dns", DOMAIN);
  await page.getByRole("button", { name: "Check now" }).click();
  await page.waitForLoadState();
  check(/verified/i.test(await page.locator("main").innerText()), "the domain shows as verified");
  await shot("domain");

  step("add a mailbox and confirm it");
  await go("/app/mailboxes");
  await page.locator("#address").fill(MAILBOX);
  await page.getByRole("button", { name: "Add mailbox" }).click();
  await page.waitForLoadState();
  check(/waiting/i.test(await page.locator("main").innerText()), "the new mailbox waits for its confirmation");
  const code = await ask("mailbox-code", MAILBOX);
  await go("/app/mailboxes/verify");
  await page.getByLabel("Verification code").fill(code);
  await page.getByRole("button", { name: "Verify mailbox" }).click();
  await page.waitForLoadState();
  await go("/app/mailboxes");
  const boxRow = await page.locator("tr", { hasText: MAILBOX }).innerText();
  check(/verified/i.test(boxRow) && !/waiting/i.test(boxRow), `the mailbox shows as verified (${boxRow})`);
  await shot("mailboxes");

  step("create an alias");
  await go("/app/aliases");
  await page.locator("#new-address").fill(ALIAS);
  await page.getByRole("button", { name: "Create alias" }).click();
  await page.waitForLoadState();
  check((await page.locator("main").innerText()).includes(ALIAS), "the new alias is shown");

  step("toggle it in place and back");
  await go("/app/aliases");
  const row = page.locator("tr", { hasText: ALIAS });
  const toggle = row.locator("form[data-inline] button");
  await toggle.click();
  await page.waitForFunction(() => document.querySelector("form[data-inline] button")?.getAttribute("aria-pressed") === "false");
  await page.reload();
  check((await row.innerText()).match(/disabled/i), "disabled after the toggle, also after a reload");
  await row.locator("form[data-inline] button").click();
  await page.waitForFunction(() => document.querySelector("form[data-inline] button")?.getAttribute("aria-pressed") === "true");
  await page.reload();
  check(!(await row.innerText()).match(/\bdisabled\b/i), "enabled again");
  await shot("aliases");

  step("create a contact (write from the alias)");
  await row.getByRole("link").first().click();
  await page.waitForURL(/\/app\/aliases\/[0-9a-f-]+$/);
  const aliasPage = page.url();
  await page.getByLabel("Their address").fill(CONTACT);
  await page.getByRole("button", { name: "Get the address to write to" }).click();
  await page.waitForLoadState();
  const text = await page.locator("main").innerText();
  check(text.includes(CONTACT), "the contact is listed");
  check(/r--/.test(text), "a reverse address to write to is shown");

  step("mail to the alias over SMTP shows up as an event on the alias page");
  const delivered = await ask("send", ALIAS, "Hello from the browser test");
  check(delivered === "delivered", `the mail was delivered (${delivered})`);
  await page.goto(aliasPage);
  const events = await page.locator("section", { has: page.locator("#events") }).innerText();
  check(/Delivered to your mailbox/.test(events), `a delivery event on the alias page (${events})`);
  check(await page.locator("svg.chart").count() === 1, "the usage chart");
  await shot("alias");

  step("a form posted without its CSRF token is refused");
  await go("/app/aliases");
  expectHttpErrors = true;
  await page.locator("#new-address").fill(`forged@${DOMAIN}`);
  await page.evaluate(() => {
    const form = document.querySelector('form[action="/app/aliases"][method="post"]');
    form.querySelector('input[name="_csrf"]').remove();
  });
  const [refused] = await Promise.all([
    page.waitForNavigation(),
    page.getByRole("button", { name: "Create alias" }).click(),
  ]);
  check(refused.status() === 403, `refused with 403, got ${refused.status()}`);
  check(/Form refused/.test(await page.locator("main").innerText()), "the refusal says why");
  expectHttpErrors = false;

  step("every page renders, with named controls and ordered headings");
  for (const [path, name] of [
    ["/app/aliases", null], ["/app/domains", null], ["/app/mailboxes", null],
    ["/app/rules", "rules"], ["/app/api-keys", "api-keys"], ["/app/account", "account"],
    ["/admin/users", "admin-users"], ["/admin/health", "admin-health"], ["/admin/queue", "admin-queue"],
    ["/admin/audit", null], ["/admin/features", null], ["/admin/config", null],
  ]) {
    await go(path);
    await accessible(path);
    if (name) { await shot(name); }
  }
  await page.goto(aliasPage);
  await accessible("the alias page");

  step("second factor: the set-up page shows a QR code (nothing stored until confirmed)");
  await go("/app/account");
  await page.getByRole("button", { name: "Set up a second factor" }).click();
  await page.waitForLoadState();
  check(await page.locator("svg.qr path").count() === 1, "a QR code");
  await accessible("the second-factor set-up page");
  await shot("totp");
  await page.getByRole("link", { name: "Cancel" }).click();
  await page.waitForURL("**/app/account");

  step("readable on a phone");
  await page.setViewportSize({ width: 390, height: 844 });
  await go("/app/aliases");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `no sideways scrolling on a phone (overflow ${overflow}px)`);
  await shot("aliases-phone");

  step("sign out");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL("**/login");

  step("a confirmation link opened while signed out keeps its token through the sign-in");
  await page.goto(`${BASE}/app/mailboxes/verify#token=from-the-mail`);
  await page.waitForURL(/\/login\?next=/);
  check(!page.url().includes("from-the-mail"), "the token is not left in the address bar");
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL("**/app/mailboxes/verify");
  check(await page.getByLabel("Verification code").inputValue() === "from-the-mail", "the token is in the form");
  check(!page.url().includes("from-the-mail"), "and not in the address bar");

  check(violations.length === 0, `CSP violations: ${violations.join(" | ")}`);
  check(errors.length === 0, `console errors: ${errors.join(" | ")}`);
  console.log("RESULT ok");
} catch (e) {
  console.log(`FAILED ${e && e.stack ? e.stack : e}`);
  try { await shot("failure"); } catch { /* the page may be gone */ }
  console.log(`URL ${page.url()}`);
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(process.exitCode || 0);
}
