// Debian's headless Chromium, started the one way this machine allows: the flags keep it off the
// (closed) network, and playwright-core gives it a new, empty profile directory of its own.
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** `extraArgs` is for a test that needs more, e.g. `--ignore-certificate-errors` for TLS. */
export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...extraArgs,
    ],
  });
}
