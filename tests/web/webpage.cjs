// SPDX-License-Identifier: MIT
// webpage.cjs — drive the imgsim web page in headless Chromium (playwright-core):
//   node webpage.cjs URL PHOTO OTHER_PHOTO OUT_DIR
// Uploads PHOTO, checks the grid shows k results whose images loaded,
// filters by category, clicks a result and checks its similar items,
// uploads a text file and garbage bytes and checks the error shown,
// checks a phone-sized viewport has no horizontal scroll, and saves
// OUT_DIR/webpage.png and OUT_DIR/webpage-phone.png.
"use strict";
const path = require("path");
const prefix = process.env.IMS_NODE_PREFIX || path.join(__dirname, "../../.cache/node");
const { chromium } = require(path.join(prefix, "node_modules", "playwright-core"));

const [url, photo, other, outDir] = process.argv.slice(2);
const K = 8;
let failures = 0;
function check(cond, what) {
  if (!cond) { failures++; console.error("FAIL: " + what); } else console.log("ok: " + what);
}

async function gridState(page) {
  return page.evaluate(() => [...document.querySelectorAll("#grid .item")].map((d) => ({
    id: d.dataset.id,
    loaded: d.querySelector("img").complete && d.querySelector("img").naturalWidth > 0,
    name: d.querySelector(".name").textContent,
    cat: d.querySelector(".cat").textContent,
    score: d.querySelector(".score").textContent,
  })));
}

async function waitGrid(page, n) {
  await page.waitForFunction((n) => {
    const imgs = [...document.querySelectorAll("#grid .item img")];
    return imgs.length === n && imgs.every((i) => i.complete && i.naturalWidth > 0);
  }, n, { timeout: 20000 });
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("pageerror", (e) => { failures++; console.error("page error: " + e.message); });
    await page.goto(url);
    await page.waitForFunction(() => document.querySelectorAll("#category option").length > 1);
    const cats = await page.$$eval("#category option", (o) => o.map((x) => x.value).filter(Boolean));
    check(cats.length > 0, "category filter populated (" + cats.length + " categories)");

    await page.fill("#k", String(K));
    await page.$eval("#k", (e) => e.blur()); // its change event now, not at the first click
    await page.setInputFiles("#file", photo);
    await waitGrid(page, K);
    let g = await gridState(page);
    check(g.length === K && g.every((x) => x.loaded), K + " results, all images loaded");
    check(g.every((x) => x.name && /^-?\d\.\d{3}$/.test(x.score)), "results show name and score");
    check(await page.isVisible("#query-img"), "query image shown");

    // click the second result: its similar items replace the grid
    const clicked = g[1];
    await page.click(`#grid .item[data-id="${clicked.id}"]`);
    await page.waitForFunction((name) =>
      document.querySelector("#query-label").textContent.includes("similar to " + name), clicked.name);
    await page.waitForFunction(([n, id]) => {
      const items = [...document.querySelectorAll("#grid .item")];
      return items.length === n && !items.some((d) => d.dataset.id === id) &&
        items.every((d) => d.querySelector("img").complete && d.querySelector("img").naturalWidth > 0);
    }, [K, clicked.id], { timeout: 20000 });
    g = await gridState(page);
    check(g.length === K && g.every((x) => x.loaded) && !g.some((x) => x.id === clicked.id),
      "clicking an item shows " + K + " items similar to it (itself excluded)");
    await page.screenshot({ path: path.join(outDir, "webpage.png"), fullPage: true });

    // drop and paste: an item's image as a File, through the page's handlers
    for (const how of ["drop", "paste"]) {
      const first = g[0];
      await page.evaluate(async ([how, url]) => {
        const blob = await (await fetch(url)).blob();
        const dt = new DataTransfer();
        dt.items.add(new File([blob], how + ".jpeg", { type: blob.type }));
        if (how === "drop")
          document.querySelector("#drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true }));
        else
          document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true }));
      }, [how, first.id && `/v1/images/${first.id}`]);
      await page.waitForFunction(([how, id]) => {
        const items = [...document.querySelectorAll("#grid .item")];
        return document.querySelector("#query-label").textContent.startsWith(how + ".jpeg") &&
          items.length > 0 && items[0].dataset.id === id;
      }, [how, first.id], { timeout: 20000 });
      check(true, how + ": an item's own image finds it first");
    }

    // category filter re-runs the query within the category
    const cat = cats.find((c) => c !== "") || cats[0];
    await page.selectOption("#category", cat);
    await page.waitForFunction((cat) => {
      const c = [...document.querySelectorAll("#grid .item .cat")];
      return c.length > 0 && c.every((x) => x.textContent === cat);
    }, cat, { timeout: 20000 });
    check(true, "category '" + cat + "' filters the results");
    await page.selectOption("#category", "");

    // refused uploads show the server's message
    await page.setInputFiles("#file", { name: "notes.txt", mimeType: "text/plain",
                                         buffer: Buffer.from("just some text\n") });
    await page.waitForSelector("#error.shown", { timeout: 20000 });
    let msg = await page.textContent("#error");
    check(/415/.test(msg) && /unsupported media type/i.test(msg), "text file refused: " + msg);
    await page.setInputFiles("#file", { name: "broken.jpg", mimeType: "image/jpeg",
                                         buffer: Buffer.from("this is not a jpeg at all") });
    await page.waitForFunction(() => /422/.test(document.querySelector("#error").textContent),
      null, { timeout: 20000 });
    msg = await page.textContent("#error");
    check(/422/.test(msg), "undecodable image refused: " + msg);

    // phone-sized screen: results in a grid, no horizontal scrolling
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true,
                                          hasTouch: true, deviceScaleFactor: 2 });
    await phone.goto(url);
    await phone.fill("#k", "6");
    await phone.$eval("#k", (e) => e.blur());
    await phone.setInputFiles("#file", other);
    await waitGrid(phone, 6);
    const fits = await phone.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
    const cols = await phone.evaluate(() =>
      getComputedStyle(document.querySelector("#grid")).gridTemplateColumns.split(" ").length);
    check(fits && cols === 2, "phone viewport: no horizontal scroll, " + cols + " columns");
    await phone.screenshot({ path: path.join(outDir, "webpage-phone.png"), fullPage: true });
  } catch (e) {
    failures++;
    console.error("FAIL: " + (e && e.stack || e));
  } finally {
    await browser.close();
  }
  console.log(failures ? failures + " failure(s)" : "browser test passed");
  process.exit(failures ? 1 : 0);
})();
