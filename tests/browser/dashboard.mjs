// The dashboard in a real browser (Debian's chromium, driven by playwright-core), run
// by tests/dashboard.rs against a running operator:
//
//   node tests/browser/dashboard.mjs URL POOL MANIFEST SCREENSHOT
//
// It loads URL (the admin API's `/`), finds POOL and a chart with data, then rewrites
// MANIFEST (the pool's file) to ask for one more container and waits, without a reload,
// until the page shows the scale-up (2 ready, and the event "replicas 1 -> 2"). It
// prints the pools the page shows. Every request the
// page makes must go to URL's own host; no JavaScript error may be raised. It saves a
// screenshot to SCREENSHOT and prints one JSON line of what it saw. Exit 0 on success;
// on failure the message says what was missing.
import { chromium } from "playwright-core";
import { readFileSync, writeFileSync, renameSync } from "node:fs";

const [url, pool, manifest, screenshot] = process.argv.slice(2);
if (!screenshot) {
  console.error("usage: node dashboard.mjs URL POOL MANIFEST SCREENSHOT");
  process.exit(2);
}
const origin = new URL(url).origin;
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const outside = [];
const errors = [];
let failed = null;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("request", r => {
    if (new URL(r.url()).origin !== origin) outside.push(r.url());
  });
  page.on("pageerror", e => errors.push("page error: " + e.message));
  page.on("console", m => { if (m.type() === "error") errors.push("console: " + m.text()); });
  await page.goto(url, { waitUntil: "load" });

  const card = page.locator(`section.pool[data-pool="${pool}"]`);
  await card.waitFor({ timeout: 20000 });
  const pools = await page.$$eval("section.pool", s => s.map(e => e.dataset.pool));
  // A chart with data: the history fills every 2 s.
  await page.waitForFunction(
    p => [...document.querySelectorAll(`section.pool[data-pool="${p}"] svg.chart`)]
      .some(svg => Number(svg.dataset.points) >= 2),
    pool, { timeout: 20000 });
  const before = await card.locator('[data-field="size"]').innerText();
  const loads = await page.evaluate(() => performance.getEntriesByType("navigation").length);

  // One more container, written as an editor would (write, then rename).
  const yaml = readFileSync(manifest, "utf8");
  const grown = yaml.replace(/minContainers: 1\b/, "minContainers: 2");
  if (grown === yaml) throw new Error(`${manifest} has no "minContainers: 1" to raise`);
  writeFileSync(manifest + ".tmp", grown);
  renameSync(manifest + ".tmp", manifest);

  await page.waitForFunction(
    p => {
      const card = document.querySelector(`section.pool[data-pool="${p}"]`);
      return card && /^2 ready/.test(card.querySelector('[data-field="size"]').textContent)
        && /replicas 1 -> 2/.test(card.querySelector("table.events").textContent);
    },
    pool, { timeout: 60000 });
  const after = await card.locator('[data-field="size"]').innerText();
  const reloaded = await page.evaluate(() => performance.getEntriesByType("navigation").length) !== loads;
  if (reloaded) throw new Error("the page was reloaded");
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ pool, pools, before, after, outside, errors }));
} catch (e) {
  failed = e;
} finally {
  await browser.close();
}
if (failed) {
  console.error("dashboard test failed: " + failed.message);
  process.exit(1);
}
if (outside.length) {
  console.error("the page requested something outside the operator: " + outside.join(", "));
  process.exit(1);
}
if (errors.length) {
  console.error("the page raised JavaScript errors: " + errors.join(" | "));
  process.exit(1);
}
