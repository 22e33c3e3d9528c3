// Drives Converse.js in headless Chromium for tests/converse_web.rs: loads the page,
// waits for the login over WebSocket, opens a chat with the peer, types a message into
// the chat box and sends it, then saves a screenshot.
// Usage: node converse.mjs <page-url> <peer-jid> <message> <screenshot.png>
import { chromium } from 'playwright-core';

const [pageUrl, peer, message, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // Root in CI containers has no user namespace for Chromium's sandbox.
  args: ['--no-sandbox'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  page.on('console', (msg) => console.error(`[browser ${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (err) => console.error(`[page error] ${err.message}`));
  await page.goto(pageUrl);
  await page.waitForFunction(() => window.starlingTest?.api.connection.connected() === true, null, { timeout: 30000 });
  await page.evaluate((jid) => window.starlingTest.api.chats.open(jid, {}, true), peer);
  const box = page.locator('.chat-textarea');
  await box.waitFor({ timeout: 15000 });
  await box.fill(message);
  await box.press('Enter');
  await page.locator('.chat-msg__text', { hasText: message }).first().waitFor({ timeout: 15000 });
  await page.screenshot({ path: screenshot });
} finally {
  await browser.close();
}
