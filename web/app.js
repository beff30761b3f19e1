// LiveChat web client: boot, hash routing, header, sidebar (my rooms) and global notices.

import { api, apiEvents } from './js/api.js';
import { store } from './js/store.js';
import { h, s as svgEl, clear, toast } from './js/dom.js';
import { mountLogin, mountRegister } from './js/views/auth.js';
import { mountHub } from './js/views/hub.js';
import { mountRoom } from './js/views/room.js';
import { mountNotifications } from './js/views/notifications.js';
import { mountAnalytics } from './js/views/analytics.js';
import { notifyDesktop } from './js/desktop.js';
import { visibilityOf, displayRoomName } from './js/util.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const sessionBox = document.getElementById('session-box');
const sidebar = document.getElementById('sidebar');
const roomList = document.getElementById('room-list');
const roomListEmpty = document.getElementById('room-list-empty');
const notifBadge = document.getElementById('notif-badge');
const connBtn = document.getElementById('connection-status');
const meName = document.getElementById('me-name');

const ROUTES = [
  { name: 'login', re: /^\/login$/, mount: mountLogin, open: true },
  { name: 'register', re: /^\/register$/, mount: mountRegister, open: true },
  { name: 'rooms', re: /^\/(rooms)?$/, mount: mountHub },
  { name: 'room', re: /^\/room\/([^/?#]+)$/, mount: mountRoom },
  { name: 'notifications', re: /^\/notifications$/, mount: mountNotifications },
  { name: 'analytics', re: /^\/analytics$/, mount: mountAnalytics },
];

let cleanup = null;
let returnTo = null;
let loginNotice = null;
let booted = false;

function navigate(hash, { replace = false } = {}) {
  if (replace) {
    history.replaceState(null, '', hash);
    render();
  } else if (location.hash === hash) {
    render();
  } else {
    location.hash = hash;
  }
}

function currentPath() {
  let p = location.hash.replace(/^#/, '');
  if (!p) p = '/rooms';
  try { p = decodeURI(p); } catch { /* keep raw */ }
  return p;
}

function render() {
  if (!booted) return;
  const path = currentPath();
  let route = ROUTES.find((r) => r.re.test(path));
  if (!route) {
    navigate('#/rooms', { replace: true });
    return;
  }
  if (!store.me && !route.open) {
    returnTo = '#' + path;
    navigate('#/login', { replace: true });
    return;
  }
  if (store.me && route.open) {
    navigate('#/rooms', { replace: true });
    return;
  }
  const params = path.match(route.re).slice(1);
  if (route.name === 'room') rememberRoom(params[0]);
  if (cleanup) {
    try { cleanup(); } catch (e) { console.error(e); }
    cleanup = null;
  }
  clear(main);
  document.body.dataset.route = route.name;
  for (const a of nav.querySelectorAll('a[data-nav]')) {
    const active = a.dataset.nav === route.name || (route.name === 'room' && a.dataset.nav === 'rooms');
    if (active) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const ctx = { navigate, loginNotice: route.name === 'login' ? takeLoginNotice() : null, onLoggedIn };
  const before = document.activeElement;
  cleanup = route.mount(main, params, ctx) || null;
  // Move focus into the new view for keyboard and screen-reader users, unless the view did.
  if (document.activeElement === before || document.activeElement === document.body) {
    const heading = main.querySelector('h1');
    if (heading) { heading.setAttribute('tabindex', '-1'); heading.focus({ preventScroll: true }); }
    else main.focus({ preventScroll: true });
  }
  updateSidebar();
}

// ---- landing: a returning user goes back to the room they were in -----------------------

const lastRoomKey = (userId) => `livechat.lastRoom.${userId}`;

function rememberRoom(roomId) {
  try { localStorage.setItem(lastRoomKey(store.me.id), roomId); } catch { /* storage off: land on Rooms */ }
}

const roomRoute = (id) => `#/room/${encodeURIComponent(id)}`;

/** Where a user lands with no link to follow: their last room while still a member, else Rooms. */
function landing() {
  let id = null;
  try { id = store.me && localStorage.getItem(lastRoomKey(store.me.id)); } catch { /* storage off */ }
  return id && store.rooms.has(id) ? roomRoute(id) : '#/rooms';
}

function takeLoginNotice() {
  const n = loginNotice;
  loginNotice = null;
  return n;
}

// ---- session ---------------------------------------------------------------------------

async function onLoggedIn(me) {
  await startSession(me);
  const target = returnTo && !/^#\/(login|register)/.test(returnTo) ? returnTo : landing();
  returnTo = null;
  navigate(target, { replace: true });
}

async function startSession(me) {
  meName.textContent = me.username;
  nav.hidden = false;
  sessionBox.hidden = false;
  sidebar.hidden = false;
  document.body.classList.add('authed');
  await store.start(me);
}

function endSession(notice) {
  store.stop();
  nav.hidden = true;
  sessionBox.hidden = true;
  sidebar.hidden = true;
  document.body.classList.remove('authed');
  meName.textContent = '';
  loginNotice = notice || null;
  updateTitle();
}

function sessionLost() {
  if (!store.me) return;
  if (!/^#\/(login|register)/.test(location.hash)) returnTo = location.hash || '#/rooms';
  endSession('Your session has ended. Please log in again.');
  navigate('#/login', { replace: true });
}

document.getElementById('logout-btn').addEventListener('click', async () => {
  returnTo = null;
  try { await api.logout(); } catch { /* logged out locally anyway */ }
  store.stop({ forgetPending: true });
  endSession('You are logged out.');
  navigate('#/login', { replace: true });
});

document.getElementById('delete-account-btn').addEventListener('click', async () => {
  const password = window.prompt(
    'Deleting your account takes you out of every room, deletes the rooms you own and erases '
    + 'every message you wrote, for good. Enter your password to confirm.');
  if (!password) return;
  try {
    await api.deleteAccount(password);
  } catch (err) {
    window.alert(err.messages ? err.messages.join('\n') : String(err));
    return;
  }
  returnTo = null;
  store.stop({ forgetPending: true });
  endSession('Your account was deleted.');
  navigate('#/login', { replace: true });
});

apiEvents.on('unauthorized', sessionLost);
store.on('session-ended', sessionLost);

// ---- header: connection status and notification badge ---------------------------------

let connTimer = null;
function updateConn() {
  const st = store.socket.status;
  const text = connBtn.querySelector('.conn-text');
  let label;
  let state = st;
  clearTimeout(connTimer);
  switch (st) {
    case 'connected': label = 'Connected'; break;
    case 'connecting': label = 'Connecting…'; break;
    case 'reconnecting': {
      const secs = Math.max(0, Math.ceil((store.socket.nextRetryAt - Date.now()) / 1000));
      label = secs > 0 ? `Reconnecting in ${secs} s…` : 'Reconnecting…';
      connTimer = setTimeout(updateConn, 1000);
      break;
    }
    case 'offline': label = 'Offline'; break;
    default: label = 'Not connected'; state = 'offline';
  }
  text.textContent = label;
  connBtn.dataset.state = state;
  connBtn.setAttribute('aria-label', `Connection: ${label}${st === 'connected' ? '' : ' (activate to retry now)'}`);
}
connBtn.addEventListener('click', () => store.socket.reconnectNow());
store.on('status', updateConn);

function updateBadge() {
  const n = store.notifUnread;
  notifBadge.textContent = n > 99 ? '99+' : String(n);
  notifBadge.hidden = n <= 0;
  notifBadge.setAttribute('aria-label', `${n} unread`);
  updateTitle();
}
store.on('notifications', updateBadge);

function updateTitle() {
  const n = store.me ? store.totalUnread() : 0;
  const k = store.me ? store.notifUnread : 0;
  document.title = `${n + k > 0 ? `(${n + k}) ` : ''}LiveChat`;
}

// ---- sidebar: my rooms with unread counts ----------------------------------------------

const items = new Map(); // room id -> {li, a, name, badge, lock}

function lockIcon() {
  return svgEl('svg', { viewBox: '0 0 16 16', width: 12, height: 12, 'aria-hidden': 'true', class: 'icon' },
    svgEl('rect', { x: 2.5, y: 7, width: 11, height: 8, rx: 1.5, fill: 'currentColor' }),
    svgEl('path', { d: 'M5 7V5a3 3 0 0 1 6 0v2', fill: 'none', stroke: 'currentColor', 'stroke-width': 1.8 }));
}

/** A person's outline: the mark of a direct conversation. */
function personIcon() {
  return svgEl('svg', { viewBox: '0 0 16 16', width: 12, height: 12, 'aria-hidden': 'true', class: 'icon' },
    svgEl('circle', { cx: 8, cy: 5, r: 3, fill: 'currentColor' }),
    svgEl('path', { d: 'M2 15c0-3.3 2.7-5.5 6-5.5s6 2.2 6 5.5z', fill: 'currentColor' }));
}

function roomItem(room) {
  const name = h('span', { class: 'room-name' });
  const isDirect = visibilityOf(room) === 'direct';
  const lock = h('span', { class: 'room-lock', title: isDirect ? 'Direct conversation' : 'Private room' }, isDirect ? personIcon() : lockIcon());
  const badge = h('span', { class: 'badge', 'data-testid': 'unread-count', hidden: true });
  const a = h('a', { href: roomRoute(room.id), class: 'room-link' }, lock, name, badge);
  const li = h('li', { 'data-testid': 'room-item', 'data-room-id': room.id }, a);
  return { li, a, name, badge, lock };
}

function updateSidebar() {
  if (!store.me) return;
  const rooms = [...store.rooms.values()].sort((a, b) => a.name.localeCompare(b.name, undefined, { sensitivity: 'base' }));
  const ids = new Set(rooms.map((r) => r.id));
  for (const [id, it] of items) if (!ids.has(id)) { it.li.remove(); items.delete(id); }
  let prev = null;
  for (const r of rooms) {
    let it = items.get(r.id);
    if (!it) { it = roomItem(r); items.set(r.id, it); }
    it.name.textContent = r.name;
    it.lock.hidden = !!r.is_public;
    const n = store.unread(r.id);
    it.badge.textContent = n > 99 ? '99+' : String(n);
    it.badge.hidden = n <= 0;
    it.li.dataset.unread = String(n);
    const kind = visibilityOf(r) === 'direct' ? ' (direct)' : r.is_public ? '' : ' (private)';
    it.a.setAttribute('aria-label', `${r.name}${kind}${n > 0 ? `, ${n} unread` : ''}`);
    it.li.dataset.direct = String(visibilityOf(r) === 'direct');
    const active = r.id === store.activeRoomId && document.body.dataset.route === 'room';
    if (active) it.a.setAttribute('aria-current', 'page'); else it.a.removeAttribute('aria-current');
    it.li.classList.toggle('has-unread', n > 0);
    // Keep DOM order without moving nodes that are already in place (keeps focus).
    const expectedPrev = prev ? prev.nextSibling : roomList.firstChild;
    if (expectedPrev !== it.li) roomList.insertBefore(it.li, prev ? prev.nextSibling : roomList.firstChild);
    prev = it.li;
  }
  roomListEmpty.hidden = !store.roomsLoaded || rooms.length > 0;
  updateTitle();
}

let sidebarQueued = false;
store.on('rooms', () => {
  if (sidebarQueued) return;
  sidebarQueued = true;
  requestAnimationFrame(() => { sidebarQueued = false; updateSidebar(); });
});

// ---- global notices --------------------------------------------------------------------

store.on('room-gone', ({ roomId, reason, name }) => {
  const label = name ? `“${name}”` : 'a room';
  const quiet = store.quietGone.has(roomId);
  store.quietGone.delete(roomId);
  if (!quiet) {
    const text = {
      removed: `You were removed from ${label} by its owner.`,
      left: `You left ${label}.`,
      room_deleted: `The room ${label} was deleted.`,
      disconnected: `The owner of ${label} disconnected you from its live stream.`,
    }[reason] || `You are no longer subscribed to ${label}.`;
    toast(text, reason === 'left' ? 'info' : 'error', 9000);
  }
  if (reason !== 'disconnected' && document.body.dataset.route === 'room' && store.activeRoomId === roomId) {
    navigate('#/rooms');
  }
});

// A direct message while the tab is hidden: a desktop notification, if the user turned them on.
store.on('event', (f) => {
  if (f.event_type !== 'MESSAGE_CREATED' || f.replayed || !store.me) return;
  const r = store.rooms.get(f.room_id);
  const p = f.payload || {};
  if (!r || visibilityOf(r) !== 'direct' || p.user_id === store.me.id) return;
  notifyDesktop(store.me.id, {
    title: `${p.username || 'Someone'} (direct message)`,
    body: (p.message || '').slice(0, 140),
    tag: p.message_id,
    onOpen: () => navigate(roomRoute(r.id)),
  });
});

store.on('notification', (n) => {
  const p = n.payload || {};
  const room = p.room_name ? `“${displayRoomName(p.room_name, store.me?.username)}”` : 'a room';
  const roomHash = p.room_id ? roomRoute(p.room_id) : null;
  let text = null;
  let open = null; // where clicking the toast leads
  switch (n.type) {
    case 'JOIN_REQUEST_CREATED': text = `${p.username || 'Someone'} asked to join ${room}.`; open = '#/notifications'; break;
    case 'JOIN_REQUEST_ACCEPTED': text = `Your request to join ${room} was accepted.`; open = roomHash; break;
    case 'JOIN_REQUEST_REJECTED': text = `Your request to join ${room} was declined.`; break;
    case 'ADDED_TO_ROOM': text = `A conversation with ${room} was opened with you.`; open = roomHash; break;
    case 'MENTION':
    case 'REPLY':
      if (!(store.activeRoomId === p.room_id && document.body.dataset.route === 'room' && document.visibilityState === 'visible')) {
        text = `${p.username || 'Someone'} ${n.type === 'MENTION' ? 'mentioned you' : 'replied to you'} in ${room}.`;
        open = roomHash;
      }
      break;
    default: break;
  }
  if (text && document.body.dataset.route !== 'notifications') {
    toast(text, 'info', 6000, open ? { onOpen: () => navigate(open) } : {});
  }
  if ((n.type === 'MENTION' || n.type === 'REPLY') && store.me) {
    notifyDesktop(store.me.id, {
      title: `${p.username || 'Someone'} ${n.type === 'MENTION' ? 'mentioned you' : 'replied to you'} in ${room}`,
      body: p.message || '',
      tag: n.id,
      onOpen: roomHash ? () => navigate(roomHash) : null,
    });
  }
});

// ---- boot ------------------------------------------------------------------------------

window.addEventListener('hashchange', render);

async function boot() {
  // Path-style links (/room/<id>) become hash routes.
  if (!location.hash && location.pathname.length > 1) {
    history.replaceState(null, '', '/#' + location.pathname + location.search);
  }
  updateConn();
  let me = null;
  try {
    me = await api.me();
  } catch (err) {
    if (err.status !== 401) {
      // Server unreachable: show the login page with the reason; it retries on submit.
      loginNotice = err.message;
    }
  }
  booted = true;
  if (me) {
    await startSession(me);
    if (/^#?\/?$/.test(location.hash)) history.replaceState(null, '', landing());
  }
  render();
}

boot();

// For debugging and end-to-end tests (e.g. dropping the socket on purpose).
window.livechat = { store, api };
