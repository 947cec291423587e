// The web console in a real browser: Debian's headless Chromium, driven by
// playwright-core, each user in its own browser context presenting its own
// certificate from a PKCS#12 file, as a browser holding an imported
// certificate would. Run by tests/e2e/browser.rs, which starts the
// federation and passes its address and the files in the environment.
// Prints "ok <journey>" per journey; any failure exits non-zero.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env("CONSOLE_URL");
const password = env("P12_PASSWORD");
const personId = env("PERSON_ID");
const shots = process.env.SCREENSHOTS || "";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

// One browser profile holding one certificate. The server's certificate is
// issued by the federation CA, which this fresh profile does not trust.
async function profile(p12, locale = "zh-CN") {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    locale,
    viewport: { width: 1280, height: 900 },
    clientCertificates: [{ origin: url, pfxPath: p12, passphrase: password }],
  });
  return context.newPage();
}

async function shot(page, name) {
  if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

async function signIn(page, name) {
  await page.goto(`${url}/`);
  assert.match(page.url(), /\/signin$/, "a first visit asks for a name");
  await page.fill("input[name=user]", name);
  await Promise.all([page.waitForURL(`${url}/`), page.click("form[action='/signin'] button")]);
  assert.ok((await page.textContent("header .who")).includes(name));
}

async function download(page, click) {
  const [file] = await Promise.all([page.waitForEvent("download"), click()]);
  return readFileSync(await file.path(), "utf8");
}

const caseworker = await profile(env("CASEWORKER_P12"));
const owner = await profile(env("OWNER_P12"));
const bureau = await profile(env("BUREAU_P12"));

// 1. The caseworker's lookup: the check character as it is typed, then
//    the answer grouped by department, printed and downloaded.
await signIn(caseworker, "王五");
await caseworker.goto(`${url}/lookup`);
const wrong = personId.slice(0, 17) + (personId[17] === "0" ? "1" : "0");
await caseworker.locator("#key").pressSequentially(wrong);
assert.equal(await caseworker.getAttribute("#key-hint", "class"), "hint bad");
await caseworker.fill("#key", "");
await caseworker.locator("#key").pressSequentially(personId);
assert.equal(await caseworker.getAttribute("#key-hint", "class"), "hint ok");
await caseworker.fill("input[name=purpose]", "低保申请人财产核查");
await Promise.all([caseworker.waitForURL(`${url}/lookup`), caseworker.click("form.lookup button[type=submit]")]);
const statuses = await caseworker.locator(".dataset").evaluateAll((els) => els.map((e) => e.dataset.status));
assert.ok(statuses.length >= 2 && statuses.every((s) => s === "ok"), `statuses ${statuses}`);
const lookupCsv = await download(caseworker, () => caseworker.click("button[data-action=csv]"));
assert.ok(lookupCsv.includes("vehicle-admin/vehicles"), lookupCsv.slice(0, 300));
await shot(caseworker, "lookup");
console.log("ok caseworker lookup");

// 2. A request, approved by the owner in another browser profile.
await caseworker.goto(`${url}/datasets/tax/declarations`);
await caseworker.fill("form.request input[name=purpose]", "低保申请人收入核查");
await caseworker.fill("form.request input[name=basis]", "社会救助暂行办法");
await Promise.all([caseworker.waitForURL(`${url}/requests`), caseworker.click("form.request button")]);
assert.ok((await caseworker.content()).includes("待审批"));
await signIn(owner, "赵六");
await owner.goto(`${url}/pending`);
await shot(owner, "pending");
await owner.click("table a:has-text('审批')");
await Promise.all([owner.waitForURL(`${url}/pending`), owner.click("form.approve button[type=submit]")]);
await caseworker.goto(`${url}/requests`);
assert.ok((await caseworker.content()).includes("已批准"), "the requester sees the grant");
console.log("ok request approved by the owner");

// 3. A query previewed, then downloaded as CSV.
await caseworker.goto(`${url}/query/vehicle-admin/vehicles`);
await caseworker.fill("form.query input[name=purpose]", "车辆核查");
await caseworker.fill("form.query input[name=limit]", "5");
await caseworker.click("form.query button:has-text('预览')");
assert.equal(await caseworker.locator("table tbody tr").count(), 5);
await caseworker.fill("form.query input[name=limit]", "");
const queryCsv = await download(caseworker, () => caseworker.click("form.query button:has-text('下载 CSV')"));
const lines = queryCsv.trim().split("\n");
assert.ok(lines[0].includes("plate_no") && lines.length > 10, `${lines.length} lines`);
console.log("ok query downloaded as CSV");

// 4. The performance report, and the catalog and members for the record.
// The bureau too signs in with a name before anything else.
await signIn(bureau, "孙八");
await bureau.goto(`${url}/report`);
assert.ok((await bureau.locator("figure.chart svg rect.bar").count()) > 0, "bars are drawn");
assert.ok((await bureau.textContent("header .who")).includes("数据局运维"));
await shot(bureau, "report");
await bureau.goto(`${url}/members`);
await shot(bureau, "members");
await caseworker.goto(`${url}/catalog?q=${encodeURIComponent("车辆")}`);
await shot(caseworker, "catalog");
console.log("ok performance report");

// 5. A page on another origin that holds a valid token posts a change:
// the console refuses it (the browser marks it cross-site), and nothing
// changes.
const token = await bureau.getAttribute("input[name=csrf]", "value");
assert.ok(token && token.length === 64, "a signed-in page carries its session's token");
const attacker = await bureau.context().newPage();
await attacker.setContent(`<form method="post" action="${url}/members">
  <input name="csrf" value="${token}"><input name="id" value="evil-dept">
  <input name="display_name" value="evil"></form>`);
const [forged] = await Promise.all([
  attacker.waitForNavigation(),
  attacker.evaluate(() => document.forms[0].submit()),
]);
assert.equal(forged.status(), 403, "a cross-site form is refused");
await bureau.goto(`${url}/members`);
assert.ok(!(await bureau.content()).includes("evil-dept"), "no member was added");
// CSV downloads built in the page neutralise formula cells too.
assert.equal(await bureau.evaluate(() => safeCell("=HYPERLINK(\"http://x\")")), "'=HYPERLINK(\"http://x\")");
assert.equal(await bureau.evaluate(() => safeCell("@SUM(1+1)")), "'@SUM(1+1)");
assert.equal(await bureau.evaluate(() => safeCell("-12.5")), "-12.5");
console.log("ok cross-site changes refused");

await browser.close();
