// Opens Mission Control (`swarm run --web ADDR`) in the system's headless Chromium while a
// run goes on: two viewers from the start, a third after the verdict. Waits for the
// verdict, reads the figures each page shows, counts the fault windows drawn, takes a
// 1920x1080 screenshot, and prints one JSON object for the Rust test to judge.
//
//   node tests/web/mission_control.mjs --url http://127.0.0.1:PORT/ --out DIR
import { chromium } from "playwright-core";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => {
    if (a.startsWith("--")) pairs.push([a.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const url = args.url;
const out = args.out;
const executablePath = args.chromium || "/usr/bin/chromium";

const browser = await chromium.launch({
  executablePath,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});

async function open(width, height) {
  const page = await browser.newPage({ viewport: { width, height } });
  // The server may not be listening yet: retry for a while.
  for (let i = 0; i < 200; i++) {
    try {
      await page.goto(url, { waitUntil: "domcontentloaded", timeout: 2000 });
      return page;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${url} never answered`);
}

async function state(page) {
  return page.evaluate(() => {
    const figures = {};
    for (const el of document.querySelectorAll("[data-figure]")) figures[el.dataset.figure] = el.textContent.trim();
    const faults = [...document.querySelectorAll("#throughput .fault")].map((g) => ({
      region: g.dataset.region,
      mode: g.dataset.mode,
      from_s: Number(g.dataset.fromS),
      to_s: Number(g.dataset.toS),
    }));
    const verdict = document.querySelector("#verdict");
    const headline = document.querySelector("#headline");
    const box = headline ? headline.getBoundingClientRect() : null;
    return {
      phase: document.body.dataset.phase,
      figures,
      faults,
      verdict: verdict ? verdict.textContent.trim() : "",
      headline: headline ? headline.textContent.trim() : "",
      headline_px: headline ? parseFloat(getComputedStyle(headline).fontSize) : 0,
      headline_in_view: box ? box.top >= 0 && box.bottom <= window.innerHeight && box.width > 0 : false,
      series_len: Number(document.querySelector("#throughput")?.dataset.seriesLen || 0),
    };
  });
}

const result = { during: null, viewers: [], late: null };
try {
  const a = await open(1920, 1080);
  const b = await open(1280, 800);
  // While it runs: the page has a series and says it is running (or resolving).
  await a.waitForFunction(() => Number(document.querySelector("#throughput")?.dataset.seriesLen || 0) >= 1, null, { timeout: 60000 });
  result.during = await state(a);
  for (const page of [a, b]) {
    await page.waitForFunction(() => document.body.dataset.phase === "done" && document.querySelector("#headline")?.textContent.trim(), null, { timeout: 180000 });
  }
  result.viewers = [await state(a), await state(b)];
  await a.screenshot({ path: `${out}/mission-control-1920.png` });
  // The verdict word alone, as the screen shows it (OCR reads huge type better cropped).
  await a.locator("#verdict").screenshot({ path: `${out}/verdict.png` });
  // A viewer that connects after the verdict gets the whole run at once.
  const late = await open(1920, 1080);
  await late.waitForFunction(() => document.body.dataset.phase === "done" && document.querySelector("#headline")?.textContent.trim(), null, { timeout: 10000 });
  result.late = await state(late);
} catch (e) {
  result.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
