// webui_browser_test.mjs — drives the chat page in headless Chromium
// (playwright-core, Debian's /usr/bin/chromium): load BASE/, wait for the
// model name, set temperature 0 and max_tokens, send a message, wait for the
// streamed reply and the tokens/s line, save a screenshot.
//   node tools/webui_browser_test.mjs BASE_URL SCREENSHOT.png
import { createRequire } from "node:module";
const require = createRequire(process.env.PW_DIR + "/");
const { chromium } = require("playwright-core");

const [base, shot] = process.argv.slice(2);
const fail = (msg) => { console.error("FAIL " + msg); process.exit(1); };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 }, deviceScaleFactor: 1 });
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(base)) external.push(r.url()); });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const t0 = Date.now();
  await page.goto(base + "/", { waitUntil: "load" });
  await page.waitForFunction(() => !/loading/.test(document.getElementById("model").textContent),
                             null, { timeout: 10000 });
  const model = await page.textContent("#model");
  console.log("ok   page loaded; model shown: " + model);
  await page.fill("#temperature", "0");
  await page.fill("#max_tokens", "48");
  await page.fill("#input", "def fibonacci(n):");
  await page.click("#send");
  await page.waitForSelector('.msg.assistant[data-state="done"], .msg.assistant[data-state="error"]',
                             { timeout: 60000 });
  const state = await page.getAttribute(".msg.assistant", "data-state");
  const reply = await page.textContent(".msg.assistant");
  const stats = await page.textContent("#stats");
  console.log("ok   reply (" + state + "): " + JSON.stringify(reply.slice(0, 120)));
  console.log("ok   stats: " + stats);
  if (state !== "done") fail("the reply ended in an error: " + reply);
  if (!reply.trim()) fail("empty reply");
  if (!/tok\/s/.test(stats)) fail("no tokens/s shown");
  if (external.length) fail("requests outside the server: " + external.join(" "));
  if (errors.length) fail("page errors: " + errors.join("; "));
  await page.screenshot({ path: shot });
  // a second turn goes out with the history
  await page.fill("#input", "class Stack:");
  await page.press("#input", "Enter");
  await page.waitForFunction(() => document.querySelectorAll('.msg.assistant[data-state="done"]').length === 2,
                             null, { timeout: 60000 });
  console.log("ok   second turn (Enter sends)");
  console.log("ok   screenshot " + shot + " (" + (Date.now() - t0) + " ms in all)");
} finally {
  await browser.close();
}
