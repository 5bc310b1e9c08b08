// Debian's Chromium, headless, as every browser script here launches it (ENVIRONMENT.md's
// flags); `webgpu: false` leaves out --enable-unsafe-webgpu, so Linux Chromium has no adapter.
import { chromium } from "playwright-core";

const FLAGS = [
  "--no-sandbox", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--no-first-run", "--no-default-browser-check", "--disable-quic",
];

export function launch({ webgpu = true } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/lib/chromium/chromium",
    headless: true,
    args: webgpu ? [...FLAGS, "--enable-unsafe-webgpu"] : FLAGS,
  });
}
