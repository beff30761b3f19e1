// Page helpers: drive the client the way a person does (forms, buttons, Enter) and read the
// DOM through the stable data-testids of web/README.md.

import assert from 'node:assert/strict';
import { WAIT, until } from './harness.mjs';

export const tid = (id) => `[data-testid="${id}"]`;

export async function registerUI(page, username, password) {
  await page.locator(tid('register-form')).waitFor();
  await page.fill('#reg-username', username);
  await page.fill('#reg-password', password);
  await page.fill('#reg-password2', password);
  await page.click(tid('register-submit'));
}

export async function loginUI(page, username, password) {
  await page.locator(tid('login-form')).waitFor();
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await page.click(tid('login-submit'));
}

/** Waits until the header shows `username` as the logged-in user and the socket is up. */
export async function expectLoggedIn(page, username) {
  await page.locator(`${tid('current-user')}:text-is("${username}")`).waitFor();
  await expectConnected(page);
}

export async function expectConnected(page) {
  await page.locator(`${tid('connection-status')}[data-state="connected"]`).waitFor();
}

export async function logoutUI(page) {
  await page.click(tid('logout-button'));
  await page.locator(tid('login-form')).waitFor();
}

export async function hashOf(page) {
  return page.evaluate(() => location.hash);
}

export async function waitForHash(page, re, timeout = WAIT) {
  await until(() => hashOf(page), (h) => re.test(h), { timeout, what: `location.hash ~ ${re}` });
}

/** The confirmed messages of the open room, in DOM order. */
export async function messages(page) {
  return page.$$eval(`${tid('message-list')} > ${tid('message')}`, (els) => els.map((e) => ({
    seq: Number(e.dataset.seq),
    author: e.querySelector('[data-testid="message-author"]')?.textContent ?? null,
    text: e.querySelector('[data-testid="message-content"]')?.textContent ?? null,
    state: e.dataset.state,
  })));
}

/** Messages still waiting in the pending list (not acknowledged yet). */
export async function pendingMessages(page) {
  return page.$$eval(`${tid('pending-list')} > ${tid('message')}`, (els) => els.map((e) => ({
    state: e.dataset.state,
    cmid: e.dataset.clientMsgId,
    text: e.querySelector('[data-testid="message-content"]')?.textContent ?? null,
    status: e.querySelector('.msg-status')?.textContent ?? null,
  })));
}

/** Waits until the open room shows exactly `expected` ([{seq, author, text}]) and nothing pending. */
export async function expectMessages(page, expected, { what = 'messages', timeout = WAIT } = {}) {
  // `shown`: the text as rendered, where markdown makes it differ from what was sent.
  const want = expected.map(({ seq, author, text, shown }) => ({ seq, author, text: shown ?? text }));
  let last;
  try {
    last = await until(async () => ({ list: (await messages(page)).map(({ seq, author, text }) => ({ seq, author, text })), pending: await pendingMessages(page) }),
      (v) => v.pending.length === 0 && JSON.stringify(v.list) === JSON.stringify(want), { timeout, what });
  } catch (e) {
    const now = { list: await messages(page), pending: await pendingMessages(page) };
    assert.deepEqual(now.list.map(({ seq, author, text }) => ({ seq, author, text })), want, `${what}: ${e.message}`);
    assert.deepEqual(now.pending, [], `${what}: pending messages left`);
    throw e;
  }
  return last;
}

/** The replies shown in the open thread panel, in DOM order. */
export async function threadMessages(page) {
  return page.$$eval(`${tid('thread-replies')} > ${tid('message')}`, (els) => els.map((e) => ({
    seq: Number(e.dataset.seq),
    author: e.querySelector('[data-testid="message-author"]')?.textContent ?? null,
    text: e.querySelector('[data-testid="message-content"]')?.textContent ?? null,
  })));
}

/** Waits until the thread panel shows exactly `expected` ([{seq, author, text}]) and nothing pending. */
export async function expectThread(page, expected, { what = 'thread replies', timeout = WAIT } = {}) {
  const want = JSON.stringify(expected.map(({ seq, author, text }) => ({ seq, author, text })));
  await until(async () => ({
    list: await threadMessages(page),
    pending: await page.locator(`${tid('thread-pending-list')} > ${tid('message')}`).count(),
  }), (v) => v.pending === 0 && JSON.stringify(v.list) === want, { timeout, what });
}

/** Types `text` into the composer and sends it with Enter (keyboard only). */
export async function sendUI(page, text) {
  const input = page.locator(tid('composer-input'));
  await input.fill(text);
  await input.press('Enter');
}

/** History as the server stores it (REST, from inside the page: same session). */
export async function serverHistory(page, roomId) {
  return page.evaluate(async (id) => {
    const list = await window.livechat.api.messagesAfter(id, 0, 200);
    return list.map((m) => ({ seq: m.seq, author: m.username, text: m.content, client_msg_id: m.client_msg_id ?? null }));
  }, roomId);
}

export async function myRoomsFromServer(page) {
  return page.evaluate(() => window.livechat.api.myRooms());
}

/** The user's mention notifications on the server: [{seq, read}], by seq. */
export async function mentionsFromServer(page) {
  const list = await page.evaluate(() => window.livechat.api.notifications(100, false));
  return list.filter((n) => n.type === 'MENTION')
    .map((n) => ({ seq: Number(n.payload.seq), read: n.read }))
    .sort((a, b) => a.seq - b.seq);
}

/** The notifications badge in the navigation ('' when hidden). */
export async function notificationBadge(page) {
  return page.evaluate(() => {
    const b = document.querySelector('[data-testid="notif-badge"]');
    return b && !b.hidden ? b.textContent : '';
  });
}

/** The sidebar entry of a room: its unread badge text ('' when hidden). */
export async function sidebarUnread(page, roomId) {
  return page.evaluate((id) => {
    const li = document.querySelector(`[data-testid="room-item"][data-room-id="${CSS.escape(id)}"]`);
    if (!li) return null;
    const b = li.querySelector('[data-testid="unread-count"]');
    return { badge: b && !b.hidden ? b.textContent : '', unread: li.dataset.unread };
  }, roomId);
}
