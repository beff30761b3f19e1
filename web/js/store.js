// App state shared by the views: the current user, my rooms with unread counts, notifications,
// my pending join requests, and the one socket. Views listen with store.on(...).

import { api } from './api.js';
import { ChatSocket } from './socket.js';
import { Emitter, applyIsPublic } from './util.js';

class Store extends Emitter {
  constructor() {
    super();
    this.socket = new ChatSocket({
      restSend: (e) => api.sendMessage(e.room_id, e.content, e.cmid, e.reply_to_seq, e.thread_root_seq, e.attachments || []),
      checkSession: async () => {
        try { await api.me(); return true; } catch (err) { return err.status === 401 ? false : true; }
      },
    });
    this.quietGone = new Set(); // rooms we left/deleted ourselves: no "you were removed" notice
    this._reset();
    const s = this.socket;
    s.on('status', (st) => this.emit('status', st));
    s.on('event', (f) => this._onEvent(f));
    s.on('unsubscribed', (f) => this._onUnsubscribed(f));
    s.on('read_ack', (f) => this._applyRead(f.room_id, f.last_read_seq, f.unread_count));
    s.on('subscribe-error', () => this.loadRooms().catch(() => {}));
    s.on('session-ended', () => this.emit('session-ended'));
    s.on('reconnected', () => this._afterReconnect());
    s.on('pending', (room) => this.emit('pending', room));
    s.on('ack', (a) => this.emit('ack', a));
    s.on('resumed', (f) => this.emit('resumed', f));
    document.addEventListener('visibilitychange', () => {
      this.emit('rooms');
      // Back to this tab: rooms joined or left meanwhile on another device show up.
      if (document.visibilityState === 'visible' && this.me) this.loadRooms().catch(() => {});
    });
    // Rooms joined or left in another tab of this browser show up here at once.
    this._tabs = typeof BroadcastChannel === 'function' ? new BroadcastChannel('livechat-rooms') : null;
    if (this._tabs) {
      this._tabs.onmessage = (e) => {
        if (this.me && e.data && e.data.userId === this.me.id) this.loadRooms().catch(() => {});
      };
    }
  }

  _reset() {
    this._gen = (this._gen || 0) + 1; // answers from an older session are dropped
    this.me = null;
    this.rooms = new Map();
    this.roomsLoaded = false;
    this._loadedIds = null; // my rooms' ids as last loaded, to tell other tabs of a change
    this.activeRoomId = null;
    this.notifications = [];
    this.notifLoaded = false;
    this.notifUnread = 0;
    this.unreadMentions = new Map(); // notification id -> { roomId, seq }: cleared once read in the room
    this.myRequests = [];
    this._readSent = new Map();
    this._roomsPromise = null;
    this._roomsNext = null;
  }

  // ---- session ---------------------------------------------------------------------------

  async start(me) {
    this._reset();
    this.me = me;
    this.socket.start(me.id);
    this.emit('me', me);
    await Promise.all([
      this.loadRooms().catch(() => {}),
      this.loadNotificationCount().catch(() => {}),
      this.loadUnreadMentions().catch(() => {}),
      this.loadMyRequests().catch(() => {}),
    ]);
  }

  stop({ forgetPending = false } = {}) {
    this.socket.stop({ forgetPending });
    this._reset();
    this.emit('rooms');
    this.emit('notifications');
  }

  // ---- rooms -----------------------------------------------------------------------------

  /** Loads my rooms and subscribes to every one (one socket for all). */
  loadRooms() {
    if (this._roomsPromise) {
      // A load is under way but may have started before the change the caller knows about:
      // run one more after it.
      if (!this._roomsNext) {
        this._roomsNext = this._roomsPromise.catch(() => {}).then(() => {
          this._roomsNext = null;
          return this.loadRooms();
        });
      }
      return this._roomsNext;
    }
    this._roomsPromise = (async () => {
      try {
        const gen = this._gen;
        const list = await api.myRooms();
        if (gen !== this._gen) return this.rooms;
        const next = new Map();
        for (const r of list) {
          const old = this.rooms.get(r.id);
          const room = { ...r };
          room.last_read_seq = r.last_read_seq ?? 0;
          room.last_seq = Math.max(r.last_seq ?? 0, old ? old.last_seq : 0, room.last_read_seq);
          // The server's count (deleted messages and thread replies left out), then kept live.
          room.unread = r.unread_count ?? Math.max(0, room.last_seq - room.last_read_seq);
          next.set(r.id, room);
        }
        for (const id of this.rooms.keys()) {
          if (!next.has(id)) this.socket.unsubscribe(id);
        }
        // Tell this user's other tabs when the server's list differs from the last one loaded
        // (rooms added here before loading, e.g. one just created, count as changes).
        const ids = [...next.keys()].sort().join(',');
        if (this._loadedIds !== null && ids !== this._loadedIds && this._tabs && this.me) {
          this._tabs.postMessage({ userId: this.me.id });
        }
        this._loadedIds = ids;
        this.rooms = next;
        this.roomsLoaded = true;
        for (const r of next.values()) this.socket.subscribe(r.id, r.last_seq);
        this.emit('rooms');
        return next;
      } finally {
        this._roomsPromise = null;
      }
    })();
    return this._roomsPromise;
  }

  async ensureRooms() {
    if (!this.roomsLoaded) await this.loadRooms();
    return this.rooms;
  }

  isMember(roomId) { return this.rooms.has(roomId); }

  isOwner(room) { return !!(room && this.me && room.created_by === this.me.id); }

  /** Unread count as shown: the open, visible room shows none. */
  unread(roomId) {
    const r = this.rooms.get(roomId);
    if (!r) return 0;
    if (roomId === this.activeRoomId && document.visibilityState === 'visible') return 0;
    return Math.max(0, r.unread || 0);
  }

  totalUnread() {
    let n = 0;
    for (const id of this.rooms.keys()) n += this.unread(id);
    return n;
  }

  setActiveRoom(roomId) {
    this.activeRoomId = roomId;
    this.emit('rooms');
  }

  /** Adds or updates a room after create/join without waiting for a reload. */
  upsertRoom(room) {
    const old = this.rooms.get(room.id);
    const merged = { last_read_seq: 0, ...old, ...room };
    merged.last_seq = Math.max(room.last_seq ?? 0, old ? old.last_seq : 0);
    if (merged.last_read_seq === undefined || merged.last_read_seq === null) merged.last_read_seq = old ? old.last_read_seq : merged.last_seq;
    merged.unread = room.unread_count ?? (old ? old.unread : 0) ?? 0;
    this.rooms.set(room.id, merged);
    this.socket.subscribe(room.id, merged.last_seq);
    this.emit('rooms');
  }

  /** Drops a room locally (left / removed / deleted). */
  dropRoom(roomId) {
    this.rooms.delete(roomId);
    this.socket.forget(roomId);
    this.socket.discardRoom(roomId);
    this._readSent.delete(roomId);
    this.emit('rooms');
  }

  /** Marks messages up to `seq` read (socket if connected, REST otherwise). */
  markRead(roomId, seq) {
    const r = this.rooms.get(roomId);
    if (!r || !Number.isFinite(seq) || seq <= 0) return;
    const sent = this._readSent.get(roomId) || 0;
    if (seq <= (r.last_read_seq || 0) || seq <= sent) return;
    this._readSent.set(roomId, seq);
    // What the user has seen is read now: the badge must not wait for the server's answer.
    this._applyRead(roomId, seq);
    if (!this.socket.read(roomId, seq)) {
      api.readMarker(roomId, seq)
        .then((a) => this._applyRead(a.room_id, a.last_read_seq, a.unread_count))
        .catch(() => this._readSent.set(roomId, sent));
    }
  }

  _applyRead(roomId, lastRead, unreadCount) {
    const r = this.rooms.get(roomId);
    if (!r) return;
    r.last_read_seq = Math.max(r.last_read_seq || 0, lastRead || 0);
    if (typeof unreadCount === 'number') {
      r.last_seq = Math.max(r.last_seq || 0, r.last_read_seq + unreadCount);
      r.unread = unreadCount;
    } else {
      // Read here, before the server's count: nothing unread up to the marker.
      r.unread = Math.min(r.unread || 0, Math.max(0, (r.last_seq || 0) - r.last_read_seq));
    }
    this.emit('rooms');
    this._clearReadMentions(roomId);
  }

  // ---- live events -----------------------------------------------------------------------

  _onEvent(f) {
    const roomId = f.room_id || (f.payload && f.payload.room_id);
    const r = roomId ? this.rooms.get(roomId) : null;
    switch (f.event_type) {
      case 'MESSAGE_CREATED': {
        const seq = typeof f.seq === 'number' ? f.seq : Number(f.payload && f.payload.seq);
        if (r && Number.isFinite(seq) && seq > (r.last_seq || 0)) {
          r.last_seq = seq;
          // Your own messages (from any tab) are read, as the server records them, and all
          // before them; a thread reply is its thread's unread, not the room's.
          if (this.me && f.payload && f.payload.user_id === this.me.id) {
            r.last_read_seq = Math.max(r.last_read_seq || 0, seq);
            r.unread = 0;
          } else if (!(f.message && f.message.thread_root_seq) && seq > (r.last_read_seq || 0)) {
            r.unread = (r.unread || 0) + 1;
          }
          this.emit('rooms');
        }
        break;
      }
      case 'ROOM_UPDATED':
        if (r && f.payload) {
          if ('description' in f.payload) r.description = f.payload.description || null;
          if ('is_public' in f.payload) applyIsPublic(r, f.payload.is_public);
          this.emit('rooms');
        }
        break;
      case 'ROOM_DELETED':
        if (r) {
          this.dropRoom(roomId);
          this.emit('room-gone', { roomId, reason: 'room_deleted', name: r.name });
        }
        break;
      case 'USER_JOINED':
        if (r) { r.participants_count = (r.participants_count || 0) + 1; this.emit('rooms'); }
        break;
      case 'USER_LEFT':
        if (r) { r.participants_count = Math.max(0, (r.participants_count || 1) - 1); this.emit('rooms'); }
        break;
      case 'NOTIFICATION':
        if (f.notification) this._onNotification(f.notification);
        break;
      default:
        break;
    }
    this.emit('event', f);
  }

  _onUnsubscribed(f) {
    if (f.reason === 'client') return;
    const r = this.rooms.get(f.room_id);
    const name = r ? r.name : null;
    if (f.reason === 'disconnected') {
      // The owner cut this connection off; we are still a member. Resubscribe on next open.
      this.emit('room-gone', { roomId: f.room_id, reason: f.reason, name });
      return;
    }
    if (r) this.dropRoom(f.room_id);
    this.emit('room-gone', { roomId: f.room_id, reason: f.reason, name });
  }

  async _afterReconnect() {
    // Membership or notifications may have changed while we were away.
    this.loadRooms().catch(() => {});
    this.loadNotificationCount().catch(() => {});
    this.loadUnreadMentions().catch(() => {});
    if (this.notifLoaded) this.loadNotifications().catch(() => {});
    this.loadMyRequests().catch(() => {});
  }

  // ---- notifications ---------------------------------------------------------------------

  _onNotification(n) {
    if (this.notifications.some((x) => x.id === n.id)) return;
    if (this.notifLoaded) this.notifications.unshift(n);
    if (!n.read) this.notifUnread += 1;
    this.emit('notifications');
    this.emit('notification', n);
    this._trackMention(n);
    if (n.type === 'JOIN_REQUEST_ACCEPTED' || n.type === 'ADDED_TO_ROOM') {
      this.loadRooms().catch(() => {});
      this.loadMyRequests().catch(() => {});
    } else if (n.type === 'JOIN_REQUEST_REJECTED') {
      this.loadMyRequests().catch(() => {});
    }
  }

  async loadNotifications() {
    const gen = this._gen;
    const list = await api.notifications(100, false);
    if (gen !== this._gen) return;
    this.notifications = list;
    this.notifLoaded = true;
    await this.loadNotificationCount().catch(() => {});
    this.emit('notifications');
  }

  async loadNotificationCount() {
    const gen = this._gen;
    const c = await api.unreadNotifications();
    if (gen !== this._gen) return;
    this.notifUnread = c.unread_count || 0;
    this.emit('notifications');
  }

  /** Unread mentions, so that reading the message in its room clears them (as chat apps do). */
  async loadUnreadMentions() {
    const gen = this._gen;
    const list = await api.notifications(100, true);
    if (gen !== this._gen) return;
    for (const n of list) this._trackMention(n);
  }

  _trackMention(n) {
    // A reply is cleared like a mention: by reading its message in the room.
    if ((n.type !== 'MENTION' && n.type !== 'REPLY') || n.read || !n.payload) return;
    const seq = Number(n.payload.seq);
    if (!n.payload.room_id || !Number.isFinite(seq)) return;
    this.unreadMentions.set(n.id, { roomId: n.payload.room_id, seq });
    // A mention can arrive after its message was already read on screen.
    this._clearReadMentions(n.payload.room_id);
  }

  /** Marks read the mentions of messages the user has read in `roomId`. */
  _clearReadMentions(roomId) {
    const r = this.rooms.get(roomId);
    if (!r || !r.last_read_seq) return;
    for (const [id, m] of this.unreadMentions) {
      if (m.roomId !== roomId || m.seq > r.last_read_seq) continue;
      // It leaves the map at once (markNotificationRead), and comes back if the call fails.
      this.markNotificationRead(id).catch(() => this.unreadMentions.set(id, m));
    }
  }

  async markNotificationRead(id) {
    const trackedUnread = this.unreadMentions.delete(id);
    await api.markNotificationRead(id);
    const n = this.notifications.find((x) => x.id === id);
    // Counted once, whether the list is loaded or only the mention was tracked.
    if (n ? !n.read : trackedUnread) this.notifUnread = Math.max(0, this.notifUnread - 1);
    if (n) n.read = true;
    this.emit('notifications');
  }

  async markAllNotificationsRead() {
    await api.markAllNotificationsRead();
    this.unreadMentions.clear();
    for (const n of this.notifications) n.read = true;
    this.notifUnread = 0;
    this.emit('notifications');
  }

  async deleteNotification(id) {
    await api.deleteNotification(id);
    const n = this.notifications.find((x) => x.id === id);
    this.notifications = this.notifications.filter((x) => x.id !== id);
    if (n && !n.read) this.notifUnread = Math.max(0, this.notifUnread - 1);
    this.emit('notifications');
  }

  // ---- join requests ---------------------------------------------------------------------

  async loadMyRequests() {
    const gen = this._gen;
    const list = await api.myRequests();
    if (gen !== this._gen) return this.myRequests;
    this.myRequests = list;
    this.emit('requests');
    return this.myRequests;
  }
}

export const store = new Store();
