// The web UI in a real browser: Debian's chromium, headless, driven by
// playwright-core (never a downloaded browser). Run by test_plane_ui.py,
// which starts the plane and a worker and pushes the DAGs ui_etl and
// ui_flaky. Prints "# ..." lines (figures) and one JSON object per result
// line; exits non-zero at the first failed expectation.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.REMEX_UI_PLAYWRIGHT);
const URL = process.env.REMEX_UI_URL;
const TOKEN = process.env.REMEX_UI_TOKEN;
const SHOTS = process.env.REMEX_UI_SHOTS;
const MARKER = process.env.REMEX_UI_MARKER;
const T = 30000 * Number(process.env.REMEX_UI_SLOW || 1);

const result = (o) => console.log(JSON.stringify(o));
const note = (s) => console.log(`# ${s}`);
const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, `ui-${name}.png`), fullPage: true });

// A browser with a fresh profile folder of its own (playwright passes it as
// --user-data-dir) and the flags a root-run headless chromium needs.
const open = (profile, opts = {}) => chromium.launchPersistentContext(profile, {
  executablePath: process.env.REMEX_UI_CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  ...opts,
});
let ctx = null;

async function login(page, token) {
  await page.goto(`${URL}/`);
  await page.waitForSelector('#token');
  // Keyboard only: type the token and press Enter.
  await page.focus('#token');
  await page.keyboard.type(token);
  await page.keyboard.press('Enter');
}

// Presses Tab until the element labelled `label` has the focus (bounded).
async function tabTo(page, label) {
  for (let i = 0; i < 80; i += 1) {
    await page.keyboard.press('Tab');
    const got = await page.evaluate(() => document.activeElement && (document.activeElement.getAttribute('aria-label')
      || document.activeElement.textContent));
    if (got === label) return;
  }
  throw new Error(`${label}: not reachable with Tab`);
}

try {
  // 1. A wrong token is refused, and the page never holds a token.
  const ctx0 = await open(`${process.env.REMEX_UI_PROFILE}-refused`);
  const p0 = ctx0.pages()[0] || await ctx0.newPage();
  await p0.goto(`${URL}/`);
  await p0.waitForSelector('#token');
  // Bytes transferred for the first page: the document and every file it
  // loaded (headers included), as the browser counts them.
  const first = await p0.evaluate(() => {
    const all = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')];
    return { bytes: all.reduce((n, e) => n + e.transferSize, 0), files: all.length };
  });
  note(`first page: ${first.bytes} bytes transferred in ${first.files} files`);
  result({ first_page_bytes: first.bytes, first_page_files: first.files });
  assert.ok(first.files >= 8, 'the page loaded fewer files than it has');
  await login(p0, 'rmxadm_not-the-token');
  await p0.waitForSelector('#login-error:has-text("Wrong admin token")', { timeout: T });
  assert.equal((await ctx0.cookies()).length, 0);
  await shot(p0, 'login');
  await ctx0.close();

  // 2. Log in; the agents page shows the live worker.
  ctx = await open(process.env.REMEX_UI_PROFILE, { viewport: { width: 1280, height: 900 } });
  const page = ctx.pages()[0] || await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await login(page, TOKEN);
  await page.waitForSelector('table tr[data-dag="ui_etl"]', { timeout: T });
  const html = await page.content();
  assert.ok(!html.includes(TOKEN), 'the admin token is in the page');
  const [cookie] = await ctx.cookies();
  assert.equal(cookie.name, 'remex_session');
  assert.ok(cookie.httpOnly && cookie.sameSite === 'Strict');
  assert.ok(!(await page.evaluate(() => document.cookie)).includes('remex_session'));
  await page.click('nav >> text=Agents');
  await page.waitForSelector('tr[data-agent="w1"] td.state:has-text("healthy")', { timeout: T });
  await page.waitForSelector('tr[data-agent="s1"]:has-text("disk: failing /var is 97% full")');
  assert.ok(!(await page.textContent('tr[data-agent="s1"]')).includes('reachable'), 'a passing check listed');
  await page.waitForSelector('tr[data-agent="s1"] td.state:has-text("lost")', { timeout: T });
  const hb = await page.textContent('tr[data-agent="w1"] time');
  assert.match(hb, /^\d+s ago$/);
  await shot(page, 'agents');

  // 3. Trigger ui_etl with conf from the DAGs page; bad JSON is refused first.
  await page.click('nav >> text=DAGs');
  await page.waitForSelector('.import-errors:has-text("bad.yaml:3:7 tasks[0].upstream: no task \'nope\'")');
  await page.click('button[aria-label="Trigger ui_etl"]');
  await page.fill('#conf-ui_etl', '{"rows": 3');
  await page.click('form.trigger button[type=submit]');
  await page.waitForSelector('#conf-err-ui_etl:has-text("Not JSON")');
  await page.fill('#conf-ui_etl', '[1, 2]');
  await page.click('form.trigger button[type=submit]');
  await page.waitForSelector('#conf-err-ui_etl:has-text("JSON object")');
  await page.fill('#conf-ui_etl', '{"rows": 3}');
  await page.click('form.trigger button[type=submit]');
  await page.waitForSelector('.flash:has-text("Triggered")', { timeout: T });
  const etlRun = (await page.textContent('.flash')).replace('Triggered ', '').trim();
  result({ etl_run: etlRun });
  await shot(page, 'dags');

  // 4. The grid goes green without a reload (the live refresh).
  await page.click('a[href="#/dags/ui_etl"]');
  await page.waitForSelector('#grid table.grid');
  await page.waitForFunction(() => {
    const cells = [...document.querySelectorAll('#grid tbody a[data-state]')];
    return cells.length === 5 && cells.every((c) => c.dataset.state === 'success');
  }, null, { timeout: T, polling: 200 });
  const title = await page.getAttribute('#grid tbody tr:first-child a', 'title');
  assert.match(title, /extract in .*: success, try 1/);
  await page.waitForSelector('#graph svg a.node.st-success >> nth=4');
  const def = JSON.parse(await page.textContent('#definition'));
  assert.equal(def.dag_id, 'ui_etl');
  assert.equal(def.tasks.length, 5);
  await shot(page, 'dag-grid');
  // The README's picture (docs/ui-dag.png is a copy of it).
  await page.screenshot({ path: path.join(SHOTS, 'ui-dag-small.png'), clip: { x: 0, y: 0, width: 960, height: 640 } });

  // 5. A failed task: its log, then clear it and see the rerun succeed.
  await page.click('nav >> text=DAGs');
  await page.click('button[aria-label="Trigger ui_flaky"]');
  await page.click('form.trigger button[type=submit]');
  await page.waitForSelector('.flash:has-text("Triggered")', { timeout: T });
  const flakyRun = (await page.textContent('.flash')).replace('Triggered ', '').trim();
  result({ flaky_run: flakyRun });
  await page.click('a[href="#/dags/ui_flaky"]');
  await page.waitForSelector('#grid tbody a[data-state="failed"]', { timeout: T });
  await page.click('#grid tbody a[data-state="failed"]');
  await page.waitForSelector('#log:has-text("boom: input missing")', { timeout: T });
  assert.match(await page.textContent('#log-where'), /^Location: file:\/\/.*attempt=1\.log/);
  await page.waitForSelector('tr[data-try="1"]:has-text("failed")');
  await shot(page, 'task-log');
  fs.writeFileSync(MARKER, 'ok\n');
  await page.click('button[aria-label="Clear fetch"]');
  await page.waitForSelector('#ti-state:has-text("success")', { timeout: T });
  await page.waitForSelector('tr[data-try="2"]:has-text("success")', { timeout: T });
  await page.waitForSelector('#log:has-text("input found, try 2")', { timeout: T });
  assert.ok(!(await page.textContent('#log')).includes('boom'), 'try 2 shows try 1\'s log');
  await shot(page, 'task-rerun');
  await page.click('button[aria-label="Mark fetch failed"]');
  await page.waitForSelector('#ti-state:has-text("failed")', { timeout: T });
  await page.waitForSelector('tr[data-try="2"]:has-text("marked failed")', { timeout: T });

  // 6. Pause ui_etl with the keyboard only.
  await page.click('nav >> text=DAGs');
  await page.waitForSelector('tr[data-dag="ui_etl"]');
  await page.focus('nav >> text=DAGs');
  await tabTo(page, 'Pause ui_etl');
  // A live refresh rebuilds the table; the keyboard focus stays on the button.
  const row = await page.$('tr[data-dag="ui_etl"]');
  await page.waitForFunction((r) => !r.isConnected, row, { timeout: T });
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Pause ui_etl');
  await page.keyboard.press('Enter');
  await page.waitForSelector('tr[data-dag="ui_etl"] td.paused:has-text("paused")', { timeout: T });

  // 7. Drain and resume the worker.
  await page.click('nav >> text=Agents');
  await page.click('button[aria-label="Drain w1"]');
  await page.waitForSelector('tr[data-agent="w1"]:has-text("wanted: drain")', { timeout: T });
  await page.click('button[aria-label="Resume w1"]');
  await page.waitForFunction(() => !document.querySelector('tr[data-agent="w1"]').textContent
    .includes('wanted:'), null, { timeout: T });

  // 8. A cross-site request carrying the cookie but no CSRF token is refused.
  const forged = await page.evaluate(async () => (await fetch('/api/v1/admin/dags/ui_etl/unpause',
    { method: 'POST' })).status);
  assert.equal(forged, 403);

  // 9. The grid of 100 runs x 50 tasks, rendered by the UI's own code.
  const v = await page.evaluate(() => document.querySelector('script[type=module]').src);
  const ms = await page.evaluate(async (src) => {
    const mod = await import(src.replace('app.js', 'dag.js'));
    const states = ['success', 'failed', 'running', 'queued', 'up_for_retry', 'none'];
    const tasks = Array.from({ length: 50 }, (_, i) => ({ task_id: `task_${i}`, upstream: i ? [`task_${i - 1}`] : [] }));
    const runs = Array.from({ length: 100 }, (_, r) => ({
      run_id: `scheduled__2026-01-${String(r).padStart(3, '0')}`, state: 'success', logical_date: '2026-01-01T00:00:00Z',
      tis: Object.fromEntries(tasks.map((t, i) => [t.task_id, [states[(r + i) % 6], 1 + (r % 3)]])),
    }));
    const host = document.createElement('div');
    document.getElementById('main').append(host);
    const times = [];
    for (let i = 0; i < 5; i += 1) times.push(mod.renderGrid(host, 'bench', { tasks, dag_runs: runs }));
    const cells = host.querySelectorAll('tbody a').length;
    host.remove();
    return { times, cells };
  }, v);
  assert.equal(ms.cells, 5000);
  const sorted = [...ms.times].sort((a, b) => a - b);
  note(`grid 100 runs x 50 tasks: first render ${ms.times[0].toFixed(1)} ms, median of 5 `
    + `${sorted[2].toFixed(1)} ms (chromium ${ctx.browser() ? ctx.browser().version() : ''})`);
  result({ grid_ms_first: ms.times[0], grid_ms_median: sorted[2] });

  // 10. Log out: the session is over on the plane too.
  await page.click('#logout');
  await page.waitForSelector('#token');
  const after = await page.evaluate(async () => (await fetch('/api/v1/admin/dags')).status);
  assert.equal(after, 401);

  assert.deepEqual(errors.filter((e) => !/status of 40[13]/.test(e)), []);
  result({ ok: true });
} catch (e) {
  console.log(`FAILED: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  if (ctx) await ctx.close();
}
