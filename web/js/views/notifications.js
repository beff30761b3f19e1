// Notifications: live list (join requests, decisions, mentions, replies), mark read, mark all, delete.

import { api } from '../api.js';
import { store } from '../store.js';
import { desktopEnabled, desktopSupported, setDesktop } from '../desktop.js';
import { h, replace, toast, relTime, fullTime } from '../dom.js';
import { displayRoomName } from '../util.js';

function describe(n) {
  const p = n.payload || {};
  const room = displayRoomName(p.room_name, store.me?.username) || 'a room';
  const roomLink = p.room_id ? h('a', { href: `#/room/${encodeURIComponent(p.room_id)}`, class: 'strong' }, room) : h('span', { class: 'strong' }, room);
  switch (n.type) {
    case 'JOIN_REQUEST_CREATED':
      return [h('span', { class: 'strong' }, p.username || 'Someone'), ' asked to join ', roomLink,
        p.message ? h('span', { class: 'notif-quote' }, ` “${p.message}”`) : null];
    case 'JOIN_REQUEST_ACCEPTED':
      return ['Your request to join ', roomLink, ' was accepted.'];
    case 'JOIN_REQUEST_REJECTED':
      return ['Your request to join ', h('span', { class: 'strong' }, room), ' was declined.'];
    case 'ADDED_TO_ROOM':
      return ['A conversation with ', roomLink, ' was opened with you.'];
    case 'MENTION':
      return [h('span', { class: 'strong' }, p.username || 'Someone'), ' mentioned you in ', roomLink,
        p.message ? h('span', { class: 'notif-quote' }, ` “${p.message}”`) : null];
    case 'REPLY':
      return [h('span', { class: 'strong' }, p.username || 'Someone'), p.thread_root_seq ? ' replied in your thread in ' : ' replied to you in ', roomLink,
        p.message ? h('span', { class: 'notif-quote' }, ` “${p.message}”`) : null];
    default:
      return [n.type, p.room_name ? ` · ${p.room_name}` : ''];
  }
}

const ICONS = { JOIN_REQUEST_CREATED: '+', JOIN_REQUEST_ACCEPTED: '✓', JOIN_REQUEST_REJECTED: '✕', MENTION: '@', REPLY: '↩', ADDED_TO_ROOM: '✉' };

export function mountNotifications(main) {
  const offs = [];
  let unreadOnly = false;
  const decided = new Map(); // notification id -> what became of its join request, shown in place of the buttons
  // Per room with join-request notifications: the ids of its requests still pending (asked once
  // per room, and again when a request it has not seen appears); null when it cannot be read.
  const pending = new Map();
  const asked = new Set(); // request ids whose room was asked since they appeared

  async function loadPending(roomId) {
    try {
      const list = await api.roomRequests(roomId);
      pending.set(roomId, new Set(list.map((r) => r.id)));
    } catch {
      pending.set(roomId, null); // no longer the owner, or the room is gone
    }
    draw();
  }
  const list = h('ul', { class: 'notif-list', 'data-testid': 'notif-list', 'aria-live': 'polite' }, h('li', { class: 'muted' }, 'Loading…'));
  const markAll = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'mark-all-read' }, 'Mark all as read');
  const filter = h('input', { type: 'checkbox', id: 'notif-unread-only', 'data-testid': 'notif-unread-only' });
  const summary = h('p', { class: 'muted', 'data-testid': 'notif-summary' });

  markAll.addEventListener('click', async () => {
    markAll.disabled = true;
    try { await store.markAllNotificationsRead(); } catch (ex) { toast(ex.message, 'error'); }
    markAll.disabled = false;
    markAll.focus();
  });
  filter.addEventListener('change', () => { unreadOnly = filter.checked; draw(); });

  function item(n) {
    const read = h('button', { type: 'button', class: 'btn btn-tiny', 'data-testid': 'notif-mark-read' }, 'Mark read');
    const del = h('button', { type: 'button', class: 'btn btn-tiny', 'data-testid': 'notif-delete', 'aria-label': 'Delete notification' }, 'Delete');
    read.addEventListener('click', async () => {
      read.disabled = true;
      try { await store.markNotificationRead(n.id); } catch (ex) { toast(ex.message, 'error'); read.disabled = false; }
    });
    del.addEventListener('click', async () => {
      del.disabled = true;
      const li = del.closest('li');
      const next = li && (li.nextElementSibling || li.previousElementSibling);
      try {
        await store.deleteNotification(n.id);
        (next && next.querySelector('button')) ? next.querySelector('button').focus() : markAll.focus();
      } catch (ex) { toast(ex.message, 'error'); del.disabled = false; }
    });
    const li = h('li', { class: `notif${n.read ? '' : ' notif-unread'}`, 'data-testid': 'notif-item', 'data-id': n.id, 'data-type': n.type, 'data-read': String(!!n.read) },
      h('span', { class: 'notif-icon', 'aria-hidden': 'true' }, ICONS[n.type] || '•'),
      h('div', { class: 'notif-body' },
        h('p', { class: 'notif-text' }, n.read ? null : h('span', { class: 'sr-only' }, 'Unread: '), describe(n)),
        decision(n),
        h('time', { class: 'muted small', datetime: n.created_at, title: fullTime(n.created_at) }, relTime(n.created_at))),
      h('div', { class: 'notif-actions' }, n.read ? null : read, del));
    // Following a link in an unread notification marks it read.
    li.addEventListener('click', (e) => {
      if (!n.read && e.target.closest && e.target.closest('a')) store.markNotificationRead(n.id).catch(() => {});
    });
    return li;
  }

  /** Accept / Decline on a join request's notification (for the room's owner), or its outcome. */
  function decision(n) {
    const requestId = n.payload && n.payload.request_id;
    const roomId = n.payload && n.payload.room_id;
    if (n.type !== 'JOIN_REQUEST_CREATED' || !requestId || !roomId) return null;
    const outcome = (text) => h('p', { class: 'notif-decision small', 'data-testid': 'notif-decision', role: 'status' }, text);
    if (decided.has(n.id)) return outcome(decided.get(n.id));
    if (!asked.has(requestId)) {
      asked.add(requestId);
      loadPending(roomId);
      return null;
    }
    const open = pending.get(roomId);
    if (open === undefined || open === null) return null;
    if (!open.has(requestId)) return outcome('No longer pending.');
    const who = (n.payload && n.payload.username) || 'them';
    const accept = h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-testid': 'notif-accept' }, 'Accept');
    const decline = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'notif-decline' }, 'Decline');
    const decide = async (yes) => {
      accept.disabled = true;
      decline.disabled = true;
      try {
        await api.handleRequest(requestId, yes);
        decided.set(n.id, yes ? `Accepted: ${who} is a member now.` : 'Declined.');
      } catch (ex) {
        // Already decided (here, in the room or in another tab), withdrawn, or the room is gone.
        decided.set(n.id, ex.message);
      }
      if (!n.read) await store.markNotificationRead(n.id).catch(() => {});
      draw();
    };
    accept.addEventListener('click', () => decide(true));
    decline.addEventListener('click', () => decide(false));
    return h('div', { class: 'notif-decide' }, accept, decline);
  }

  function draw() {
    const shown = store.notifications.filter((n) => !unreadOnly || !n.read);
    const focusedId = document.activeElement && document.activeElement.closest && document.activeElement.closest('[data-testid="notif-item"]')?.dataset.id;
    const focusedTestid = document.activeElement && document.activeElement.dataset && document.activeElement.dataset.testid;
    replace(list, shown.length ? shown.map(item) : h('li', { class: 'muted', 'data-testid': 'notif-empty' }, unreadOnly ? 'No unread notifications.' : 'No notifications yet.'));
    summary.textContent = `${store.notifUnread} unread`;
    markAll.disabled = store.notifUnread === 0;
    if (focusedId) {
      const li = list.querySelector(`[data-id="${CSS.escape(focusedId)}"]`);
      const target = li && (li.querySelector(`[data-testid="${focusedTestid}"]`) || li.querySelector('button'));
      if (target) target.focus();
    }
  }

  // Opt-in: mentions as desktop notifications while LiveChat is in the background.
  const desktop = h('input', { type: 'checkbox', id: 'notif-desktop', 'data-testid': 'desktop-notifications', checked: desktopEnabled(store.me.id) });
  const desktopNote = h('span', { class: 'muted small', role: 'status', 'data-testid': 'desktop-notifications-note' });
  desktop.addEventListener('change', async () => {
    const wanted = desktop.checked;
    desktop.disabled = true;
    const on = await setDesktop(store.me.id, wanted);
    desktop.checked = on;
    desktop.disabled = false;
    desktopNote.textContent = wanted && !on ? ' Your browser blocks notifications from this site.' : '';
  });
  const desktopRow = desktopSupported()
    ? h('p', { class: 'check-row' }, h('label', { for: 'notif-desktop', class: 'check' }, desktop, ' Desktop notifications for mentions while LiveChat is in the background'), desktopNote)
    : null;

  main.appendChild(h('div', { class: 'page' },
    h('div', { class: 'page-head' },
      h('h1', {}, 'Notifications'),
      h('div', { class: 'btn-row' },
        h('label', { for: 'notif-unread-only', class: 'check' }, filter, ' Unread only'),
        markAll)),
    desktopRow,
    summary,
    list));

  offs.push(store.on('notifications', () => { if (store.notifLoaded) draw(); }));
  store.loadNotifications().catch((ex) => replace(list, h('li', { class: 'inline-error', role: 'alert' }, ex.message)));
  return () => offs.forEach((f) => f());
}
