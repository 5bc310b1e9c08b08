// Opens the benchmark page in headless Chromium (WebGPU via --enable-unsafe-webgpu) and prints
// its result as one JSON line. Usage: node scripts/web_bench.mjs PAGE_URL [TIMEOUT_S]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launchProfile } from "../tests/e2e/chromium.mjs";

const [url, timeoutS = "900"] = process.argv.slice(2);
// A fresh profile on disk, as a user's browser has: archives are stored with the disk's quota.
const profile = mkdtempSync(join(tmpdir(), "qins-bench-"));
const browser = await launchProfile(profile);
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
  rmSync(profile, { recursive: true, force: true });
}
