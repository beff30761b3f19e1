// A room: history with scroll-back, live messages, composer with pending sends, typing,
// members with presence, read markers, threads (a side panel), owner tools, share link, leave.
// Non-members see a join button (public room) or a join-request form (private room).

import { api } from '../api.js';
import { store } from '../store.js';
import { h, replace, clear, errorBox, showError, hideError, busy, toast, shortTime, fullTime, relTime, confirmButton, replaceText } from '../dom.js';
import { visibilityOf, visibilityLabel, applyIsPublic } from '../util.js';
import { renderMarkup } from '../markup.js';
import { mentionSuggest } from '../suggest.js';
import { emojiPicker, reactionPicker } from '../emoji.js';

const PAGE = 50;
const THREAD_PAGE = 50;
const MAX_CHARS = 4000;
/** Files one message may carry (the server's max_files_per_message). */
const MAX_FILES = 10;
/** Images shown in the page; any other file is a download (as the server serves them). */
const INLINE_IMAGES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];

/** "12 KB", "3.4 MB". */
function fileSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${Math.round(n / 1024)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
const TYPING_TTL_MS = 4000;
const TYPING_RESEND_MS = 3000;
const TYPING_IDLE_MS = 3000;

export function mountRoom(main, params, ctx) {
  const roomId = params[0];
  let disposed = false;
  let destroyChat = null;
  const offs = [];
  store.setActiveRoom(roomId);

  const loading = h('p', { class: 'muted center pad', role: 'status' }, 'Loading room…');
  main.appendChild(loading);

  const rerender = () => ctx.navigate(`#/room/${encodeURIComponent(roomId)}`);

  (async () => {
    await store.ensureRooms().catch(() => {});
    let room;
    try {
      room = await api.getRoom(roomId);
    } catch (ex) {
      if (disposed) return;
      clear(main);
      if (ex.status === 403) offs.push(renderPrivateGate(main, roomId, rerender));
      else if (ex.status === 404 || ex.status === 422) renderNotFound(main);
      else renderLoadError(main, ex, rerender);
      return;
    }
    if (disposed) return;
    if (!store.isMember(roomId)) await store.loadRooms().catch(() => {});
    if (disposed) return;
    clear(main);
    if (!store.isMember(roomId)) {
      if (room.is_public) renderPublicGate(main, room, rerender);
      else offs.push(renderPrivateGate(main, roomId, rerender, room));
      return;
    }
    destroyChat = openChat(main, room, ctx);
  })();

  return () => {
    disposed = true;
    if (destroyChat) destroyChat();
    offs.forEach((f) => f && f());
    if (store.activeRoomId === roomId) store.setActiveRoom(null);
  };
}

// ---- non-member pages ------------------------------------------------------------------

function renderNotFound(main) {
  main.appendChild(h('div', { class: 'page narrow', 'data-testid': 'room-not-found' },
    h('h1', {}, 'Room not found'),
    h('p', {}, 'This room does not exist or was deleted.'),
    h('p', {}, h('a', { href: '#/rooms', class: 'btn' }, 'Back to rooms'))));
}

function renderLoadError(main, ex, retry) {
  const btn = h('button', { type: 'button', class: 'btn' }, 'Try again');
  btn.addEventListener('click', retry);
  main.appendChild(h('div', { class: 'page narrow' },
    h('h1', {}, 'Could not open the room'),
    h('p', { class: 'inline-error', role: 'alert' }, ex.message),
    h('p', {}, btn, ' ', h('a', { href: '#/rooms', class: 'btn' }, 'Back to rooms'))));
}

function renderPublicGate(main, room, rerender) {
  const err = errorBox('join-error');
  const btn = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'join-room' }, 'Join room');
  btn.addEventListener('click', async () => {
    hideError(err);
    btn.disabled = true;
    try {
      await api.requestJoin(room.id, null);
    } catch (ex) {
      if (!(ex.status === 400 && /already in this room/i.test(ex.message))) {
        showError(err, ex);
        btn.disabled = false;
        return;
      }
    }
    await store.loadRooms().catch(() => {});
    toast(`You joined “${room.name}”.`, 'success');
    rerender();
  });
  const n = room.participants_count ?? 0;
  main.appendChild(h('div', { class: 'page narrow', 'data-testid': 'room-gate' },
    h('h1', {}, room.name),
    room.description ? h('p', { class: 'room-desc' }, room.description) : null,
    h('p', { class: 'muted' }, `Public room · ${n} member${n === 1 ? '' : 's'}`),
    h('p', {}, 'You are not a member of this room yet.'),
    err,
    h('p', {}, btn, ' ', h('a', { href: '#/rooms', class: 'btn' }, 'Back to rooms'))));
  btn.focus();
}

/** "This room is private — request to join" with a message box. Returns a cleanup. */
function renderPrivateGate(main, roomId, rerender, room = null) {
  const wrap = h('div', { class: 'page narrow', 'data-testid': 'private-room-gate' });
  main.appendChild(wrap);
  const draw = () => {
    const pending = store.myRequests.find((r) => r.room_id === roomId);
    const title = room ? room.name : (pending ? pending.room_name : 'Private room');
    if (pending) {
      replace(wrap,
        h('h1', {}, title),
        h('p', { class: 'notice', role: 'status', 'data-testid': 'request-pending' },
          `Your request to join “${pending.room_name}” is waiting for the owner. You will be notified of the decision.`),
        pending.message ? h('p', { class: 'muted' }, `Your message: “${pending.message}”`) : null,
        h('p', {}, h('a', { href: '#/rooms', class: 'btn' }, 'Back to rooms')));
      return;
    }
    const err = errorBox('join-request-error');
    const msg = h('textarea', { id: 'join-message', rows: 3, maxlength: 500, 'data-testid': 'join-request-message', placeholder: 'Hi! I would like to join because…' });
    const form = h('form', { class: 'form', 'data-testid': 'join-request-form' },
      err,
      h('div', { class: 'field' }, h('label', { for: 'join-message' }, 'Message to the owner (optional)'), msg),
      h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'join-request-submit' }, 'Request to join'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      hideError(err);
      try {
        await busy(form, () => api.requestJoin(roomId, msg.value.trim() || null));
      } catch (ex) {
        if (ex.status === 400 && /already in this room/i.test(ex.message)) {
          await store.loadRooms().catch(() => {});
          rerender();
          return;
        }
        if (!(ex.status === 400 && /already exists/i.test(ex.message))) {
          showError(err, ex);
          msg.focus();
          return;
        }
      }
      await store.loadMyRequests().catch(() => {});
      if (store.isMember(roomId)) { rerender(); return; }
      if (!store.myRequests.some((r) => r.room_id === roomId)) {
        // A public room: joined at once.
        await store.loadRooms().catch(() => {});
        rerender();
        return;
      }
      toast('Join request sent. The owner has been notified.', 'success');
      draw();
    });
    replace(wrap,
      h('h1', {}, title),
      h('p', { class: 'notice', 'data-testid': 'private-room-notice' }, 'This room is private — request to join'),
      h('p', { class: 'muted' }, 'The owner will see your request and your message, and can accept or reject it.'),
      form);
    msg.focus();
  };
  draw();
  const offs = [
    store.on('requests', () => { if (!wrap.contains(document.activeElement) || store.myRequests.some((r) => r.room_id === roomId)) draw(); }),
    store.on('notification', (n) => {
      if (n.payload && n.payload.room_id === roomId && n.type === 'JOIN_REQUEST_ACCEPTED') {
        store.loadRooms().then(rerender).catch(() => {});
      } else if (n.payload && n.payload.room_id === roomId && n.type === 'JOIN_REQUEST_REJECTED') {
        store.loadMyRequests().then(() => {
          draw();
          wrap.insertBefore(h('p', { class: 'form-error', role: 'alert' }, 'Your previous request was declined.'), wrap.children[1] || null);
        }).catch(() => {});
      }
    }),
  ];
  return () => offs.forEach((f) => f());
}

// ---- the chat --------------------------------------------------------------------------

const newMessages = (n) => `${n} new message${n === 1 ? '' : 's'}`;

/** "Today", "Yesterday", or the date ("Monday, 23 November"; the year when not this one). */
function dayLabel(d) {
  const today = new Date();
  const yesterday = new Date(today);
  yesterday.setDate(today.getDate() - 1);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
  const opts = { weekday: 'long', day: 'numeric', month: 'long' };
  if (d.getFullYear() !== today.getFullYear()) opts.year = 'numeric';
  return d.toLocaleDateString([], opts);
}

function renderContent(content, meName) {
  return renderMarkup(content, meName);
}

function openChat(main, initialRoom, ctx) {
  let room = { ...initialRoom };
  const roomId = room.id;
  const socket = store.socket;
  const me = store.me;
  const offs = [];
  let destroyed = false;

  // A direct conversation has no owner's powers: nobody changes, moderates or removes.
  const direct = () => visibilityOf(room) === 'direct';
  const isOwner = () => store.isOwner(room) && !direct();

  // ---- state
  const bySeq = new Map(); // seq -> {msg, el}
  const seqs = []; // sorted confirmed seqs
  const byId = new Map(); // message id -> seq (timeline messages and thread replies)
  const replies = new Map(); // seq -> {msg, el}: thread replies, kept out of the timeline
  const entry = (seq) => bySeq.get(seq) || replies.get(seq);
  let oldest = 0; // lowest seq of the history pages loaded (thread replies included)
  let newest = 0; // highest seq seen (thread replies included): read markers and gap fill
  const pendingEls = new Map(); // client_msg_id -> el
  let hasOlder = true;
  let loadingOlder = false;
  let ready = false;
  let buffer = [];
  let members = [];
  const online = new Set();
  const typers = new Map(); // user id -> {username, timer}
  let editing = null; // seq being edited
  let thread = null; // the open thread: {root (its seq), rootEntry (when not in the timeline), after, more, loading}

  // ---- header & aside
  const titleEl = h('h1', { class: 'room-title', 'data-testid': 'room-title' }, room.name);
  const visTag = h('span', { class: 'tag', 'data-testid': 'room-visibility' });
  const descEl = h('p', { class: 'room-desc', 'data-testid': 'room-description' });
  // On a phone the two buttons lose their second words, so the room's name has the room.
  const infoToggle = h('button', { type: 'button', class: 'btn btn-small aside-toggle', 'aria-expanded': 'false', 'aria-controls': 'room-aside', 'data-testid': 'toggle-room-info' }, 'Members', h('span', { class: 'wide-only' }, ' & info'));
  const header = h('header', { class: 'room-header' },
    h('a', { href: '#/rooms', class: 'back-link', 'data-testid': 'back-to-rooms', 'aria-label': 'Back to rooms' }, '←', h('span', { class: 'wide-only' }, ' Rooms')),
    h('div', { class: 'room-header-main' }, h('div', { class: 'room-title-row' }, titleEl, visTag), descEl),
    infoToggle);

  const banner = h('div', { class: 'banner', role: 'status', hidden: true, 'data-testid': 'room-banner' });

  // ---- messages
  const olderBtn = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'load-older' }, 'Load older messages');
  const historyTop = h('div', { class: 'history-top' }, olderBtn);
  const list = h('ol', { class: 'message-list', 'data-testid': 'message-list', 'aria-label': `Messages in ${room.name}`, role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions' });
  const pendingList = h('ol', { class: 'message-list pending-list', 'data-testid': 'pending-list', 'aria-label': 'Messages being sent' });
  const emptyNote = h('p', { class: 'muted center empty-note', hidden: true }, 'No messages yet. Say hello!');
  const scroller = h('div', { class: 'msg-scroller', 'data-testid': 'message-scroller', tabindex: '0', 'aria-label': 'Message history' }, historyTop, emptyNote, list, pendingList);
  const jumpBtn = h('button', { type: 'button', class: 'btn btn-small jump-btn', hidden: true, 'data-testid': 'jump-to-latest' }, 'New messages ↓');
  const unreadBtn = h('button', { type: 'button', class: 'btn btn-small unread-jump', hidden: true, 'data-testid': 'jump-to-unread' });
  const typingEl = h('div', { class: 'typing', 'data-testid': 'typing-indicator', 'aria-live': 'polite' });

  // ---- composer
  const input = h('textarea', { id: 'composer-input', class: 'composer-input', rows: 1, maxlength: MAX_CHARS, placeholder: `Message ${room.name}`, 'aria-label': `Message ${room.name}`, 'data-testid': 'composer-input', 'aria-describedby': 'composer-hint' });
  const sendBtn = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'send-button' }, 'Send');
  const composerHint = h('p', { id: 'composer-hint', class: 'composer-hint muted small' }, 'Enter to send · Shift+Enter for a new line');
  const composerErr = h('p', { class: 'inline-error', role: 'alert', hidden: true, 'data-testid': 'composer-error' });
  const suggest = mentionSuggest(input, () => members.map((m) => m.username).filter((n) => n && n !== me.username));
  // The picked emoji goes where the caret is.
  const emoji = emojiPicker((e) => {
    input.focus();
    replaceText(input, input.selectionStart, input.selectionEnd, e);
  });
  // The message the next one replies to (its seq), shown above the composer until sent or dropped.
  let replyTo = null;
  const replyText = h('span', { class: 'reply-bar-text', 'data-testid': 'reply-bar-text' });
  const replyCancel = h('button', { type: 'button', class: 'btn btn-tiny', 'aria-label': 'Cancel reply', 'data-testid': 'reply-cancel' }, '✕');
  const replyBar = h('div', { class: 'reply-bar', hidden: true, 'data-testid': 'reply-bar' }, replyText, replyCancel);
  // Files picked, dropped or pasted: uploaded at once, sent with the next message.
  const fileInput = h('input', { type: 'file', multiple: true, hidden: true, 'data-testid': 'file-input' });
  const attachBtn = h('button', { type: 'button', class: 'btn emoji-btn', 'aria-label': 'Attach files', title: 'Attach files (or drop them here, or paste)', 'data-testid': 'attach-button' }, '📎');
  const tray = h('ul', { class: 'upload-tray', hidden: true, 'aria-label': 'Files to send', 'data-testid': 'upload-tray' });
  const composer = h('form', { class: 'composer', 'data-testid': 'composer' },
    suggest.box, emoji.panel, replyBar, tray, fileInput, h('div', { class: 'composer-row' }, attachBtn, input, emoji.button, sendBtn), composerErr, composerHint);
  const reactions = reactionPicker();

  const chat = h('section', { class: 'chat', 'aria-label': 'Chat' }, banner, unreadBtn, scroller, jumpBtn, typingEl, composer);

  // ---- thread panel (in place of the aside; full screen on a phone)
  const threadTitle = h('h2', { id: 'thread-title', class: 'thread-title', 'data-testid': 'thread-title', tabindex: '-1' });
  const threadClose = h('button', { type: 'button', class: 'btn btn-small', 'aria-label': 'Close thread', title: 'Close thread (Esc)', 'data-testid': 'thread-close' },
    h('span', { class: 'narrow-only', 'aria-hidden': 'true' }, '← Back'), h('span', { class: 'wide-only', 'aria-hidden': 'true' }, '✕'));
  const threadFollow = h('button', { type: 'button', class: 'btn btn-small thread-follow', 'data-testid': 'thread-follow', 'data-following': 'false', hidden: true, title: 'Be told of new replies in this thread' }, 'Follow');
  const threadRoot = h('div', { class: 'thread-root' });
  const threadCount = h('p', { class: 'thread-count', 'data-testid': 'thread-count' });
  const threadList = h('ol', { class: 'message-list thread-list', 'data-testid': 'thread-replies', 'aria-label': 'Replies', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions' });
  const threadMore = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'thread-load-more', hidden: true }, 'Load more replies');
  const threadNote = h('p', { class: 'muted small center', role: 'status', 'data-testid': 'thread-status' });
  const threadPending = h('ol', { class: 'message-list pending-list', 'data-testid': 'thread-pending-list', 'aria-label': 'Replies being sent' });
  const threadScroller = h('div', { class: 'thread-scroller', tabindex: '0', 'aria-label': 'Thread' },
    threadRoot, threadCount, threadList, h('div', { class: 'center' }, threadMore), threadNote, threadPending);
  const threadInput = h('textarea', { id: 'thread-input', class: 'composer-input', rows: 1, maxlength: MAX_CHARS, placeholder: 'Reply in thread', 'aria-label': 'Reply in thread', 'data-testid': 'thread-input' });
  const threadErr = h('p', { class: 'inline-error', role: 'alert', hidden: true, 'data-testid': 'thread-error' });
  const threadForm = h('form', { class: 'composer', 'data-testid': 'thread-composer' },
    h('div', { class: 'composer-row' }, threadInput, h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'thread-send' }, 'Send')), threadErr);
  const threadPanel = h('section', { id: 'thread-panel', class: 'thread-panel', 'aria-labelledby': 'thread-title', hidden: true, 'data-testid': 'thread-panel' },
    h('div', { class: 'thread-head' }, threadTitle, threadFollow, threadClose), threadScroller, threadForm);

  // ---- aside
  const shareUrl = `${location.origin}/#/room/${encodeURIComponent(roomId)}`;
  const shareInput = h('input', { id: 'share-link', readonly: true, value: shareUrl, 'data-testid': 'share-link-input', 'aria-label': 'Share link' });
  const copyBtn = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'copy-share-link' }, 'Copy');
  const shareNote = h('p', { class: 'muted small share-note' });
  const shareSection = h('section', { class: 'aside-section', 'data-testid': 'share-link' },
    h('h2', {}, 'Share'), h('div', { class: 'form-inline' }, shareInput, copyBtn), shareNote);

  const memberCount = h('span', { class: 'muted' });
  const memberList = h('ul', { class: 'member-list', 'data-testid': 'member-list' });
  const membersSection = h('section', { class: 'aside-section' }, h('h2', {}, 'Members ', memberCount), memberList);

  const searchInput = h('input', { type: 'search', id: 'room-search', placeholder: 'Search this room', 'aria-label': `Search ${room.name}`, maxlength: 200, 'data-testid': 'search-input' });
  const searchForm = h('form', { class: 'form-inline', role: 'search', 'data-testid': 'search-form' }, searchInput,
    h('button', { type: 'submit', class: 'btn btn-small', 'data-testid': 'search-submit' }, 'Search'));
  const searchResults = h('ul', { class: 'plain-list pinned-list', 'data-testid': 'search-results', 'aria-live': 'polite' });
  const searchSection = h('section', { class: 'aside-section', 'data-testid': 'search' }, searchForm, searchResults);
  const pinnedList = h('ul', { class: 'plain-list pinned-list', 'data-testid': 'pinned-list' });
  const pinnedSection = h('section', { class: 'aside-section', 'data-testid': 'pinned', hidden: true }, h('h2', {}, 'Pinned'), pinnedList);
  const ownerBox = h('div', { class: 'owner-tools', 'data-testid': 'owner-tools' });
  const leaveBox = h('section', { class: 'aside-section leave-box' });
  const aside = h('aside', { id: 'room-aside', class: 'room-aside', 'aria-label': 'Room details' }, searchSection, ownerBox, pinnedSection, membersSection, shareSection, leaveBox);

  const view = h('div', { class: 'room-view', 'data-testid': 'room-view', 'data-room-id': roomId },
    header, h('div', { class: 'room-body' }, chat, threadPanel, aside), reactions.panel);
  main.appendChild(view);

  infoToggle.addEventListener('click', () => {
    const open = infoToggle.getAttribute('aria-expanded') !== 'true';
    if (open) closeThread(false);
    infoToggle.setAttribute('aria-expanded', String(open));
    view.classList.toggle('aside-open', open);
    if (open) aside.querySelector('h2')?.setAttribute('tabindex', '-1');
    if (open) aside.querySelector('h2')?.focus();
  });

  copyBtn.addEventListener('click', async () => {
    let ok = false;
    try {
      if (navigator.clipboard && window.isSecureContext) { await navigator.clipboard.writeText(shareUrl); ok = true; }
    } catch { ok = false; }
    if (!ok) {
      shareInput.focus();
      shareInput.select();
      try { ok = document.execCommand('copy'); } catch { ok = false; }
    }
    shareNote.textContent = ok ? 'Link copied.' : 'Select the link and copy it.';
  });

  function drawHeader() {
    titleEl.textContent = room.name;
    visTag.textContent = visibilityLabel(room);
    visTag.className = room.is_public ? 'tag tag-public' : 'tag tag-private';
    descEl.textContent = room.description || '';
    descEl.hidden = !room.description;
    shareNote.textContent = {
      public: 'Anyone with the link can join.',
      private: 'Private: people with the link can ask to join.',
      unlisted: 'Unlisted: only people with the link can find it and ask to join.',
      direct: '',
    }[visibilityOf(room)];
    shareSection.hidden = direct();
  }

  // ---- leave
  function drawLeave() {
    const q = direct() ? 'Leave this conversation? Opening it again brings you back.'
      : isOwner() ? 'You own this room: leaving deletes it for everyone. Leave?' : 'Leave this room?';
    replace(leaveBox, confirmButton(direct() ? 'Leave conversation' : 'Leave room', {
      question: q,
      confirmLabel: 'Leave',
      cancelLabel: 'Cancel',
      className: 'btn btn-small btn-danger-outline',
      testid: 'leave-room',
      onConfirm: async () => {
        store.quietGone.add(roomId);
        try {
          await api.leaveRoom(roomId);
        } catch (ex) {
          store.quietGone.delete(roomId);
          toast(ex.message, 'error');
          return;
        }
        store.dropRoom(roomId);
        toast(`You left “${room.name}”.`, 'info');
        ctx.navigate('#/rooms');
      },
    }));
  }

  // ---- owner tools
  const reqList = h('ul', { class: 'plain-list req-list', 'data-testid': 'join-requests' });
  let requests = [];

  let settingsFields = null;
  function drawOwnerTools() {
    clear(ownerBox);
    settingsFields = null;
    if (!isOwner()) return;
    const err = errorBox('room-settings-error');
    const ok = h('p', { class: 'ok-note small', role: 'status', hidden: true });
    const desc = h('textarea', { id: 'settings-desc', rows: 3, maxlength: 1000, 'data-testid': 'settings-description' });
    desc.value = room.description || '';
    const vis = h('select', { id: 'settings-vis', 'data-testid': 'settings-visibility' },
      h('option', { value: 'public' }, 'Public — anyone can join'),
      h('option', { value: 'private' }, 'Private — join by request'),
      h('option', { value: 'unlisted' }, 'Unlisted — join by request, found only through its link'));
    vis.value = visibilityOf(room);
    settingsFields = { desc, vis };
    const form = h('form', { class: 'form', 'data-testid': 'room-settings-form' },
      err, ok,
      h('div', { class: 'field' }, h('label', { for: 'settings-desc' }, 'Description'), desc),
      h('div', { class: 'field' }, h('label', { for: 'settings-vis' }, 'Visibility'), vis),
      h('button', { type: 'submit', class: 'btn btn-small btn-primary', 'data-testid': 'settings-save' }, 'Save changes'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      hideError(err);
      ok.hidden = true;
      const changes = {};
      const newDesc = desc.value.trim();
      if (newDesc !== (room.description || '')) changes.description = newDesc;
      if (vis.value !== visibilityOf(room)) changes.visibility = vis.value;
      if (!Object.keys(changes).length) { showError(err, 'Nothing to change in room'); return; }
      if (!('description' in changes)) changes.description = null;
      try {
        const updated = await busy(form, () => api.updateRoom(roomId, changes));
        room = { ...room, ...updated };
        store.upsertRoom({ ...updated, last_read_seq: store.rooms.get(roomId)?.last_read_seq });
        drawHeader();
        ok.textContent = 'Saved.';
        ok.hidden = false;
      } catch (ex) {
        showError(err, ex);
      }
    });
    const del = confirmButton('Delete room', {
      question: 'Delete this room and all its messages?',
      confirmLabel: 'Delete',
      cancelLabel: 'Cancel',
      className: 'btn btn-small btn-danger-outline',
      testid: 'delete-room',
      onConfirm: async () => {
        store.quietGone.add(roomId);
        try {
          await api.deleteRoom(roomId);
        } catch (ex) {
          store.quietGone.delete(roomId);
          toast(ex.message, 'error');
          return;
        }
        store.dropRoom(roomId);
        toast(`Room “${room.name}” deleted.`, 'info');
        ctx.navigate('#/rooms');
      },
    });
    const settings = h('details', { class: 'aside-section settings', 'data-testid': 'room-settings' },
      h('summary', {}, 'Room settings'),
      form,
      h('div', { class: 'danger-zone' }, del));
    ownerBox.append(
      h('section', { class: 'aside-section', 'aria-labelledby': 'h-requests' },
        h('h2', { id: 'h-requests' }, 'Join requests'), reqList),
      settings);
    drawRequests();
  }

  function drawRequests() {
    if (!isOwner()) return;
    replace(reqList, requests.length
      ? requests.map((r) => {
        const err = h('p', { class: 'inline-error small', role: 'alert', hidden: true });
        const accept = h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-testid': 'accept-request' }, 'Accept');
        const reject = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'reject-request' }, 'Reject');
        const handle = async (yes) => {
          accept.disabled = true; reject.disabled = true; err.hidden = true;
          try {
            await api.handleRequest(r.id, yes);
            requests = requests.filter((x) => x.id !== r.id);
            drawRequests();
            toast(yes ? `${r.username} can now chat here.` : `Request from ${r.username} rejected.`, yes ? 'success' : 'info');
            if (yes) loadMembers();
            reqList.querySelector('button')?.focus();
          } catch (ex) {
            err.textContent = ex.message; err.hidden = false;
            accept.disabled = false; reject.disabled = false;
            if (ex.status === 404 || ex.status === 400) loadRequests();
          }
        };
        accept.addEventListener('click', () => handle(true));
        reject.addEventListener('click', () => handle(false));
        return h('li', { class: 'req-item', 'data-testid': 'join-request', 'data-request-id': r.id },
          h('div', {}, h('span', { class: 'strong' }, r.username), h('span', { class: 'muted small' }, ` · ${relTime(r.created_at)}`)),
          r.message ? h('p', { class: 'req-message' }, r.message) : null,
          h('div', { class: 'btn-row' }, accept, reject),
          err);
      })
      : h('li', { class: 'muted small' }, 'No pending requests.'));
  }

  async function loadRequests() {
    if (!isOwner()) return;
    try {
      requests = await api.roomRequests(roomId);
      if (!destroyed) drawRequests();
    } catch { /* keep the old list */ }
  }

  // ---- members & presence
  function drawMembers() {
    memberCount.textContent = socket.connected
      ? `(${members.length}, ${members.filter((m) => online.has(m.id)).length} online)`
      : `(${members.length}; presence unknown while offline)`;
    const sorted = [...members].sort((a, b) => (online.has(b.id) - online.has(a.id)) || a.username.localeCompare(b.username));
    replace(memberList, sorted.map((m) => {
      const on = online.has(m.id);
      const owner = m.id === room.created_by && !direct();
      const li = h('li', { class: 'member', 'data-testid': 'member', 'data-user-id': m.id, 'data-online': String(on) },
        h('span', { class: on ? 'presence online' : 'presence', 'data-testid': 'presence', title: on ? 'Online' : 'Offline' }),
        h('span', { class: 'sr-only' }, on ? 'Online: ' : 'Offline: '),
        h('span', { class: 'member-name' }, m.username),
        owner ? h('span', { class: 'tag tag-small' }, 'owner') : null,
        m.id === me.id ? h('span', { class: 'tag tag-small' }, 'you') : null);
      if (m.id !== me.id && !(direct() && members.length <= 2)) {
        const msg = h('button', { type: 'button', class: 'btn btn-tiny', 'data-testid': 'message-member', 'aria-label': `Message ${m.username}` }, 'Message');
        msg.addEventListener('click', () => openDirect(m.username));
        li.appendChild(msg);
      }
      if (isOwner() && m.id !== me.id) {
        li.appendChild(confirmButton('Remove', {
          question: `Remove ${m.username}?`,
          confirmLabel: 'Remove',
          cancelLabel: 'Cancel',
          className: 'btn btn-tiny',
          testid: 'remove-member',
          onConfirm: async () => {
            try {
              await api.removeUser(roomId, m.id);
              members = members.filter((x) => x.id !== m.id);
              drawMembers();
              toast(`${m.username} was removed from the room.`, 'info');
            } catch (ex) {
              toast(ex.message, 'error');
            }
          },
        }));
      }
      return li;
    }));
  }

  /** Opens (or finds) the direct conversation with one member, and goes there. */
  async function openDirect(username) {
    try {
      const dm = await api.openDirect([username]);
      store.upsertRoom(dm);
      ctx.navigate(`#/room/${encodeURIComponent(dm.id)}`);
    } catch (ex) {
      toast(ex.message, 'error');
    }
  }

  let membersTimer = null;
  async function loadMembers() {
    clearTimeout(membersTimer);
    try {
      const [users, active] = await Promise.all([api.roomUsers(roomId), api.activeUsers(roomId).catch(() => null)]);
      if (destroyed) return;
      members = users;
      if (active) { online.clear(); active.forEach((id) => online.add(id)); }
      drawMembers();
    } catch { /* e.g. just removed: the unsubscribe notice handles it */ }
  }
  const loadMembersSoon = () => { clearTimeout(membersTimer); membersTimer = setTimeout(loadMembers, 250); };

  // ---- typing
  function drawTyping() {
    const names = [...typers.values()].map((t) => t.username);
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = `${names.length} people are typing…`;
    typingEl.textContent = text;
    typingEl.classList.toggle('active', !!text);
  }
  function setTyping(userId, username, isTyping) {
    const old = typers.get(userId);
    if (old) clearTimeout(old.timer);
    if (isTyping) {
      typers.set(userId, { username, timer: setTimeout(() => { typers.delete(userId); drawTyping(); }, TYPING_TTL_MS) });
    } else {
      typers.delete(userId);
    }
    drawTyping();
  }

  let typingActive = false;
  let typingSentAt = 0;
  let typingIdle = null;
  function stopTyping() {
    clearTimeout(typingIdle);
    if (typingActive) { socket.typing(roomId, false); typingActive = false; }
  }
  function onComposerInput() {
    autosize();
    const has = input.value.trim().length > 0;
    if (!has) { stopTyping(); return; }
    const now = Date.now();
    if (!typingActive || now - typingSentAt > TYPING_RESEND_MS) {
      if (socket.typing(roomId, true)) { typingActive = true; typingSentAt = now; }
    }
    clearTimeout(typingIdle);
    typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
    const left = MAX_CHARS - [...input.value].length;
    composerHint.textContent = left < 400 ? `${left} characters left` : 'Enter to send · Shift+Enter for a new line';
  }

  function autosize(el = input) {
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, 180)}px`;
  }

  // ---- messages
  const atBottom = () => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48;
  // Messages that arrived below while the user was reading further up, counted on the button.
  let unseenBelow = 0;
  const hideJump = () => { jumpBtn.hidden = true; unseenBelow = 0; };
  const showJump = () => {
    unseenBelow += 1;
    jumpBtn.textContent = `${newMessages(unseenBelow)} ↓`;
    jumpBtn.hidden = false;
  };
  const scrollToBottom = () => { scroller.scrollTop = scroller.scrollHeight; hideJump(); };

  function messageEl(msg) {
    const li = h('li', { class: 'msg', 'data-testid': 'message' });
    fillMessage(li, msg);
    return li;
  }

  /**
   * A person's avatar: up to two initials on one of ten colours, chosen by the user id, so the
   * same person looks the same in every room and on every device.
   */
  function avatar(name, userId) {
    const initials = (name || '?').replace(/[^\p{L}\p{N}]/gu, '').slice(0, 2).toUpperCase() || '?';
    let hash = 0;
    for (const c of String(userId || name || '')) hash = (hash * 31 + c.codePointAt(0)) >>> 0;
    return h('span', { class: `msg-avatar av${hash % 10}`, 'aria-hidden': 'true', 'data-testid': 'message-avatar' }, initials);
  }

  function fillMessage(li, msg) {
    const own = msg.user_id === me.id;
    const inThread = msg.thread_root_seq != null; // a thread reply: drawn in the thread panel
    li.className = `msg${own ? ' msg-own' : ''}${msg.deleted ? ' msg-deleted' : ''}${thread && thread.root === msg.seq ? ' msg-thread-open' : ''}`;
    li.dataset.seq = String(msg.seq);
    li.dataset.messageId = msg.id;
    li.dataset.userId = msg.user_id;
    li.dataset.state = 'sent';
    li.dataset.own = String(own);
    li.dataset.deleted = String(!!msg.deleted);
    li.dataset.edited = String(!!msg.edited);
    const meta = h('div', { class: 'msg-meta' },
      avatar(msg.username, msg.user_id),
      h('span', { class: 'msg-author', 'data-testid': 'message-author' }, msg.username || 'unknown'),
      h('time', { class: 'msg-time', datetime: msg.created_at, title: fullTime(msg.created_at) }, shortTime(msg.created_at)),
      msg.edited && !msg.deleted ? h('span', { class: 'msg-edited', 'data-testid': 'edited-mark', title: `Edited ${fullTime(msg.updated_at)}` }, '(edited)') : null,
      msg.pinned_by && !msg.deleted ? h('span', { class: 'msg-pinned', 'data-testid': 'pinned-mark', title: `Pinned by ${memberName(msg.pinned_by)} ${fullTime(msg.pinned_at)}` }, '📌 pinned') : null);
    const body = msg.deleted
      ? h('div', { class: 'msg-content', 'data-testid': 'message-content' }, h('em', {}, 'This message was deleted.'))
      : h('div', { class: 'msg-content', 'data-testid': 'message-content' }, renderContent(msg.content, me.username));
    const quote = msg.reply_to_seq && !msg.deleted ? quoteEl(msg.reply_to_seq) : null;
    const files = msg.deleted ? null : filesEl(msg.attachments);
    const chips = msg.deleted ? null : reactionChips(msg);
    const actions = h('div', { class: 'msg-actions' });
    if (!msg.deleted) {
      const react = h('button', { type: 'button', class: 'btn btn-tiny', 'data-testid': 'react-message', 'aria-label': 'Add a reaction', title: 'Add a reaction' }, '☺+');
      react.addEventListener('click', () => reactions.open(react, (e) => toggleReaction(msg.id, e, true)));
      actions.appendChild(react);
      if (!inThread) {
        const reply = h('button', { type: 'button', class: 'btn btn-tiny', 'data-testid': 'reply-message', 'aria-label': 'Reply' }, 'Reply');
        reply.addEventListener('click', () => startReply(msg.seq));
        const inThreadBtn = h('button', { type: 'button', class: 'btn btn-tiny', 'data-testid': 'thread-message', 'aria-label': 'Reply in thread', title: 'Reply in thread' }, 'Thread');
        inThreadBtn.addEventListener('click', () => openThread(msg.seq));
        const pin = h('button', { type: 'button', class: 'btn btn-tiny', 'data-testid': 'pin-message' }, msg.pinned_by ? 'Unpin' : 'Pin');
        pin.addEventListener('click', () => togglePin(msg.id, !msg.pinned_by));
        actions.append(reply, inThreadBtn, pin);
      }
      if (own) {
        const edit = h('button', { type: 'button', class: 'btn btn-tiny', 'data-testid': 'edit-message', 'aria-label': 'Edit message' }, 'Edit');
        edit.addEventListener('click', () => startEdit(msg.seq));
        actions.appendChild(edit);
      }
      if (own || isOwner()) {
        actions.appendChild(confirmButton('Delete', {
          question: 'Delete this message?',
          confirmLabel: 'Delete',
          cancelLabel: 'Cancel',
          className: 'btn btn-tiny',
          testid: 'delete-message',
          onConfirm: async () => {
            try {
              await api.deleteMessage(msg.id);
              applyDeleted(msg.id);
              (inThread ? threadInput : input).focus();
            } catch (ex) {
              toast(ex.message, 'error');
            }
          },
        }));
      }
    }
    // (a deleted root shows no summary, as the server gives none)
    replace(li, meta, quote, body, files, chips, inThread || msg.deleted ? null : threadLink(msg), actions.childNodes.length ? actions : null);
    const i = seqIndex(msg.seq);
    if (i >= 0 && bySeq.get(msg.seq).el === li) {
      regroup(i);
      if (thread && thread.root === msg.seq) drawThreadHead();
    }
  }

  // ---- files
  /** A message's files: images shown (at most 320 px wide), anything else as a download link. */
  function filesEl(list) {
    if (!list || !list.length) return null;
    return h('ul', { class: 'msg-files', 'data-testid': 'message-files' }, ...list.map((f) => {
      const image = INLINE_IMAGES.includes(f.content_type);
      if (image) {
        const scale = f.width ? Math.min(1, 320 / f.width, 240 / (f.height || 240)) : 1;
        const img = h('img', { src: f.thumbnail_url || f.url, alt: f.name, loading: 'lazy', 'data-testid': 'message-image',
          ...(f.width && f.height ? { width: String(Math.round(f.width * scale)), height: String(Math.round(f.height * scale)) } : {}) });
        return h('li', { class: 'msg-file msg-file-image', 'data-testid': 'message-file', 'data-key': f.key },
          h('a', { href: f.url, target: '_blank', rel: 'noopener', title: f.name }, img));
      }
      return h('li', { class: 'msg-file', 'data-testid': 'message-file', 'data-key': f.key },
        h('a', { href: f.url, download: f.name, title: `${f.name} (${f.content_type})` }, '📄 ', f.name),
        h('span', { class: 'muted small' }, ` ${fileSize(f.size)}`));
    }));
  }

  let uploads = []; // {name, state: 'uploading' | 'done' | 'failed', file, error, preview}
  function addFiles(picked) {
    composerErr.hidden = true;
    for (const f of picked) {
      if (uploads.length >= MAX_FILES) {
        composerErr.textContent = `A message can carry at most ${MAX_FILES} files.`;
        composerErr.hidden = false;
        break;
      }
      const u = { name: f.name || 'file', state: 'uploading', file: null, error: null,
        preview: f.type && f.type.startsWith('image/') ? URL.createObjectURL(f) : null };
      uploads.push(u);
      api.uploadFile(roomId, f)
        .then((file) => { u.file = file; u.state = 'done'; })
        .catch((ex) => { u.error = ex.message; u.state = 'failed'; })
        .finally(drawTray);
    }
    drawTray();
  }
  function dropUpload(u) {
    if (u.preview) URL.revokeObjectURL(u.preview);
    uploads = uploads.filter((x) => x !== u);
    drawTray();
  }
  function drawTray() {
    tray.hidden = !uploads.length;
    replace(tray, ...uploads.map((u) => {
      const remove = h('button', { type: 'button', class: 'btn btn-tiny', 'aria-label': `Remove ${u.name}`, 'data-testid': 'upload-remove' }, '✕');
      remove.addEventListener('click', () => { dropUpload(u); input.focus(); });
      const state = u.state === 'uploading' ? 'Uploading…' : u.state === 'failed' ? u.error : fileSize(u.file.size);
      return h('li', { class: `upload upload-${u.state}`, 'data-testid': 'upload', 'data-state': u.state },
        u.preview ? h('img', { src: u.preview, alt: '', class: 'upload-preview' }) : h('span', { class: 'upload-icon', 'aria-hidden': 'true' }, '📄'),
        h('span', { class: 'upload-name' }, u.name),
        h('span', { class: `upload-state small ${u.state === 'failed' ? 'inline-error' : 'muted'}` }, state),
        remove);
    }));
  }
  attachBtn.addEventListener('click', () => fileInput.click());
  fileInput.addEventListener('change', () => { addFiles([...fileInput.files]); fileInput.value = ''; });
  input.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (files.length) { e.preventDefault(); addFiles(files); }
  });
  chat.addEventListener('dragover', (e) => {
    if (![...(e.dataTransfer?.types || [])].includes('Files')) return;
    e.preventDefault();
    chat.classList.add('chat-drop');
  });
  chat.addEventListener('dragleave', (e) => { if (e.target === chat || !chat.contains(e.relatedTarget)) chat.classList.remove('chat-drop'); });
  chat.addEventListener('drop', (e) => {
    chat.classList.remove('chat-drop');
    const files = [...(e.dataTransfer?.files || [])];
    if (files.length) { e.preventDefault(); addFiles(files); input.focus(); }
  });

  // ---- replies and reactions
  /** "author: text" of the message at `seq`, as far as it is loaded. */
  function quoteParts(seq) {
    const it = entry(seq);
    if (!it) return ['', `Message #${seq}`];
    if (it.msg.deleted) return ['', 'A deleted message'];
    return [it.msg.username || 'unknown', it.msg.content.replace(/\s+/g, ' ').slice(0, 140)];
  }

  function quoteEl(seq) {
    const [author, text] = quoteParts(seq);
    const q = h('button', { type: 'button', class: 'msg-quote', 'data-testid': 'message-quote', 'data-reply-to': String(seq), title: 'Show the message this replies to' },
      author ? h('span', { class: 'msg-quote-author' }, author) : null, h('span', { class: 'msg-quote-text' }, text));
    q.addEventListener('click', () => showMessage(seq));
    return q;
  }

  /** Scrolls to a loaded message and makes it flash (or says it is further up). */
  function showMessage(seq) {
    const r = replies.get(seq);
    if (r) { openThread(r.msg.thread_root_seq).then(() => flash(r.el)); return; }
    const it = bySeq.get(seq);
    if (!it) { toast('That message is further up: load older messages to see it.'); return; }
    flash(it.el);
  }

  function flash(el) {
    if (!el.isConnected) return;
    el.scrollIntoView({ block: 'center', behavior: 'smooth' });
    el.classList.remove('msg-flash');
    void el.offsetWidth; // restart the animation
    el.classList.add('msg-flash');
  }

  /** Redraws the replies that quote `seq` (it arrived, changed or was deleted). */
  function refreshQuotes(seq) {
    for (const it of bySeq.values()) {
      if (it.msg.reply_to_seq === seq && editing !== it.msg.seq) fillMessage(it.el, it.msg);
    }
  }

  function memberName(id) {
    if (id === me.id) return 'You';
    return members.find((m) => m.id === id)?.username || 'someone';
  }

  function reactionChips(msg) {
    const list = msg.reactions || [];
    if (!list.length) return null;
    return h('div', { class: 'msg-reactions', 'data-testid': 'reactions' }, list.map((r) => {
      const mine = r.user_ids.includes(me.id);
      const names = r.user_ids.map(memberName).join(', ');
      const chip = h('button', {
        type: 'button', class: `reaction${mine ? ' reaction-mine' : ''}`, 'data-testid': 'reaction', 'data-emoji': r.emoji,
        'aria-pressed': String(mine), title: `${names} reacted with ${r.emoji}`,
        'aria-label': `${r.emoji} ${r.count}: ${names}${mine ? ' (click to take yours back)' : ''}`,
      }, h('span', {}, r.emoji), h('span', { class: 'reaction-count', 'data-testid': 'reaction-count' }, String(r.count)));
      chip.addEventListener('click', () => toggleReaction(msg.id, r.emoji, !mine));
      return chip;
    }));
  }

  /** Adds one user's reaction to (or takes it from) a loaded message's list; true if it changed. */
  function applyReaction(id, emoji, userId, added) {
    const seq = byId.get(id);
    if (seq === undefined) return false;
    const it = entry(seq);
    const list = (it.msg.reactions || []).map((r) => ({ ...r, user_ids: [...r.user_ids] }));
    const r = list.find((x) => x.emoji === emoji);
    const has = !!r && r.user_ids.includes(userId);
    if (has === added) return false;
    if (added && r) r.user_ids.push(userId);
    else if (added) list.push({ emoji, count: 0, user_ids: [userId] });
    else r.user_ids = r.user_ids.filter((u) => u !== userId);
    for (const x of list) x.count = x.user_ids.length;
    it.msg = { ...it.msg, reactions: list.filter((x) => x.count > 0) };
    if (editing !== seq) fillMessage(it.el, it.msg);
    return true;
  }

  async function toggleReaction(id, emoji, added) {
    try {
      const m = await api.react(id, emoji, added);
      const seq = byId.get(id);
      if (seq === undefined) return;
      const it = entry(seq);
      it.msg = { ...it.msg, reactions: m.reactions };
      if (editing !== seq) fillMessage(it.el, it.msg);
    } catch (ex) {
      toast(ex.message, 'error');
    }
  }

  // ---- search
  /** `text` with the `[start, end)` character ranges wrapped in <mark> (built as nodes, never markup). */
  function marked(text, ranges) {
    const chars = [...text];
    const out = [];
    let at = 0;
    for (const [a, b] of ranges) {
      if (a > at) out.push(chars.slice(at, a).join(''));
      out.push(h('mark', {}, chars.slice(a, b).join('')));
      at = b;
    }
    if (at < chars.length) out.push(chars.slice(at).join(''));
    return out;
  }
  searchForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = searchInput.value.trim();
    if (!text) { clear(searchResults); return; }
    try {
      const results = await api.searchMessages(text, roomId);
      if (destroyed) return;
      replace(searchResults, results.length
        ? results.map(({ message: m, highlights }) => {
          const b = h('button', { type: 'button', class: 'pinned-item search-hit', 'data-testid': 'search-hit', 'data-seq': String(m.seq) },
            h('span', { class: 'strong' }, m.username), ' ', ...marked(m.content, highlights));
          b.addEventListener('click', () => showInContext(m.seq, m.thread_root_seq));
          return h('li', {}, b);
        })
        : h('li', { class: 'muted small', 'data-testid': 'search-empty' }, 'No message matches.'));
    } catch (ex) {
      replace(searchResults, h('li', { class: 'inline-error small' }, ex.message));
    }
  });

  /** Shows a message in its place, loading older pages until it is there (a few at most). */
  async function showInContext(seq, rootSeq = null) {
    if (rootSeq != null) {
      await openThread(rootSeq);
      const r = replies.get(seq);
      if (r) flash(r.el);
      return;
    }
    let guard = 0;
    while (!bySeq.has(seq) && hasOlder && oldest > seq && guard++ < 20) await loadOlder();
    showMessage(seq);
  }

  // ---- pins
  let pins = [];
  function drawPinned() {
    pinnedSection.hidden = pins.length === 0;
    replace(pinnedList, pins.map((m) => {
      const b = h('button', { type: 'button', class: 'pinned-item', 'data-testid': 'pinned-item', 'data-seq': String(m.seq) },
        h('span', { class: 'strong' }, m.username), ' ', m.content.replace(/\s+/g, ' ').slice(0, 80));
      b.addEventListener('click', () => showInContext(m.seq, m.thread_root_seq));
      return h('li', {}, b);
    }));
  }
  async function loadPinned() {
    try {
      pins = await api.pinned(roomId);
      if (!destroyed) drawPinned();
    } catch { /* keep the old list */ }
  }
  /** A pin changed (here or live): the message's mark, and the list. */
  function applyPin(id, pinned, by, at) {
    const seq = byId.get(id);
    if (seq !== undefined) {
      const it = entry(seq);
      it.msg = { ...it.msg, pinned_by: pinned ? by : null, pinned_at: pinned ? at : null };
      if (editing !== seq) fillMessage(it.el, it.msg);
    }
    loadPinned();
  }
  async function togglePin(id, pinned) {
    try {
      const m = await api.pin(id, pinned);
      applyPin(id, pinned, m.pinned_by, m.pinned_at);
    } catch (ex) {
      toast(ex.message, 'error');
    }
  }

  // ---- threads
  /** The root entry of the thread at `seq`: in the timeline, or the open thread's own copy. */
  const rootOf = (seq) => bySeq.get(seq) || (thread && thread.root === seq ? thread.rootEntry : null);
  const repliesText = (n) => `${n} ${n === 1 ? 'reply' : 'replies'}`;

  /** "N replies · 10:42" under a thread's root: opens the thread. */
  function threadLink(msg) {
    const t = msg.thread;
    if (!t || !t.reply_count) return null;
    // Unread: a reply after this reader's marker (unknown on pages that carry no marker).
    const unread = t.read_seq !== undefined && t.last_reply_seq > t.read_seq;
    const b = h('button', { type: 'button', class: `thread-link${unread ? ' thread-link-unread' : ''}`, 'data-testid': 'thread-link', 'data-reply-count': String(t.reply_count), 'data-unread': String(unread), 'aria-controls': 'thread-panel', title: `Last reply ${fullTime(t.last_reply_at)}` },
      h('span', { class: 'thread-link-count', 'data-testid': 'thread-link-count' }, repliesText(t.reply_count)),
      unread ? h('span', { class: 'thread-link-new', 'data-testid': 'thread-link-new' }, 'new') : null,
      h('span', { class: 'thread-link-time' }, `· ${shortTime(t.last_reply_at)}`),
      h('span', { class: 'sr-only' }, unread ? ' — new replies; open the thread' : ' — open the thread'));
    b.addEventListener('click', () => openThread(msg.seq));
    return b;
  }

  /** A root's thread summary changed (a reply came or went). */
  function setSummary(root, summary) {
    root.msg = { ...root.msg, thread: summary };
    if (root.el && editing !== root.msg.seq) fillMessage(root.el, root.msg);
    if (thread && thread.root === root.msg.seq) drawThreadHead();
  }

  /** A thread reply (from history, live, an ack or the thread's pages): counted on its root once. */
  function insertReply(msg) {
    const existing = replies.get(msg.seq);
    if (existing) {
      mergeInto(existing, msg);
      return false;
    }
    const it = { msg, el: messageEl(msg) };
    replies.set(msg.seq, it);
    byId.set(msg.id, msg.seq);
    const c = msg.client_msg_id && pendingEls.get(msg.client_msg_id);
    if (c) { c.remove(); pendingEls.delete(msg.client_msg_id); }
    if (msg.user_id && typers.has(msg.user_id)) setTyping(msg.user_id, '', false);
    const root = rootOf(msg.thread_root_seq);
    const t = root && root.msg && root.msg.thread;
    // A reply after the last one the root's summary knows is a new one.
    if (root && root.msg && !msg.deleted && (!t || msg.seq > t.last_reply_seq)) {
      // One's own reply is read; another's is unread until the thread is open.
      const readSeq = msg.user_id === me.id ? msg.seq : (t ? t.read_seq : 0);
      setSummary(root, { reply_count: (t ? t.reply_count : 0) + 1, last_reply_seq: msg.seq, last_reply_at: msg.created_at, read_seq: readSeq });
    }
    if (thread && thread.root === msg.thread_root_seq) {
      placeReply(it);
      markThreadRead(thread.root);
      // Replying follows a thread, unless one chose not to.
      if (msg.user_id === me.id && !thread.chosen && thread.following === false) { thread.following = true; drawFollow(); }
    }
    return true;
  }

  /** The open thread is read up to its last reply: the server keeps the marker for every tab. */
  function markThreadRead(seq) {
    const root = rootOf(seq);
    const t = root && root.msg && root.msg.thread;
    if (!t || document.hidden || (t.read_seq !== undefined && t.read_seq >= t.last_reply_seq)) return;
    setSummary(root, { ...t, read_seq: t.last_reply_seq });
    // A hint, not data: if it fails, the thread shows as unread again on the next load.
    api.threadRead(roomId, seq, t.last_reply_seq).catch(() => {});
  }

  /** A counted reply was deleted: one fewer on its root. */
  function replyGone(msg) {
    const root = rootOf(msg.thread_root_seq);
    const t = root && root.msg && root.msg.thread;
    if (!t || msg.seq > t.last_reply_seq) return;
    let last = null;
    for (const r of replies.values()) {
      const m = r.msg;
      if (m.thread_root_seq === msg.thread_root_seq && !m.deleted && m.seq !== msg.seq && (!last || m.seq > last.seq)) last = m;
    }
    const n = t.reply_count - 1;
    setSummary(root, n > 0 ? { reply_count: n, last_reply_seq: last ? last.seq : t.last_reply_seq, last_reply_at: last ? last.created_at : t.last_reply_at, read_seq: t.read_seq } : null);
  }

  /** Puts a reply of the open thread in its place (by seq) in the panel. */
  function placeReply(it) {
    const stick = threadScroller.scrollHeight - threadScroller.scrollTop - threadScroller.clientHeight < 48;
    let next = null;
    for (const el of threadList.children) if (Number(el.dataset.seq) > it.msg.seq) { next = el; break; }
    if (it.el.parentNode !== threadList || it.el.nextSibling !== next) threadList.insertBefore(it.el, next);
    if (stick || it.msg.user_id === me.id) threadScroller.scrollTop = threadScroller.scrollHeight;
  }

  function drawThreadHead() {
    const msg = rootOf(thread.root)?.msg;
    const name = !msg ? `message #${thread.root}` : msg.deleted ? 'a deleted message'
      : `${msg.username || 'unknown'}: ${msg.content.replace(/\s+/g, ' ').slice(0, 80)}`;
    replace(threadTitle, 'Thread', h('span', { class: 'thread-title-sub' }, ` — ${name}`));
    replace(threadRoot, msg ? h('div', { class: 'msg thread-root-msg', 'data-testid': 'thread-root', 'data-seq': String(msg.seq) },
      h('div', { class: 'msg-meta' },
        avatar(msg.username, msg.user_id),
        h('span', { class: 'msg-author' }, msg.username || 'unknown'),
        h('time', { class: 'msg-time', datetime: msg.created_at, title: fullTime(msg.created_at) }, shortTime(msg.created_at)),
        msg.edited && !msg.deleted ? h('span', { class: 'msg-edited' }, '(edited)') : null),
      h('div', { class: 'msg-content' }, msg.deleted ? h('em', {}, 'This message was deleted.') : renderContent(msg.content, me.username))) : null);
    const n = (msg && msg.thread && msg.thread.reply_count) || 0;
    threadCount.textContent = n ? repliesText(n) : 'No replies yet';
  }

  /** "Following" or "Follow": whether the reader is told of the thread's replies. */
  function drawFollow() {
    const known = thread && typeof thread.following === 'boolean';
    threadFollow.hidden = !known;
    if (!known) return;
    threadFollow.textContent = thread.following ? 'Following' : 'Follow';
    threadFollow.dataset.following = String(thread.following);
    threadFollow.title = thread.following ? 'You are told of new replies; click to stop' : 'Be told of new replies in this thread';
  }

  threadFollow.addEventListener('click', async () => {
    const t = thread;
    if (!t || typeof t.following !== 'boolean') return;
    threadFollow.disabled = true;
    try {
      const res = await api.threadFollow(roomId, t.root, !t.following);
      if (thread === t) { t.following = res.following; t.chosen = true; }
    } catch (ex) {
      toast(ex.message, 'error');
    } finally {
      threadFollow.disabled = false;
      drawFollow();
    }
  });

  function drawThreadMore() {
    threadMore.hidden = !thread.more || thread.loading;
  }

  /** Opens the thread of the message at `seq` in the panel, with its first page of replies. */
  async function openThread(seq) {
    if (thread && thread.root === seq) { threadInput.focus(); return; }
    closeThread(false);
    const root = bySeq.get(seq);
    thread = { root: seq, rootEntry: root ? null : { msg: null, el: null }, after: 0, more: false, loading: false };
    if (root) root.el.classList.add('msg-thread-open');
    view.classList.add('thread-open');
    view.classList.remove('aside-open');
    infoToggle.setAttribute('aria-expanded', 'false');
    threadPanel.hidden = false;
    threadErr.hidden = true;
    // The replies already here show at once; the thread's pages bring the rest.
    const known = [...replies.values()].filter((r) => r.msg.thread_root_seq === seq).sort((a, b) => a.msg.seq - b.msg.seq);
    replace(threadList, known.map((r) => r.el));
    drawThreadHead();
    drawThreadMore();
    drawPending();
    threadScroller.scrollTop = 0;
    threadInput.focus();
    await loadThreadPage();
  }

  async function loadThreadPage() {
    const t = thread;
    if (!t || t.loading) return;
    t.loading = true;
    drawThreadMore();
    threadNote.textContent = 'Loading replies…';
    try {
      const res = await api.getThread(roomId, t.root, t.after, THREAD_PAGE);
      if (thread !== t || destroyed) return;
      const inTimeline = bySeq.get(t.root);
      if (inTimeline) mergeInto(inTimeline, res.root);
      else if (!t.rootEntry.msg) t.rootEntry.msg = res.root;
      res.replies.forEach(insertMessage);
      if (res.replies.length) t.after = res.replies[res.replies.length - 1].seq;
      t.more = res.replies.length >= THREAD_PAGE;
      t.following = res.following;
      t.chosen = res.follow_choice !== null && res.follow_choice !== undefined;
      threadNote.textContent = '';
      drawThreadHead();
      drawFollow();
      markThreadRead(t.root);
    } catch (ex) {
      if (thread !== t) return;
      threadNote.textContent = `Could not load the replies: ${ex.message}`;
      t.more = ex.status === 0 || ex.status >= 500;
    } finally {
      t.loading = false;
      if (thread === t) drawThreadMore();
    }
  }

  function closeThread(refocus = true) {
    if (!thread) return;
    if (editing !== null && replies.has(editing)) cancelEdit();
    const root = bySeq.get(thread.root);
    thread = null;
    drawFollow();
    view.classList.remove('thread-open');
    threadPanel.hidden = true;
    clear(threadList);
    clear(threadRoot);
    threadNote.textContent = '';
    drawPending();
    if (root) root.el.classList.remove('msg-thread-open');
    if (refocus) (root?.el.querySelector('[data-testid="thread-link"]') || input).focus();
  }

  threadClose.addEventListener('click', () => closeThread());
  threadMore.addEventListener('click', loadThreadPage);
  // Escape anywhere in the room closes the thread, unless something inside used it.
  view.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && thread && !e.defaultPrevented) { e.preventDefault(); closeThread(); }
  });
  threadInput.addEventListener('input', () => autosize(threadInput));
  threadInput.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      threadForm.requestSubmit();
    }
  });
  // Through the socket like any message (queued while offline, acked, REST as a fallback).
  threadForm.addEventListener('submit', (e) => {
    e.preventDefault();
    threadErr.hidden = true;
    const text = threadInput.value.trim();
    if (!text || !thread) return;
    if ([...text].length > MAX_CHARS) {
      threadErr.textContent = `A message can have at most ${MAX_CHARS} characters.`;
      threadErr.hidden = false;
      return;
    }
    socket.send(roomId, text, null, thread.root);
    threadInput.value = '';
    autosize(threadInput);
    drawPending();
    threadScroller.scrollTop = threadScroller.scrollHeight;
    threadInput.focus();
  });

  function startReply(seq) {
    replyTo = seq;
    const [author, text] = quoteParts(seq);
    replyText.textContent = `Replying to ${author || 'a message'}: ${text}`;
    replyBar.hidden = false;
    input.focus();
  }
  function cancelReply() {
    replyTo = null;
    replyBar.hidden = true;
  }
  replyCancel.addEventListener('click', () => { cancelReply(); input.focus(); });

  /** Same message again (ack then live frame, or replay): keeps the freshest state. */
  function mergeInto(existing, msg) {
    const merged = { ...existing.msg, ...msg };
    if (existing.msg.deleted) merged.deleted = true;
    if (existing.msg.edited && !msg.edited && !msg.deleted) { merged.edited = true; merged.content = existing.msg.content; }
    // A thread's summary counted here from live replies outlives a copy without one.
    const had = existing.msg.thread;
    if (had && (!msg.thread || msg.thread.last_reply_seq < had.last_reply_seq)) merged.thread = had;
    existing.msg = merged;
    byId.set(merged.id, merged.seq);
    if (editing !== merged.seq) fillMessage(existing.el, merged);
  }

  function insertMessage(msg) {
    if (!msg || typeof msg.seq !== 'number') return false;
    newest = Math.max(newest, msg.seq);
    if (msg.thread_root_seq != null) return insertReply(msg);
    const existing = bySeq.get(msg.seq);
    if (existing) {
      mergeInto(existing, msg);
      return false;
    }
    const el = messageEl(msg);
    const lo = lowerBound(msg.seq);
    const next = lo < seqs.length ? bySeq.get(seqs[lo]).el : null;
    // keep the unread divider directly above its message
    const anchor = next && next.previousSibling && next.previousSibling.classList && next.previousSibling.classList.contains('unread-divider') && next.previousSibling.dataset.before === String(seqs[lo]) ? next.previousSibling : next;
    list.insertBefore(el, anchor);
    seqs.splice(lo, 0, msg.seq);
    bySeq.set(msg.seq, { msg, el });
    regroup(lo);
    if (lo + 1 < seqs.length) regroup(lo + 1);
    byId.set(msg.id, msg.seq);
    emptyNote.hidden = true;
    const c = msg.client_msg_id && pendingEls.get(msg.client_msg_id);
    if (c) { c.remove(); pendingEls.delete(msg.client_msg_id); }
    if (msg.user_id && typers.has(msg.user_id)) setTyping(msg.user_id, '', false);
    refreshQuotes(msg.seq);
    return true;
  }

  /**
   * Consecutive messages of one author (next seqs, within 5 minutes, one day) read as one run
   * under a single name; a message that starts a day carries the day's label (drawn by CSS).
   * `i` is the message's index in `seqs`.
   */
  function regroup(i) {
    const it = bySeq.get(seqs[i]);
    const prev = i > 0 ? bySeq.get(seqs[i - 1]) : null;
    const at = new Date(it.msg.created_at);
    const day = at.toDateString();
    const prevAt = prev ? new Date(prev.msg.created_at) : null;
    const newDay = prev ? prevAt.toDateString() !== day : !hasOlder;
    const cont = !!prev && !newDay && prev.msg.seq === it.msg.seq - 1 && prev.msg.user_id === it.msg.user_id
      && at - prevAt < 5 * 60_000;
    it.el.classList.toggle('msg-cont', cont);
    it.el.classList.toggle('msg-newday', newDay);
    if (newDay) it.el.dataset.day = dayLabel(at); else delete it.el.dataset.day;
  }

  /** Where `seq` is, or would go, in the sorted `seqs` (binary search). */
  function lowerBound(seq) {
    let lo = 0;
    let hi = seqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (seqs[mid] < seq) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  function seqIndex(seq) {
    const i = lowerBound(seq);
    return seqs[i] === seq ? i : -1;
  }

  const maxSeq = () => (seqs.length ? seqs[seqs.length - 1] : 0);

  function applyEdited(id, content) {
    const seq = byId.get(id);
    if (seq === undefined) return;
    const it = entry(seq);
    it.msg = { ...it.msg, content, edited: true, updated_at: new Date().toISOString() };
    if (editing !== seq) fillMessage(it.el, it.msg);
    refreshQuotes(seq);
  }

  function applyDeleted(id) {
    const seq = byId.get(id);
    if (seq === undefined) return;
    const it = entry(seq);
    if (editing === seq) editing = null;
    const hadFocus = it.el.contains(document.activeElement);
    if (it.msg.thread_root_seq != null && !it.msg.deleted) replyGone(it.msg);
    it.msg = { ...it.msg, deleted: true, content: '', reactions: [], pinned_by: null, pinned_at: null };
    if (pins.some((m) => m.id === id)) loadPinned();
    fillMessage(it.el, it.msg);
    refreshQuotes(seq);
    if (replyTo === seq) cancelReply();
    if (hadFocus) (it.msg.thread_root_seq != null ? threadInput : input).focus();
  }

  function startEdit(seq) {
    const it = entry(seq);
    if (!it || it.msg.deleted) return;
    if (editing !== null && editing !== seq) cancelEdit();
    editing = seq;
    const ta = h('textarea', { class: 'edit-input', rows: 2, maxlength: MAX_CHARS, 'aria-label': 'Edit message', 'data-testid': 'edit-input' });
    ta.value = it.msg.content;
    const err = h('p', { class: 'inline-error small', role: 'alert', hidden: true });
    const save = h('button', { type: 'submit', class: 'btn btn-tiny btn-primary', 'data-testid': 'edit-save' }, 'Save');
    const cancel = h('button', { type: 'button', class: 'btn btn-tiny', 'data-testid': 'edit-cancel' }, 'Cancel');
    const form = h('form', { class: 'edit-form', 'data-testid': 'edit-form' }, ta, err, h('div', { class: 'btn-row' }, save, cancel, h('span', { class: 'muted small' }, 'Enter to save · Esc to cancel')));
    const content = it.el.querySelector('.msg-content');
    const actions = it.el.querySelector('.msg-actions');
    if (actions) actions.hidden = true;
    content.replaceWith(form);
    ta.focus();
    ta.setSelectionRange(ta.value.length, ta.value.length);
    cancel.addEventListener('click', () => { cancelEdit(); });
    ta.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') { e.preventDefault(); cancelEdit(); }
      else if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const text = ta.value.trim();
      if (!text) { err.textContent = 'A message cannot be empty (delete it instead).'; err.hidden = false; return; }
      if (text === it.msg.content) { cancelEdit(); return; }
      save.disabled = true;
      try {
        const updated = await api.editMessage(it.msg.id, text);
        editing = null;
        const cur = entry(seq);
        cur.msg = { ...cur.msg, ...updated };
        fillMessage(cur.el, cur.msg);
        cur.el.querySelector('[data-testid="edit-message"]')?.focus();
      } catch (ex) {
        err.textContent = ex.message; err.hidden = false;
        save.disabled = false;
        ta.focus();
      }
    });
  }

  function cancelEdit() {
    if (editing === null) return;
    const seq = editing;
    editing = null;
    const it = entry(seq);
    if (it) {
      fillMessage(it.el, it.msg);
      it.el.querySelector('[data-testid="edit-message"]')?.focus();
    }
  }

  // pending (not yet acked) messages, greyed
  // (a thread's replies wait in its panel while it is open)
  function drawPending() {
    const entries = socket.pendingFor(roomId).filter((e) => !e.thread_root_seq || (thread && e.thread_root_seq === thread.root));
    const keep = new Set(entries.map((e) => e.cmid));
    for (const [id, el] of pendingEls) if (!keep.has(id)) { el.remove(); pendingEls.delete(id); }
    for (const e of entries) {
      let el = pendingEls.get(e.cmid);
      if (!el) {
        el = h('li', { class: 'msg msg-own msg-pending', 'data-testid': 'message', 'data-client-msg-id': e.cmid });
        pendingEls.set(e.cmid, el);
        (e.thread_root_seq ? threadPending : pendingList).appendChild(el);
      }
      el.dataset.state = e.state === 'failed' ? 'failed' : 'pending';
      el.classList.toggle('msg-failed', e.state === 'failed');
      const status = e.state === 'failed'
        ? h('span', { class: 'msg-status msg-status-failed' }, `Not sent: ${e.error || 'error'}`)
        : h('span', { class: 'msg-status' }, socket.connected ? 'Sending…' : 'Waiting for connection…');
      let actions = null;
      if (e.state === 'failed') {
        const retry = h('button', { type: 'button', class: 'btn btn-tiny', 'data-testid': 'retry-send' }, 'Retry');
        const discard = h('button', { type: 'button', class: 'btn btn-tiny', 'data-testid': 'discard-send' }, 'Discard');
        retry.addEventListener('click', () => socket.retry(e.cmid));
        discard.addEventListener('click', () => { socket.discard(e.cmid); (e.thread_root_seq ? threadInput : input).focus(); });
        actions = h('div', { class: 'msg-actions msg-actions-visible' }, retry, discard);
      }
      replace(el,
        h('div', { class: 'msg-meta' }, avatar(me.username, me.id), h('span', { class: 'msg-author' }, me.username), status),
        h('div', { class: 'msg-content', 'data-testid': 'message-content' }, renderContent(e.content, me.username)),
        e.attachments && e.attachments.length ? h('p', { class: 'muted small' }, `📎 ${e.attachments.map((f) => f.name).join(', ')}`) : null,
        actions);
    }
    if (entries.some((e) => !e.thread_root_seq)) emptyNote.hidden = true;
  }

  let divider = null;
  function addDivider() {
    const r = store.rooms.get(roomId);
    const lastRead = r ? r.last_read_seq || 0 : 0;
    const first = seqs.find((x) => x > lastRead);
    if (first === undefined) return;
    const it = bySeq.get(first);
    if (!it || it.msg.user_id === me.id) return;
    divider = h('li', { class: 'unread-divider', 'data-before': String(first), 'aria-hidden': 'true' }, h('span', {}, 'New messages'));
    list.insertBefore(divider, it.el);
    const unread = seqs.filter((x) => x > lastRead).length;
    unreadBtn.textContent = `↑ ${newMessages(unread)} — jump to the first`;
  }

  /** "Jump to first unread" while the divider is above what is on screen. */
  function updateUnreadJump() {
    unreadBtn.hidden = !divider || !divider.isConnected
      || divider.getBoundingClientRect().top >= scroller.getBoundingClientRect().top - 8;
  }
  unreadBtn.addEventListener('click', () => {
    if (divider) divider.scrollIntoView({ block: 'start' });
    unreadBtn.hidden = true;
  });

  // ---- read markers
  let readTimer = null;
  function markReadSoon() {
    clearTimeout(readTimer);
    readTimer = setTimeout(markRead, 250);
  }
  function markRead() {
    if (destroyed || !ready || document.visibilityState !== 'visible') return;
    if (newest > 0) store.markRead(roomId, newest);
  }

  // ---- loading
  async function loadInitial() {
    list.setAttribute('aria-busy', 'true'); // do not read the whole history aloud
    try {
      const page = await api.messagesBefore(roomId, undefined, PAGE);
      if (destroyed) return;
      page.forEach(insertMessage);
      noteOldest(page);
      hasOlder = page.length > 0 && oldest > 1;
      if (seqs.length) regroup(0); // the room's first message starts its first day
      // Fill any gap up to what the socket (or the room list) knows exists.
      const target = () => Math.max(socket.lastSeq(roomId), store.rooms.get(roomId)?.last_seq || 0, room.last_seq || 0);
      let guard = 0;
      while (newest < target() && guard++ < 20) {
        const more = await api.messagesAfter(roomId, newest, 200);
        if (destroyed) return;
        more.forEach(insertMessage);
        if (more.length < 200) break;
      }
    } catch (ex) {
      if (destroyed) return;
      banner.textContent = `Could not load messages: ${ex.message}`;
      banner.hidden = false;
    }
    ready = true;
    list.removeAttribute('aria-busy');
    const queued = buffer;
    buffer = [];
    queued.forEach(handleLive);
    drawPending();
    addDivider();
    updateHistoryTop();
    emptyNote.hidden = seqs.length > 0 || pendingEls.size > 0;
    scrollToBottom();
    await fillViewport();
    updateUnreadJump();
    markReadSoon();
  }

  function noteOldest(page) {
    for (const m of page) if (typeof m.seq === 'number' && (!oldest || m.seq < oldest)) oldest = m.seq;
  }

  function updateHistoryTop() {
    if (hasOlder) {
      replace(historyTop, olderBtn);
      olderBtn.disabled = loadingOlder;
      olderBtn.textContent = loadingOlder ? 'Loading…' : 'Load older messages';
    } else {
      replace(historyTop, h('p', { class: 'muted small center', 'data-testid': 'history-start' }, seqs.length ? `This is the beginning of “${room.name}”.` : ''));
    }
  }

  async function loadOlder() {
    if (!hasOlder || loadingOlder || !ready) return;
    loadingOlder = true;
    updateHistoryTop();
    const before = oldest;
    list.setAttribute('aria-busy', 'true');
    try {
      const page = await api.messagesBefore(roomId, before || undefined, PAGE);
      if (destroyed) return;
      const prevHeight = scroller.scrollHeight;
      const prevTop = scroller.scrollTop;
      page.forEach(insertMessage);
      noteOldest(page);
      hasOlder = page.length > 0 && oldest > 1;
      if (seqs.length) regroup(0); // the room's first message starts its first day
      scroller.scrollTop = prevTop + (scroller.scrollHeight - prevHeight);
    } catch (ex) {
      toast(`Could not load older messages: ${ex.message}`, 'error');
    } finally {
      loadingOlder = false;
      list.removeAttribute('aria-busy');
      if (!destroyed) updateHistoryTop();
    }
  }

  async function fillViewport() {
    let guard = 0;
    while (!destroyed && hasOlder && scroller.scrollHeight <= scroller.clientHeight + 20 && guard++ < 5) {
      await loadOlder();
    }
  }

  olderBtn.addEventListener('click', async () => {
    await loadOlder();
    olderBtn.focus();
  });
  scroller.addEventListener('scroll', () => {
    if (scroller.scrollTop < 120) loadOlder();
    if (atBottom()) hideJump();
    updateUnreadJump();
  }, { passive: true });
  jumpBtn.addEventListener('click', () => { scrollToBottom(); input.focus(); });
  // Touch screens: tapping a message shows its actions (see style.css), tapping it again or
  // another one hides them; a tap on a link or a button inside does what it says.
  const tapToSelect = (ol) => ol.addEventListener('click', (e) => {
    if (!matchMedia('(hover: none)').matches || e.target.closest('a, button, textarea, input')) return;
    const li = e.target.closest('.msg');
    for (const other of ol.querySelectorAll('.msg-selected')) if (other !== li) other.classList.remove('msg-selected');
    if (li) li.classList.toggle('msg-selected');
  });
  tapToSelect(list);
  tapToSelect(threadList);

  // ---- live events
  function handleLive(f) {
    switch (f.event_type) {
      case 'MESSAGE_CREATED': {
        const msg = f.message || {
          id: f.payload.message_id,
          room_id: roomId,
          user_id: f.payload.user_id,
          username: f.payload.username,
          content: f.payload.message,
          edited: false,
          deleted: false,
          seq: f.seq,
          client_msg_id: f.client_msg_id || null,
          created_at: f.payload.created_at,
          updated_at: f.payload.created_at,
        };
        if (typeof msg.seq !== 'number') msg.seq = f.seq;
        if (msg.thread_root_seq == null && f.payload && f.payload.thread_root_seq) msg.thread_root_seq = Number(f.payload.thread_root_seq);
        if (msg.thread_root_seq != null) {
          // A thread reply: counted on its root and shown in the thread panel, not the timeline.
          insertMessage(msg);
          markReadSoon();
          break;
        }
        const stick = atBottom();
        const added = insertMessage(msg);
        if (added) {
          if (msg.seq === maxSeq()) {
            if (stick || msg.user_id === me.id) scrollToBottom();
            else showJump();
          }
          markReadSoon();
        }
        break;
      }
      case 'MESSAGE_EDITED':
        applyEdited(f.payload.message_id, f.payload.message);
        break;
      case 'MESSAGE_DELETED':
        applyDeleted(f.payload.message_id);
        break;
      case 'MESSAGE_REACTION_ADDED':
      case 'MESSAGE_REACTION_REMOVED': {
        const r = f.reaction || {};
        if (r.message_id && r.emoji && r.user_id) applyReaction(r.message_id, r.emoji, r.user_id, f.event_type === 'MESSAGE_REACTION_ADDED');
        break;
      }
      case 'MESSAGE_PINNED':
      case 'MESSAGE_UNPINNED': {
        const p = f.pin || {};
        if (p.message_id) applyPin(p.message_id, f.event_type === 'MESSAGE_PINNED', p.user_id, p.at);
        break;
      }
      default:
        break;
    }
  }

  offs.push(store.on('event', (f) => {
    const rid = f.room_id || (f.payload && f.payload.room_id);
    if (f.event_type === 'NOTIFICATION') {
      const n = f.notification;
      if (n && n.type === 'JOIN_REQUEST_CREATED' && n.payload && n.payload.room_id === roomId) loadRequests();
      return;
    }
    if (rid !== roomId) return;
    switch (f.event_type) {
      case 'MESSAGE_CREATED':
      case 'MESSAGE_EDITED':
      case 'MESSAGE_DELETED':
      case 'MESSAGE_REACTION_ADDED':
      case 'MESSAGE_REACTION_REMOVED':
      case 'MESSAGE_PINNED':
      case 'MESSAGE_UNPINNED':
        if (!ready) buffer.push(f); else handleLive(f);
        break;
      case 'USER_TYPING': {
        const p = f.payload || {};
        const isTyping = typeof f.is_typing === 'boolean' ? f.is_typing : String(p.is_typing).toLowerCase() === 'true';
        if (p.user_id && p.user_id !== me.id) setTyping(p.user_id, p.username || 'Someone', isTyping);
        break;
      }
      case 'USER_JOINED':
      case 'USER_LEFT':
        loadMembersSoon();
        if (f.event_type === 'USER_JOINED') loadRequests();
        break;
      case 'ROOM_USER_ONLINE':
      case 'ROOM_USER_OFFLINE': {
        const uid = f.payload && f.payload.user_id;
        if (!uid) break;
        if (f.event_type === 'ROOM_USER_ONLINE') online.add(uid); else online.delete(uid);
        if (!members.some((m) => m.id === uid)) loadMembersSoon(); else drawMembers();
        break;
      }
      case 'ROOM_UPDATED': {
        const p = f.payload || {};
        if ('description' in p) room.description = p.description || null;
        if ('is_public' in p) applyIsPublic(room, p.is_public);
        drawHeader();
        if (settingsFields) {
          if (document.activeElement !== settingsFields.desc) settingsFields.desc.value = room.description || '';
          if (document.activeElement !== settingsFields.vis) settingsFields.vis.value = visibilityOf(room);
        }
        break;
      }
      default:
        break;
    }
  }));

  offs.push(store.on('ack', (a) => {
    if (a.room_id !== roomId || typeof a.seq !== 'number') return;
    const msg = a.message || {
      id: a.message_id,
      room_id: roomId,
      user_id: me.id,
      username: me.username,
      content: a.content,
      edited: false,
      deleted: false,
      seq: a.seq,
      client_msg_id: a.client_msg_id,
      created_at: a.created_at,
      updated_at: a.created_at,
      reply_to_seq: a.entry?.reply_to_seq ?? null,
      thread_root_seq: a.entry?.thread_root_seq ?? null,
      reactions: [],
      attachments: a.attachments || [],
    };
    const el = pendingEls.get(a.client_msg_id);
    if (!ready) { buffer.push({ event_type: 'MESSAGE_CREATED', room_id: roomId, seq: a.seq, message: msg }); return; }
    if (el) { el.remove(); pendingEls.delete(a.client_msg_id); }
    handleLive({ event_type: 'MESSAGE_CREATED', room_id: roomId, seq: a.seq, message: msg });
  }));

  offs.push(store.on('pending', (rid) => { if (rid === roomId) drawPending(); }));

  offs.push(store.on('status', ({ status }) => {
    drawPending();
    if (status !== 'connected') {
      for (const t of typers.values()) clearTimeout(t.timer);
      typers.clear();
      drawTyping();
      if (online.size) { online.clear(); drawMembers(); } // presence is unknown until we are back
    }
  }));

  offs.push(store.on('resumed', (f) => {
    if (f.room_id !== roomId) return;
    // After a reconnect: presence and members may have changed while we were away.
    loadMembers();
    loadRequests();
    banner.hidden = true;
  }));

  offs.push(store.on('room-gone', ({ roomId: rid, reason }) => {
    if (rid !== roomId || reason !== 'disconnected') return;
    const again = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'resubscribe' }, 'Reconnect to this room');
    again.addEventListener('click', () => {
      socket.subscribe(roomId, socket.lastSeq(roomId));
      banner.hidden = true;
      input.focus();
    });
    replace(banner, 'The room owner disconnected you from the live stream. ', again);
    banner.hidden = false;
  }));

  const onVisible = () => { if (document.visibilityState === 'visible') markReadSoon(); };
  document.addEventListener('visibilitychange', onVisible);
  window.addEventListener('focus', onVisible);
  offs.push(() => { document.removeEventListener('visibilitychange', onVisible); window.removeEventListener('focus', onVisible); });

  // ---- composer events
  input.addEventListener('input', onComposerInput);
  input.addEventListener('keydown', (e) => {
    if (suggest.onKey(e)) return;
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      composer.requestSubmit();
    } else if (e.key === 'Escape' && replyTo !== null) {
      e.preventDefault();
      cancelReply();
    } else if (e.key === 'ArrowUp' && !input.value && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey) {
      // ↑ in an empty composer edits your last message, as in most chat apps.
      for (let i = seqs.length - 1; i >= 0; i--) {
        const it = bySeq.get(seqs[i]);
        if (it.msg.user_id === me.id && !it.msg.deleted) {
          e.preventDefault();
          startEdit(it.msg.seq);
          break;
        }
      }
    }
  });
  input.addEventListener('blur', () => stopTyping());
  composer.addEventListener('submit', (e) => {
    e.preventDefault();
    composerErr.hidden = true;
    const text = input.value.trim();
    const waiting = uploads.some((u) => u.state === 'uploading');
    const failed = uploads.some((u) => u.state === 'failed');
    if (waiting || failed) {
      composerErr.textContent = waiting ? 'Wait for the files to finish uploading.' : 'Remove the files that could not be uploaded.';
      composerErr.hidden = false;
      return;
    }
    const files = uploads.map((u) => ({ key: u.file.key, name: u.file.name }));
    if (!text && !files.length) return;
    if ([...text].length > MAX_CHARS) {
      composerErr.textContent = `A message can have at most ${MAX_CHARS} characters.`;
      composerErr.hidden = false;
      return;
    }
    stopTyping();
    socket.send(roomId, text, replyTo, null, files);
    for (const u of uploads) if (u.preview) URL.revokeObjectURL(u.preview);
    uploads = [];
    drawTray();
    cancelReply();
    input.value = '';
    autosize();
    composerHint.textContent = 'Enter to send · Shift+Enter for a new line';
    drawPending();
    scrollToBottom();
    input.focus();
  });

  // ---- start
  drawHeader();
  drawLeave();
  drawOwnerTools();
  drawMembers();
  socket.subscribe(roomId, store.rooms.get(roomId)?.last_seq ?? room.last_seq ?? 0);
  loadMembers();
  loadRequests();
  loadPinned();
  loadInitial();
  input.focus();

  return () => {
    clearTimeout(readTimer);
    markRead(); // what was on screen counts as read, even when leaving quickly
    destroyed = true;
    stopTyping();
    clearTimeout(membersTimer);
    for (const t of typers.values()) clearTimeout(t.timer);
    offs.forEach((f) => f());
  };
}
