// Drives the dashboard of a running weir in Debian's Chromium (headless), as an operator would:
// the page loads and explains itself, its numbers move with the traffic, a rollout's steps
// appear, the rollback button is refused without the admin token and rolls back with it.
//
//   ADMIN=http://127.0.0.1:15000 TOKEN=secret [SCREENSHOT=docs/dashboard.png] node dashboard.mjs
//
// Prints what it saw as JSON lines; exits 1 at the first thing that is not as it should be.
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const admin = process.env.ADMIN;
const token = process.env.TOKEN;
const canary = process.env.CANARY || "shop";
const say = (what, detail) => console.log(JSON.stringify({ what, ...detail }));
const fail = (why) => { console.log(JSON.stringify({ failed: why })); process.exit(1); };

const profile = mkdtempSync(join(tmpdir(), "weir-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 1400 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync"],
});
const timer = setTimeout(() => fail("timed out"), 90_000);
try {
  const page = browser.pages()[0] || await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // The 401s of the calls sent without the token are expected; nothing else may fail.
  page.on("console", (m) => { if (m.type() === "error" && !/status of 401/.test(m.text())) errors.push(m.text()); });
  await page.goto(admin + "/");
  await page.waitForSelector("body[data-loaded=true]", { timeout: 10_000 });
  say("loaded", { title: await page.title() });

  // The rollout's card, with its steps appearing in the decision timeline.
  const card = page.locator(`[data-canary="${canary}"]`);
  await card.waitFor({ timeout: 10_000 });
  // A round that passed: its check with the value measured, the range and the sample.
  await page.waitForFunction((c) => [...document.querySelectorAll(`[data-canary="${c}"] tr.round`)].some((r) => /\bpass\b/.test(r.innerText)), canary, { timeout: 30_000 });
  const [rounds, passed] = await page.evaluate((c) => {
    const rows = [...document.querySelectorAll(`[data-canary="${c}"] tr.round`)];
    return [rows.length, rows.map((r) => r.innerText).find((t) => /\bpass\b/.test(t))];
  }, canary);
  say("timeline", { rounds, passed });
  if (!/request-success-rate: [0-9.]+ \(min 99, [0-9]+ requests\) pass/.test(passed)) fail("a round without its check's value, range and sample: " + passed);

  // An experiment's card: its variants side by side with participants counted, the decision.
  if (process.env.EXPERIMENT) {
    const x = process.env.EXPERIMENT;
    await page.waitForFunction((n) => [...document.querySelectorAll(`[data-experiment="${n}"] [data-variant] [data-field="users"]`)].filter((u) => Number(u.innerText) > 0).length === 2, x, { timeout: 15_000 });
    const seen = await page.evaluate((n) => ({
      variants: [...document.querySelectorAll(`[data-experiment="${n}"] [data-variant]`)].map((r) => r.innerText.replace(/\s+/g, " ")),
      decision: document.querySelector(`[data-experiment="${n}"] [data-field="decision"]`)?.innerText,
      phase: document.querySelector(`[data-experiment="${n}"] [data-phase]`)?.dataset.phase,
      alarm: !!document.querySelector(`[data-experiment="${n}"] [data-field="srm"]`),
    }), x);
    say("experiment", seen);
    if (seen.variants.length !== 2 || seen.phase !== "Running") fail("the experiment's variants are not shown: " + JSON.stringify(seen));
    if (!/waiting for participants/.test(seen.decision || "")) fail("no decision shown: " + seen.decision);
    if (seen.alarm) fail("a sample ratio mismatch shown on a fair split");
  }

  // The policies in force, with what they decided.
  if (process.env.POLICY) {
    const p = process.env.POLICY;
    await page.waitForFunction((n) => Number(document.querySelector(`[data-policy="${n}"] [data-field="allowed"]`)?.innerText) > 0, p, { timeout: 15_000 });
    const row = await page.evaluate((n) => document.querySelector(`[data-policy="${n}"]`).innerText.replace(/\s+/g, " "), p);
    say("policy", row);
    if (!/AuthorizationPolicy AUDIT/.test(row)) fail("the policy's kind is not shown: " + row);
  }

  // The numbers move: the canary's requests per second and its weight change with time.
  const read = async () => ({
    weight: await card.locator('[data-field="weight"]').innerText(),
    served: await card.locator('[data-field="served"]').innerText(),
    rps: await card.locator(".chart .title").first().innerText(),
  });
  const before = await read();
  await page.waitForTimeout(3000);
  const after = await read();
  say("moving", { before, after });
  if (before.rps === after.rps && before.weight === after.weight) fail("the numbers did not move");
  if (!/\d/.test(after.served)) fail("no share served");

  if (process.env.SCREENSHOT) {
    // SCREENSHOT_AFTER=SECONDS lets the charts fill first.
    await page.waitForTimeout(1000 * Number(process.env.SCREENSHOT_AFTER || 0));
    await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
    say("screenshot", { path: process.env.SCREENSHOT });
  }

  // Rollback without the token: confirmed, then the token prompt is dismissed: refused.
  const rollback = card.locator('button[data-action="rollback"]');
  if (await rollback.isDisabled()) fail("rollback is disabled while progressing");
  if (!(await card.locator('button[data-action="resume"]').isDisabled())) fail("resume is enabled on a rollout that is not paused");
  let prompts = 0;
  let answer = null;
  page.on("dialog", async (d) => {
    if (d.type() === "confirm") return d.accept();
    prompts++;
    return answer === null ? d.dismiss() : d.accept(answer);
  });
  await rollback.click();
  await page.waitForSelector("#note", { timeout: 5000 });
  const refused = await page.locator("#note").innerText();
  say("without token", { note: refused, prompts });
  if (prompts !== 1 || !/token/.test(refused)) fail("the rollback was not refused for want of a token: " + refused);
  const phase = await card.locator("[data-phase]").getAttribute("data-phase");
  if (phase === "Failed") fail("rolled back without the token");

  // With the token: rolled back, and the page shows it.
  answer = token;
  await rollback.click();
  await page.waitForFunction((c) => document.querySelector(`[data-canary="${c}"] [data-phase]`)?.dataset.phase === "Failed", canary, { timeout: 10_000 });
  say("rolled back", { note: await page.locator("#note").innerText() });
  if (!(await card.locator('button[data-action="promote"]').isDisabled())) fail("promote is enabled on a failed rollout");
  if (errors.length) fail("errors in the page: " + errors.join("; "));
  say("ok", {});
} catch (e) {
  fail(String(e && e.stack || e));
} finally {
  clearTimeout(timer);
  await browser.close();
}
