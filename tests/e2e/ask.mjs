// Asks the chat page one question the way a user would and prints the reply and its figures
// as JSON; saves a screenshot. For trying a real model in headless Chromium:
//   node tests/e2e/ask.mjs BASE_URL MODEL_PATH "QUESTION" MAX_TOKENS SCREENSHOT.png
import { launch } from "./chromium.mjs";

const [base, model, question, maxTokens = "16", shot = "ask.png"] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
  const t0 = Date.now();
  await page.goto(`${base}/?model=${encodeURIComponent(model)}`);
  const status = await page.waitForSelector(
    "[data-testid=load-status][data-state=ready], [data-testid=load-status][data-state=failed]",
    { timeout: 600_000 });
  const loadText = await status.textContent();
  const loadMs = Date.now() - t0;
  if ((await status.getAttribute("data-state")) !== "ready") throw new Error(loadText);
  await page.click("summary");
  await page.fill("input[type=number][step='0.05'] >> nth=0", "0");
  await page.press("input[type=number][step='0.05'] >> nth=0", "Tab");
  await page.fill("[data-testid=max-tokens]", maxTokens);
  await page.press("[data-testid=max-tokens]", "Tab");
  await page.fill("[data-testid=prompt]", question);
  await page.press("[data-testid=prompt]", "Enter");
  const stats = await page.waitForSelector("[data-testid=reply-stats]", { timeout: 1_800_000 });
  const reply = await page.locator("[data-testid=assistant-turn] .text").last().innerText();
  await page.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify({ load_ms: loadMs, status: loadText, reply, stats: await stats.textContent() }));
} finally {
  await browser.close();
}
