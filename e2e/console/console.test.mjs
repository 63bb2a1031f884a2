// End-to-end tests of the Otter web console in Debian's headless chromium, driven by playwright-core.
// run.sh starts `otter serve` and `otter simulate` (a fleet of FLEET aliyun devices named
// e2e-00000…, product E2E-aliyun, running 1.0.0) and passes OTTER_URL and OTTER_TOKEN.
// The steps run in order and build on each other, like an operator's session: signed in with the
// admin token first, and at the end as a named operator (created through the API).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const BASE = process.env.OTTER_URL;
const TOKEN = process.env.OTTER_TOKEN;
const FLEET = Number(process.env.FLEET || 30);
const PRODUCT = "E2E-aliyun";
const OUT = join(dirname(fileURLToPath(import.meta.url)), "output");
const LONG = 120_000;

let context, page, profile;

before(async () => {
  assert.ok(BASE && TOKEN, "OTTER_URL and OTTER_TOKEN must be set (use run.sh)");
  mkdirSync(OUT, { recursive: true });
  profile = mkdtempSync(join(tmpdir(), "otter-chromium-"));
  // A fresh profile (playwright passes it to chromium as --user-data-dir).
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20_000);
  page.on("pageerror", (e) => console.error("page error:", e.message));
  page.on("dialog", (d) => d.accept());
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

const shot = (name) => page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
const text = (selector) => page.locator(selector).first().innerText();
/** Waits until the element's text satisfies `check` (the page updates it by itself). */
async function waitText(selector, check, timeout = LONG) {
  const deadline = Date.now() + timeout;
  let last = "";
  while (Date.now() < deadline) {
    last = await page.locator(selector).first().innerText().catch(() => "");
    if (check(last)) return last;
    await page.waitForTimeout(250);
  }
  assert.fail(`${selector} never matched; last text: ${JSON.stringify(last)}`);
}

/** A firmware image of `size` random bytes and its digests. */
function image(size) {
  const buffer = randomBytes(size);
  return {
    buffer,
    md5: createHash("md5").update(buffer).digest("hex"),
    sha256: createHash("sha256").update(buffer).digest("hex"),
  };
}

async function upload(version, img) {
  await page.goto(`${BASE}/products/${PRODUCT}/firmware`);
  await page.setInputFiles("#upload input[name=file]", { name: `fw-${version}.bin`, mimeType: "application/octet-stream", buffer: img.buffer });
  await page.fill("#upload input[name=version]", version);
  await page.click("#upload button[type=submit]");
  await waitText("#upload .status", (t) => t.startsWith(`Uploaded ${version}`), 30_000);
  assert.equal(await page.locator("#upload-progress").evaluate((p) => p.value), 100, "progress bar full");
  await page.waitForSelector(`#firmware tr[data-version="${version}"]`);
}

test("sign in with the admin token", async () => {
  await page.goto(`${BASE}/`);
  assert.match(page.url(), /\/login/, "signed-out visitors land on the sign-in form");
  await page.fill("#token", "not-the-token");
  await page.click("button[type=submit]");
  assert.equal(await text("[role=alert]"), "That is not the admin token or a live API token.");
  await shot("01-sign-in");
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.waitForURL(/\/products$/);
  assert.equal(await text("h1"), "Products");
  // The fleet registered by `otter simulate`, counted server-side; wait for all to connect.
  const row = `tr[data-product="${PRODUCT}"]`;
  for (let i = 0; i < 60; i++) {
    const cells = await page.locator(`${row} td.num`).allInnerTexts();
    if (cells[0] === String(FLEET) && cells[1] === String(FLEET)) break;
    await page.waitForTimeout(500);
    await page.reload();
  }
  assert.deepEqual((await page.locator(`${row} td.num`).allInnerTexts()).slice(0, 2), [String(FLEET), String(FLEET)], "devices, online");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content", "first Tab reaches the skip link");
  await shot("02-products");
});

test("sign-in never leads to another site, whatever next says (issue 19)", async () => {
  const origin = new URL(BASE).origin;
  // A tab, a newline or a backslash in `next` once made chromium leave for evil.example.
  for (const next of ["/\t/evil.example", "/\n/evil.example", "/%09/evil.example", "/\\evil.example", "//evil.example", "/.//evil.example"]) {
    const tab = await context.newPage();
    // Every request the browser makes, redirects followed; a 404 of ours shows as chrome-error.
    const requested = [];
    tab.on("request", (r) => requested.push(r.url()));
    try {
      await tab.goto(`${BASE}/login?next=${encodeURIComponent(next)}`);
      await tab.fill("#token", TOKEN);
      await Promise.all([
        tab.waitForURL((u) => u.origin !== origin || u.pathname !== "/login", { waitUntil: "load" }).catch(() => {}),
        tab.click("button[type=submit]"),
      ]);
      const elsewhere = requested.filter((u) => u.startsWith("http") && new URL(u).origin !== origin);
      assert.deepEqual(elsewhere, [], `next ${JSON.stringify(next)} led to another site`);
      assert.ok(requested.some((u) => u.startsWith(`${origin}/`) && !u.includes("/login")), `next ${JSON.stringify(next)}: no request after sign-in: ${requested}`);
    } finally {
      await tab.close();
    }
  }
});

test("version distribution and device list with filters", async () => {
  await page.click(`a[href="/products/${PRODUCT}"]`);
  assert.equal(await text("h2"), "Version distribution");
  const bar = page.locator('figure.chart g.bar[data-version="1.0.0"] text.count');
  assert.match(await bar.textContent(), new RegExp(`^${FLEET} \\(100\\.0%\\)`));
  await shot("03-version-distribution");

  await page.goto(`${BASE}/products/${PRODUCT}/devices`);
  assert.equal(await text("#device-count strong"), String(FLEET));
  await page.fill("input[name=q]", "e2e-0001");
  await page.click("form.filters button[type=submit]");
  assert.equal(await text("#device-count strong"), "10", "e2e-00010 … e2e-00019");
  assert.equal(await page.locator("#devices tbody tr").count(), 10);
  await page.selectOption("select[name=online]", "no");
  await page.click("form.filters button[type=submit]");
  assert.equal(await text("#device-count strong"), "0", "every simulated device is online");
  assert.equal(await text("main p.empty"), "No device matches these filters.");
  await page.goto(`${BASE}/products/${PRODUCT}/devices?version=1.0.0&online=yes`);
  assert.equal(await text("#device-count strong"), String(FLEET));
  await shot("04-devices");
});

const v110 = image(300 * 1024);

test("upload a firmware from the browser: progress, digests, errors in place", async () => {
  await upload("1.1.0", v110);
  const row = page.locator('#firmware tr[data-version="1.1.0"]');
  assert.equal(await row.locator("code.sha256").innerText(), v110.sha256);
  assert.equal(await row.locator("code.md5").innerText(), v110.md5);
  assert.equal(await row.locator(".badge").innerText(), "uploaded");
  // The same version again: the API's 409 message is shown next to the form.
  await page.setInputFiles("#upload input[name=file]", { name: "again.bin", mimeType: "application/octet-stream", buffer: v110.buffer });
  await page.fill("#upload input[name=version]", "1.1.0");
  await page.click("#upload button[type=submit]");
  await waitText("#upload .error", (t) => t.includes("already exists"), 10_000);
  await shot("05-firmware-uploaded");
});

test("verify the firmware on a test device", async () => {
  await page.goto(`${BASE}/products/${PRODUCT}/firmware`);
  const form = page.locator('#firmware tr[data-version="1.1.0"] form.verify');
  await form.locator("input[name=devices]").fill("e2e-00000");
  await form.locator("button").click();
  await waitText('#firmware tr[data-version="1.1.0"] form.verify .status', (t) => /started|succeeded/.test(t), 10_000).catch(() => {});
  // The form follows the check live and reloads the page when it is over.
  await waitText('#firmware tr[data-version="1.1.0"] .badge', (t) => t === "verified");
  await shot("06-firmware-verified");
});

let rollout;

test("create a campaign over the simulated fleet and watch it succeed live", async () => {
  await page.goto(`${BASE}/campaigns/new?product=${PRODUCT}`);
  await page.selectOption("select[name=version]", "1.1.0");
  await page.fill("input[name=versions]", "1.0.0");
  await page.fill("input[name=waves]", "20,100");
  await page.fill("input[name=gate]", "90");
  await page.fill("input[name=timeout]", "600");
  assert.equal(await page.locator("#start").isDisabled(), true, "no start before a preview");
  await page.click("button[name=preview]");
  await waitText("#preview h2", (t) => t === `Dry run: ${FLEET - 1} devices would be upgraded`, 10_000);
  assert.match(await text("#preview p"), /^0 skipped; 2 wave\(s\) of \d+, \d+ devices\./, "the verified test device, at 1.1.0, is not selected");
  assert.equal(await page.locator("#preview tbody tr").count(), 2, "two waves projected");
  assert.equal(await page.locator("#start").isEnabled(), true);
  await shot("07-new-campaign-preview");

  await page.click("#start");
  await page.waitForURL(/\/campaigns\/\d+$/);
  rollout = Number(page.url().split("/").pop());
  await page.evaluate(() => { window.__sameDocument = true; });
  assert.equal(await text("[data-count=total]"), String(FLEET - 1));
  // Counts move without reloading: the same document sees every device succeed.
  await waitText("[data-count=succeeded]", (t) => Number(t) > 0 && Number(t) < FLEET - 1, LONG).catch(() => {});
  await shot("08-campaign-running");
  await waitText("[data-count=succeeded]", (t) => t === String(FLEET - 1));
  await waitText("#campaign-state .badge", (t) => t === "finished");
  assert.equal(await page.evaluate(() => window.__sameDocument), true, "updated live, not reloaded");
  assert.equal(await text("#progress-text"), `${FLEET - 1} of ${FLEET - 1} devices finished (100%), ${FLEET - 1} succeeded`);
  await waitText("#upgrades tbody", (t) => !/downloading|pending|pushed/.test(t), 10_000);
  assert.equal(await page.locator('#upgrades tr[data-state="succeeded"]').count(), FLEET - 1);
  assert.equal(await page.locator("[data-action=cancel]").isHidden(), true, "nothing to cancel once finished");
  await shot("09-campaign-finished");
});

test("cancel another campaign", async () => {
  await upload("1.2.0", image(64 * 1024));
  await page.goto(`${BASE}/campaigns/new?product=${PRODUCT}`);
  await page.selectOption("select[name=version]", "1.2.0");
  await page.check("input[name=skip_verification]");
  await page.fill("input[name=versions]", "1.1.0");
  const tomorrow = await page.evaluate(() => {
    const d = new Date(Date.now() + 86_400_000);
    d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
    return d.toISOString().slice(0, 16);
  });
  await page.fill("input[name=start_at]", tomorrow);
  await page.fill("input[name=rate]", "10");
  await page.click("button[name=preview]");
  await waitText("#preview h2", (t) => t === `Dry run: ${FLEET} devices would be upgraded`, 10_000);
  await page.click("#start");
  await page.waitForURL(/\/campaigns\/\d+$/);
  assert.notEqual(Number(page.url().split("/").pop()), rollout);
  assert.equal(await text("#campaign-state .badge"), "scheduled");
  assert.equal(await text("[data-count=queued]"), String(FLEET));
  await page.click("[data-action=cancel]"); // the confirm dialog is accepted
  await waitText("#campaign-state .badge", (t) => t === "canceled", 10_000);
  await waitText("[data-count=canceled]", (t) => t === String(FLEET), 10_000);
  assert.equal(await text("#campaign-reason"), "canceled by operator");
  assert.equal(await page.locator("[data-action=cancel]").isHidden(), true);
  // A second cancel through the API is refused; the page shows nothing wrong meanwhile.
  await page.click('nav.filters a:has-text("canceled")');
  assert.equal(await page.locator('#upgrades tr[data-state="canceled"]').count(), FLEET);
  await shot("10-campaign-canceled");
});

test("device detail: versions, online, upgrade history explained", async () => {
  await page.goto(`${BASE}/products/${PRODUCT}/devices/e2e-00001`);
  assert.equal(await text("h1"), "e2e-00001");
  assert.match(await text("#online"), /online/);
  assert.equal(await text("#versions tbody td code"), "1.1.0");
  const history = await text("#history tbody");
  assert.match(history, /succeeded/);
  assert.match(history, /canceled/);
  await shot("11-device-detail");
});

test("audit log lists the operator's actions", async () => {
  await page.goto(`${BASE}/audit`);
  const actions = await page.locator("#audit tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.action));
  for (const a of ["console.sign_in", "firmware.upload", "firmware.verify", "campaign.create", "campaign.cancel"]) {
    assert.ok(actions.includes(a), `${a} recorded (have ${actions.join(", ")})`);
  }
  assert.equal(actions[0], "campaign.cancel", "newest first");
  await shot("12-audit-log");
  await page.goto(`${BASE}/campaigns`);
  await shot("13-campaigns");
  // After the rollout the distribution shows the whole fleet at 1.1.0.
  await page.goto(`${BASE}/products/${PRODUCT}`);
  const bar = page.locator('figure.chart g.bar[data-version="1.1.0"] text.count');
  assert.match(await bar.textContent(), new RegExp(`^${FLEET} \\(100\\.0%\\)`));
  await shot("14-version-distribution-after");
});

/** The admin API, with the token. */
async function api(method, path, body) {
  const r = await fetch(`${BASE}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: body && JSON.stringify(body),
  });
  const v = await r.json().catch(() => null);
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${JSON.stringify(v)}`);
  return v;
}

test("a health gate stops a boot-looping release, and the rollback is linked both ways", async () => {
  // 9.9.9 makes every device that installs it boot-loop (run.sh's simulate flags).
  await upload("9.9.9", image(32 * 1024));
  const created = await api("POST", "/campaigns", {
    product: PRODUCT, version: "9.9.9", skip_verification: true,
    selection: { versions: ["1.1.0"] },
    strategy: { waves: [20, 100], gate_percent: 0, timeout_secs: 300,
      health: { bake_secs: 3, rules: ["came_back>=50%", "churn<=2x"], on_unhealthy: "rollback" } },
  });
  await page.goto(`${BASE}/campaigns/${created.id}`);
  assert.match(await text("#health"), /Each wave bakes 3 s/);
  await waitText("#campaign-state .badge", (t) => t === "aborted");
  await page.reload();
  const gate = page.locator('#gate-timeline li[data-verdict="unhealthy"]');
  assert.equal(await gate.count(), 1, "wave 1 judged unhealthy");
  assert.match(await gate.innerText(), /churn<=2x/);
  assert.equal(await gate.locator('tr[data-tripped="true"] code').innerText(), "churn<=2x");
  assert.match(await text("#campaign-reason"), /rollback campaign #\d+/);
  assert.equal(await page.locator("[data-count=queued]").innerText(), "0", "wave 2 canceled, never released");
  await shot("15-health-gate-tripped");

  await page.click("#rollbacks a.rollback");
  await page.waitForURL(/\/campaigns\/\d+$/);
  assert.notEqual(Number(page.url().split("/").pop()), created.id);
  assert.equal(await text("#rollback-of"), `campaign #${created.id}`);
  await waitText("#campaign-state .badge", (t) => t === "finished");
  const rolledBack = Number(await text("[data-count=succeeded]"));
  assert.ok(rolledBack >= 5, `the first wave is back on 1.1.0 (${rolledBack} devices)`);
  await shot("16-rollback-finished");
});

test("a campaign that ends with failures says so, and each failed device says why", async () => {
  // A device that never connects: its offer times out after 1 s, for good (no retries).
  await api("POST", `/products/${PRODUCT}/devices`, { name: "e2e-never-online" });
  const created = await api("POST", "/campaigns", {
    product: PRODUCT, version: "1.2.0", skip_verification: true,
    selection: { devices: ["e2e-never-online"] },
    strategy: { timeout_secs: 1 },
  });
  await page.goto(`${BASE}/campaigns/${created.id}`);
  await waitText("#campaign-state .badge", (t) => t === "finished with failures", 30_000);
  assert.equal(await page.locator("#campaign-state .badge.s-finished_with_failures").count(), 1, "not the green finished badge");
  await waitText("[data-count=timed_out]", (t) => t === "1", 10_000);
  await page.reload();
  const row = page.locator('#upgrades tr[data-device="e2e-never-online"]');
  assert.equal(await row.locator(".badge").innerText(), "timed out");
  assert.match(await row.locator(".reason").innerText(), /timed out/);
  // The campaign list tells the same story.
  await page.goto(`${BASE}/campaigns`);
  assert.equal(await page.locator(`tr[data-campaign="${created.id}"] .badge`).innerText(), "finished with failures");
  await shot("17-finished-with-failures");
});

test("sign in as an operator: an HttpOnly session, named in the audit, ended by sign-out", async () => {
  const name = "e2e-operator", password = "an e2e operator password";
  await api("POST", "/operators", { name, scope: "operate", password });
  await page.goto(`${BASE}/products`);
  await page.click("form.signout button");
  await page.waitForURL(/\/login$/);
  await page.goto(`${BASE}/products`);
  assert.match(page.url(), /\/login\?next=/, "signed out");
  await page.fill("#name", name);
  await page.fill("#password", "not the password at all");
  await page.click("button[type=submit]");
  assert.equal(await text("[role=alert]"), "Wrong operator name or password (or the account is disabled).");
  await page.fill("#name", name);
  await page.fill("#password", password);
  await shot("17-operator-sign-in");
  await page.click("button[type=submit]");
  await page.waitForURL(/\/products$/);
  assert.equal(await text("h1"), "Products");

  // The session cookie is HttpOnly: no script of the page can read it.
  assert.equal(await page.evaluate(() => document.cookie.includes("otter_session")), false, "document.cookie shows no session");
  const session = (await context.cookies(BASE)).find((c) => c.name === "otter_session");
  assert.ok(session && session.httpOnly && session.sameSite === "Strict", `session cookie: ${JSON.stringify(session)}`);

  // The operator (operate scope) schedules a campaign and cancels it, through the console's script.
  await page.goto(`${BASE}/campaigns/new?product=${PRODUCT}`);
  await page.selectOption("select[name=version]", "1.2.0");
  await page.check("input[name=skip_verification]");
  await page.fill("input[name=versions]", "1.1.0");
  const tomorrow = await page.evaluate(() => {
    const d = new Date(Date.now() + 86_400_000);
    d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
    return d.toISOString().slice(0, 16);
  });
  await page.fill("input[name=start_at]", tomorrow);
  await page.fill("input[name=rate]", "10");
  await page.click("button[name=preview]");
  await waitText("#preview h2", (t) => t.startsWith("Dry run: "), 10_000);
  await page.click("#start");
  await page.waitForURL(/\/campaigns\/\d+$/);
  const id = Number(page.url().split("/").pop());
  await page.click("[data-action=cancel]"); // the confirm dialog is accepted
  await waitText("#campaign-state .badge", (t) => t === "canceled", 10_000);

  // A request without the console's header (what a forged cross-site request is) is refused.
  const forged = await page.evaluate(async (id) => {
    const r = await fetch(`/api/v1/campaigns/${id}/pause`, { method: "POST" });
    return [r.status, (await r.json()).error];
  }, id);
  assert.equal(forged[0], 403);
  assert.match(forged[1], /X-Otter-Console: 1/);

  // The audit log names the operator for the sign-in and for what they did.
  await page.goto(`${BASE}/audit`);
  const rows = await page.locator("#audit tbody tr").evaluateAll((rows) => rows.map((r) => [r.dataset.action, r.cells[1].innerText]));
  const who = `operator:${name}`;
  assert.deepEqual(rows[0], ["campaign.cancel", who], "newest first");
  assert.ok(rows.some(([a, w]) => a === "campaign.create" && w === who), JSON.stringify(rows.slice(0, 5)));
  assert.ok(rows.some(([a, w]) => a === "console.sign_in" && w === who), JSON.stringify(rows.slice(0, 5)));
  await shot("18-operator-audit");

  // Sign-out ends the session on the server: the same cookie, put back, opens nothing.
  await page.click("form.signout button");
  await page.waitForURL(/\/login$/);
  await context.addCookies([session]);
  await page.goto(`${BASE}/products`);
  assert.match(page.url(), /\/login\?next=/, "a signed-out session stays out");
  const api401 = await page.evaluate(async () => (await fetch("/api/v1/products")).status);
  assert.equal(api401, 401);
});
