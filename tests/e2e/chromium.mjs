// Debian's Chromium, headless, as every browser script here launches it (ENVIRONMENT.md's
// flags); `webgpu: false` leaves out --enable-unsafe-webgpu, so Linux Chromium has no adapter.
import { chromium } from "playwright-core";

const FLAGS = [
  "--no-sandbox", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--no-first-run", "--no-default-browser-check", "--disable-quic",
];

function options(webgpu) {
  return {
    executablePath: process.env.CHROMIUM || "/usr/lib/chromium/chromium",
    headless: true,
    args: webgpu ? [...FLAGS, "--enable-unsafe-webgpu"] : FLAGS,
  };
}

export function launch({ webgpu = true } = {}) {
  return chromium.launch(options(webgpu));
}

/**
 * A browser on a profile in `dir`, as a user's: storage is on disk with the disk's quota.
 * A page of `launch()` is in an incognito-like context, whose storage lives in memory with a
 * quota of a fraction of RAM (a 4 GB archive does not fit in it on a 24 GB machine).
 */
export function launchProfile(dir, { webgpu = true } = {}) {
  return chromium.launchPersistentContext(dir, options(webgpu));
}
