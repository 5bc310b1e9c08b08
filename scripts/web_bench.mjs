// Opens the benchmark page in headless Chromium (WebGPU via --enable-unsafe-webgpu) and prints
// its result as one JSON line. Usage: node scripts/web_bench.mjs PAGE_URL [TIMEOUT_S]
import { chromium } from "playwright-core";

const [url, timeoutS = "900"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/lib/chromium/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--enable-unsafe-webgpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--no-default-browser-check", "--disable-quic",
  ],
});
try {
  const page = await browser.newPage();
  page.on("console", (m) => {
    if (!m.text().startsWith("QINS_BENCH")) console.error(`[page] ${m.text()}`);
  });
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => window.qinsBench, null, { timeout: Number(timeoutS) * 1000, polling: 500 });
  const out = await page.evaluate(() => window.qinsBench);
  console.log(JSON.stringify(out));
  if (out.error) process.exitCode = 1;
} finally {
  await browser.close();
}
