// One WebSocket for the whole app (native protocol, many rooms per socket).
//
// - Reconnects with exponential backoff + jitter (cap 10 s) and resubscribes every room with
//   since_seq = the last seq seen, so the server replays exactly what was missed.
// - Drops MESSAGE_CREATED frames whose seq is not above the last seen seq of the room.
// - Sends are queued (and kept in localStorage) until acked; retries reuse the same
//   client_msg_id, so the server stores a message once. If the socket stays down, the queue
//   falls back to the (equally idempotent) REST endpoint.

import { Emitter, uuid } from './util.js';

const PING_EVERY_MS = 20000;
const DEAD_AFTER_MS = 45000;
const RESEND_AFTER_MS = 8000;
const REST_FALLBACK_AFTER_MS = 4000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 10000;
const RETRYABLE_SEND_ERRORS = new Set(['rate_limited', 'unavailable', 'internal']);

export class ChatSocket extends Emitter {
  /**
   * @param {{restSend?: (entry) => Promise<object>, checkSession?: () => Promise<boolean>}} opts
   */
  constructor(opts = {}) {
    super();
    this.restSend = opts.restSend || null;
    this.checkSession = opts.checkSession || null;
    this.ws = null;
    this.status = 'idle';
    this.stopped = true;
    this.attempts = 0;
    this.nextRetryAt = 0;
    this.subs = new Set(); // rooms we want to be subscribed to
    this.live = new Set(); // rooms the server confirmed ("subscribed") on this socket
    this.seqs = new Map(); // room -> last message seq seen (kept across unsubscribes)
    this.pending = new Map(); // client_msg_id -> entry
    this.userId = null;
    this._timers = {};
    this._onOnline = () => this.reconnectNow();
    this._onOffline = () => { if (this.status !== 'connected') this._setStatus('offline'); };
    this._onVisible = () => { if (document.visibilityState === 'visible' && !this.stopped && this.status !== 'connected' && this.status !== 'connecting') this.reconnectNow(); };
  }

  // ---- lifecycle -------------------------------------------------------------------------

  start(userId) {
    this.stop();
    this.userId = userId;
    this.stopped = false;
    this.attempts = 0;
    this._loadPending();
    window.addEventListener('online', this._onOnline);
    window.addEventListener('offline', this._onOffline);
    document.addEventListener('visibilitychange', this._onVisible);
    this._timers.tick = setInterval(() => this._tick(), 1000);
    this._connect();
  }

  /** Closes the socket for good (logout / session end). */
  stop({ forgetPending = false } = {}) {
    this.stopped = true;
    window.removeEventListener('online', this._onOnline);
    window.removeEventListener('offline', this._onOffline);
    document.removeEventListener('visibilitychange', this._onVisible);
    for (const t of Object.values(this._timers)) { clearTimeout(t); clearInterval(t); }
    this._timers = {};
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      this._detach(ws);
      try { ws.close(1000, 'bye'); } catch { /* already closed */ }
    }
    if (forgetPending && this.userId) {
      try { localStorage.removeItem(this._storageKey()); } catch { /* storage unavailable */ }
    }
    this.subs.clear();
    this.live.clear();
    this.seqs.clear();
    this.pending.clear();
    this._setStatus('idle');
  }

  /** Connects at once if not connected (e.g. the browser came back online). */
  reconnectNow() {
    if (this.stopped || this.status === 'connected' || this.status === 'connecting') return;
    clearTimeout(this._timers.retry);
    this._connect();
  }

  get connected() { return this.status === 'connected' && this.ws && this.ws.readyState === WebSocket.OPEN; }

  _setStatus(status) {
    this.status = status;
    this.emit('status', { status, nextRetryAt: this.nextRetryAt, attempts: this.attempts });
  }

  _connect() {
    if (this.stopped) return;
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/ws/stream`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this._scheduleReconnect(false, 1006);
      return;
    }
    this.ws = ws;
    this.live.clear();
    let opened = false;
    this._setStatus('connecting');
    ws.onopen = () => {
      if (ws !== this.ws) return;
      opened = true;
      const wasReconnect = this.attempts > 0 || this._everConnected;
      this._everConnected = true;
      this.attempts = 0;
      this.lastRx = Date.now();
      this._setStatus('connected');
      for (const room of this.subs) this._sendSubscribe(room);
      for (const e of this._pendingInOrder()) if (e.state !== 'failed') this._trySend(e);
      clearInterval(this._timers.ping);
      this._timers.ping = setInterval(() => this._heartbeat(), PING_EVERY_MS);
      if (wasReconnect) this.emit('reconnected');
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastRx = Date.now();
      this._onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this._closed(ws, opened, ev.code, ev.reason);
    };
    ws.onerror = () => { /* a close event follows */ };
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  }

  /** Gives up on the current socket (dead connection) and reconnects. */
  _drop(code = 4000) {
    const ws = this.ws;
    if (!ws) return;
    this._detach(ws);
    try { ws.close(4000, 'client timeout'); } catch { /* ignore */ }
    this._closed(ws, true, code, 'no heartbeat');
  }

  async _closed(ws, opened, code, reason) {
    this.ws = null;
    this.live.clear();
    clearInterval(this._timers.ping);
    for (const e of this.pending.values()) if (e.state === 'sending') e.state = 'queued';
    this.emit('closed', { code, reason });
    if (this.stopped) return;
    if (code === 4401) {
      this.emit('session-ended', { code, reason });
      return;
    }
    if (!opened && this.checkSession) {
      // The upgrade failed: maybe the session is gone (the browser does not tell us why).
      const ok = await this.checkSession().catch(() => true);
      if (this.stopped) return;
      if (ok === false) {
        this.emit('session-ended', { code: 401, reason: 'session ended' });
        return;
      }
    }
    this._scheduleReconnect(opened, code);
  }

  _scheduleReconnect(opened, code) {
    this.attempts += 1;
    let base = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** (this.attempts - 1));
    if (code === 1008 || code === 4008) base = Math.max(base, 3000); // rate limit abuse / slow consumer
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.nextRetryAt = Date.now() + delay;
    clearTimeout(this._timers.retry);
    this._timers.retry = setTimeout(() => this._connect(), delay);
    this._setStatus(navigator.onLine === false ? 'offline' : 'reconnecting');
  }

  _heartbeat() {
    if (!this.connected) return;
    if (Date.now() - this.lastRx > DEAD_AFTER_MS) {
      this._drop();
      return;
    }
    this._raw({ type: 'ping' });
  }

  _raw(obj) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    try {
      this.ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  // ---- rooms -----------------------------------------------------------------------------

  lastSeq(room) { return this.seqs.get(room) ?? 0; }

  /** Subscribes to a room (idempotent); sinceSeq = last seq the app already has. */
  subscribe(room, sinceSeq) {
    if (this.subs.has(room)) return;
    const known = this.seqs.get(room);
    if (typeof sinceSeq === 'number' && (known === undefined || sinceSeq > known)) this.seqs.set(room, sinceSeq);
    this.subs.add(room);
    if (this.connected) this._sendSubscribe(room);
  }

  unsubscribe(room) {
    if (!this.subs.delete(room)) return;
    this.live.delete(room);
    this._raw({ type: 'unsubscribe', room_id: room, ref: { op: 'unsubscribe', room } });
  }

  /** Forgets a room entirely (left / removed / deleted). */
  forget(room) {
    this.subs.delete(room);
    this.live.delete(room);
    this.seqs.delete(room);
  }

  _sendSubscribe(room) {
    const frame = { type: 'subscribe', room_id: room, ref: { op: 'subscribe', room } };
    if (this.seqs.has(room)) frame.since_seq = this.seqs.get(room);
    this._raw(frame);
  }

  typing(room, isTyping) {
    if (!this.connected) return false;
    return this._raw({ type: 'typing', room_id: room, is_typing: !!isTyping });
  }

  /** Sends a read marker; false if not connected (the caller then uses REST). */
  read(room, seq) {
    if (!this.connected) return false;
    return this._raw({ type: 'read', room_id: room, seq, ref: { op: 'read', room } });
  }

  // ---- sending ---------------------------------------------------------------------------

  /**
   * Queues a message (a reply when `replyToSeq` names the seq it quotes, a thread reply when
   * `threadRootSeq` names its thread's root, with the files already uploaded to the room as
   * `attachments`, `[{key, name}]`); returns its pending entry.
   */
  send(room, content, replyToSeq = null, threadRootSeq = null, attachments = []) {
    const entry = {
      cmid: uuid(),
      room_id: room,
      content,
      reply_to_seq: replyToSeq,
      thread_root_seq: threadRootSeq,
      attachments,
      createdAt: new Date().toISOString(),
      queuedAt: Date.now(),
      state: 'queued',
      error: null,
      sentAt: 0,
      retryAt: 0,
    };
    this.pending.set(entry.cmid, entry);
    this._savePending();
    this.emit('pending', room);
    this._trySend(entry);
    return entry;
  }

  pendingFor(room) {
    return this._pendingInOrder().filter((e) => e.room_id === room);
  }

  retry(cmid) {
    const e = this.pending.get(cmid);
    if (!e) return;
    e.state = 'queued';
    e.error = null;
    e.queuedAt = Date.now();
    e.retryAt = 0;
    this.emit('pending', e.room_id);
    this._trySend(e);
  }

  discard(cmid) {
    const e = this.pending.get(cmid);
    if (!e) return;
    this.pending.delete(cmid);
    this._savePending();
    this.emit('pending', e.room_id);
  }

  /** Drops queued messages of a room we are no longer in. */
  discardRoom(room) {
    let changed = false;
    for (const [id, e] of this.pending) if (e.room_id === room) { this.pending.delete(id); changed = true; }
    if (changed) { this._savePending(); this.emit('pending', room); }
  }

  _pendingInOrder() {
    return [...this.pending.values()].sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0));
  }

  _trySend(e) {
    if (e.state === 'failed' || !this.connected || Date.now() < e.retryAt) return;
    const frame = { type: 'send', room_id: e.room_id, content: e.content, client_msg_id: e.cmid, ref: { op: 'send', id: e.cmid } };
    if (e.reply_to_seq) frame.reply_to_seq = e.reply_to_seq;
    if (e.thread_root_seq) frame.thread_root_seq = e.thread_root_seq;
    if (e.attachments && e.attachments.length) frame.attachments = e.attachments;
    const ok = this._raw(frame);
    if (ok) {
      e.state = 'sending';
      e.sentAt = Date.now();
    }
  }

  _acked(cmid, ack) {
    const e = this.pending.get(cmid);
    if (!e) return;
    this.pending.delete(cmid);
    this._savePending();
    this.emit('ack', { ...ack, content: e.content, entry: e });
    this.emit('pending', e.room_id);
  }

  _tick() {
    if (this.stopped) return;
    const now = Date.now();
    for (const e of this._pendingInOrder()) {
      if (e.state === 'failed' || e.restBusy) continue;
      if (this.connected) {
        if (e.state === 'queued' && now >= e.retryAt) this._trySend(e);
        else if (e.state === 'sending' && now - e.sentAt > RESEND_AFTER_MS) {
          e.state = 'queued';
          this._trySend(e); // same client_msg_id: stored once
        }
      } else if (this.restSend && now - e.queuedAt > REST_FALLBACK_AFTER_MS && now >= e.retryAt) {
        this._restFallback(e);
      }
    }
  }

  async _restFallback(e) {
    e.restBusy = true;
    try {
      const m = await this.restSend(e);
      if (this.pending.has(e.cmid)) {
        this._acked(e.cmid, { type: 'ack', room_id: m.room_id, client_msg_id: e.cmid, message_id: m.id, seq: m.seq, created_at: m.created_at, duplicate: false, via: 'rest', message: m });
      }
    } catch (err) {
      const status = err && err.status;
      if (status === 0 || status === 429 || status >= 500 || status === undefined) {
        e.retryAt = Date.now() + 3000;
      } else if (status === 401) {
        e.retryAt = Date.now() + 5000;
      } else {
        e.state = 'failed';
        e.error = (err && err.message) || 'Could not send';
        this.emit('pending', e.room_id);
      }
    } finally {
      e.restBusy = false;
    }
  }

  _storageKey() { return `livechat.pending.${this.userId}`; }

  _savePending() {
    if (!this.userId) return;
    try {
      const list = this._pendingInOrder().map(({ cmid, room_id, content, createdAt, reply_to_seq, thread_root_seq, attachments }) => ({ cmid, room_id, content, createdAt, reply_to_seq, thread_root_seq, attachments }));
      if (list.length) localStorage.setItem(this._storageKey(), JSON.stringify(list));
      else localStorage.removeItem(this._storageKey());
    } catch { /* storage full or unavailable: keep in memory only */ }
  }

  _loadPending() {
    this.pending.clear();
    try {
      const list = JSON.parse(localStorage.getItem(this._storageKey()) || '[]');
      for (const x of list) {
        if (x && x.cmid && x.room_id && typeof x.content === 'string') {
          this.pending.set(x.cmid, { ...x, queuedAt: Date.now(), state: 'queued', error: null, sentAt: 0, retryAt: 0 });
        }
      }
    } catch { /* ignore broken storage */ }
  }

  // ---- incoming --------------------------------------------------------------------------

  _onFrame(data) {
    let f;
    try { f = JSON.parse(data); } catch { return; }
    if (!f || typeof f !== 'object') return;
    if (f.type) {
      this._onControl(f);
      return;
    }
    if (!f.event_type) return;
    if (f.event_type === 'MESSAGE_CREATED') {
      const room = f.room_id || (f.payload && f.payload.room_id);
      const seq = typeof f.seq === 'number' ? f.seq : Number(f.payload && f.payload.seq);
      if (room && Number.isFinite(seq)) {
        const last = this.seqs.get(room);
        if (last !== undefined && seq <= last) return; // duplicate or old
        this.seqs.set(room, seq);
      }
      const cmid = f.client_msg_id || (f.message && f.message.client_msg_id);
      if (cmid && this.pending.has(cmid)) {
        const m = f.message || {};
        this._acked(cmid, { type: 'ack', room_id: room, client_msg_id: cmid, message_id: m.id, seq, created_at: m.created_at, duplicate: true });
      }
    }
    this.emit('event', f);
  }

  _onControl(f) {
    const ref = f.ref && typeof f.ref === 'object' ? f.ref : {};
    switch (f.type) {
      case 'pong':
        break;
      case 'subscribed':
        this.live.add(f.room_id);
        if (!this.seqs.has(f.room_id) && typeof f.last_seq === 'number') this.seqs.set(f.room_id, f.last_seq);
        this.emit('subscribed', f);
        break;
      case 'resumed':
        this.emit('resumed', f);
        break;
      case 'unsubscribed':
        this.live.delete(f.room_id);
        if (f.reason !== 'client') this.subs.delete(f.room_id);
        this.emit('unsubscribed', f);
        break;
      case 'ack':
        this._acked(f.client_msg_id, f);
        break;
      case 'read_ack':
        this.emit('read_ack', f);
        break;
      case 'error':
        this._onError(f, ref);
        break;
      default:
        break;
    }
  }

  _onError(f, ref) {
    if (ref.op === 'send' && ref.id && this.pending.has(ref.id)) {
      const e = this.pending.get(ref.id);
      if (RETRYABLE_SEND_ERRORS.has(f.code)) {
        e.state = 'queued';
        e.retryAt = Date.now() + (f.code === 'rate_limited' ? 1500 : 3000);
      } else {
        e.state = 'failed';
        e.error = f.message || f.code;
      }
      this.emit('pending', e.room_id);
    } else if (ref.op === 'subscribe' && ref.room) {
      if (f.code === 'forbidden' || f.code === 'not_found') {
        this.subs.delete(ref.room);
        this.live.delete(ref.room);
      }
      this.emit('subscribe-error', { room: ref.room, code: f.code, message: f.message });
    }
    this.emit('error', f);
  }
}
