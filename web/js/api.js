// REST client for /api. Every error becomes an ApiError with readable messages.

import { Emitter } from './util.js';

export const apiEvents = new Emitter();

export class ApiError extends Error {
  constructor(status, messages, detail) {
    super(messages.join(' '));
    this.status = status;
    this.messages = messages;
    this.detail = detail;
  }
}

/** "username must be 3 to 32 characters" -> "Username must be 3 to 32 characters." */
function sentence(m) {
  const t = String(m).trim();
  if (!t) return t;
  return t[0].toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? '' : '.');
}

function messagesOf(status, body) {
  const d = body && body.detail;
  if (typeof d === 'string' && d) return [sentence(d)];
  // Every field the server found wrong, each as a sentence (a form lists them all).
  if (Array.isArray(d) && d.length) {
    return d.map((e) => (e && typeof e.msg === 'string' ? sentence(e.msg) : JSON.stringify(e)));
  }
  if (status === 401) return ['You are not logged in.'];
  if (status === 403) return ['You are not allowed to do that.'];
  if (status === 404) return ['Not found.'];
  if (status === 413) return ['That file is too large.'];
  if (status === 429) return ['Too many requests; please wait a moment.'];
  if (status >= 500) return [`The server had a problem (HTTP ${status}). Please try again.`];
  return [`Request failed (HTTP ${status}).`];
}

async function request(method, path, { body, query, raw, quiet401 = false } = {}) {
  let url = '/api' + path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) q.set(k, String(v));
    const qs = q.toString();
    if (qs) url += '?' + qs;
  }
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  } else if (raw !== undefined) {
    // A file goes as its bytes; the server finds its type from them.
    init.headers['Content-Type'] = 'application/octet-stream';
    init.body = raw;
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch {
    throw new ApiError(0, ['Cannot reach the server. Check your connection and try again.']);
  }
  const text = await res.text().catch(() => '');
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const err = new ApiError(res.status, messagesOf(res.status, data), data && data.detail);
    if (res.status === 401 && !quiet401) apiEvents.emit('unauthorized', err);
    throw err;
  }
  return data;
}

const enc = encodeURIComponent;

export const api = {
  // users
  register: (username, password) => request('POST', '/users/register-user', { body: { username, password } }),
  login: (username, password) => request('POST', '/users/login-user', { body: { username, password }, quiet401: true }),
  logout: () => request('POST', '/users/logout-user', { quiet401: true }),
  me: () => request('GET', '/users/get-me', { quiet401: true }),
  deleteAccount: (password) => request('POST', '/users/delete-account', { body: { password } }),

  // rooms
  createRoom: (name, description, visibility) => request('POST', '/rooms/create-room', { body: { name, description, is_public: visibility === 'public', visibility } }),
  openDirect: (usernames) => request('POST', '/rooms/create-direct', { body: { usernames } }),
  updateRoom: (id, changes) => request('PUT', `/rooms/update-room/${enc(id)}`, { body: changes }),
  deleteRoom: (id) => request('DELETE', `/rooms/delete-room/${enc(id)}`),
  getRoom: (id) => request('GET', `/rooms/get-room/${enc(id)}`),
  roomUsers: (id) => request('GET', `/rooms/get-users/${enc(id)}`),
  myRooms: () => request('GET', '/rooms/get-rooms'),
  topRooms: (limit = 6, onlyPublic = false) => request('GET', '/rooms/get-top-rooms', { query: { limit, only_public: onlyPublic } }),
  searchRooms: (text, limit = 20) => request('GET', '/rooms/get-search-rooms', { query: { text, limit } }),
  requestJoin: (roomId, message) => request('POST', '/rooms/create-join-request', { body: { room_id: roomId, message: message || null } }),
  roomRequests: (roomId) => request('GET', `/rooms/get-join-requests-by-room/${enc(roomId)}`),
  myRequests: () => request('GET', '/rooms/get-join-requests-by-user'),
  handleRequest: (requestId, accept) => request('POST', `/rooms/handle-join-request/${enc(requestId)}`, { query: { accept } }),
  removeUser: (roomId, userId) => request('DELETE', `/rooms/remove-user/${enc(roomId)}/${enc(userId)}`),
  leaveRoom: (roomId) => request('DELETE', `/rooms/leave-room/${enc(roomId)}`),
  readMarker: (roomId, seq) => request('PUT', `/rooms/read-marker/${enc(roomId)}`, { body: { seq } }),
  activeUsers: (roomId) => request('GET', `/ws/get-active-user-ids/${enc(roomId)}`),

  // messages
  /** A message; a reply quoting `replyToSeq`, and/or a reply in the thread of `threadRootSeq`. */
  sendMessage: (roomId, content, clientMsgId, replyToSeq = null, threadRootSeq = null, attachments = []) => request('POST', `/messages/create-message/${enc(roomId)}`, {
    body: { content, client_msg_id: clientMsgId, reply_to_seq: replyToSeq, ...(threadRootSeq ? { thread_root_seq: threadRootSeq } : {}), ...(attachments.length ? { attachments } : {}) },
  }),
  /** Shares a file in the room: `{key, name, content_type, size, width, height, url}`. */
  uploadFile: (roomId, file) => request('POST', `/files/upload-file/${enc(roomId)}`, { query: { name: file.name }, raw: file }),
  /** A thread: `{root, replies}`, the replies in ascending seq after `afterSeq`. */
  getThread: (roomId, rootSeq, afterSeq = 0, limit = 50) => request('GET', `/messages/get-thread/${enc(roomId)}/${enc(rootSeq)}`, { query: { after_seq: afterSeq, limit } }),
  /** Marks the thread of `rootSeq` read up to `seq`: `{room_id, root_seq, read_seq}`. */
  threadRead: (roomId, rootSeq, seq) => request('PUT', `/messages/thread-read-marker/${enc(roomId)}/${enc(rootSeq)}`, { body: { seq } }),
  /** Follows the thread of `rootSeq` (told of its replies) or stops: `{room_id, root_seq, following}`. */
  threadFollow: (roomId, rootSeq, follow) => request('PUT', `/messages/thread-follow/${enc(roomId)}/${enc(rootSeq)}`, { body: { follow } }),
  pin: (id, pinned) => request('POST', `/messages/${pinned ? 'pin' : 'unpin'}-message/${enc(id)}`),
  searchMessages: (text, roomId, order = 'newest', limit = 20, offset = 0) => request('GET', '/messages/search-messages', { query: { text, room_id: roomId, order, limit, offset } }),
  pinned: (roomId) => request('GET', `/messages/get-pinned/${enc(roomId)}`),
  react: (id, emoji, added) => request('POST', `/messages/${added ? 'add' : 'remove'}-reaction/${enc(id)}`, { body: { emoji } }),
  editMessage: (id, newContent) => request('PUT', `/messages/update-message/${enc(id)}`, { body: { new_content: newContent } }),
  deleteMessage: (id) => request('DELETE', `/messages/delete-message/${enc(id)}`),
  /** Newest-first page before `beforeSeq` (or the newest page). */
  messagesBefore: (roomId, beforeSeq, limit = 50) => request('GET', `/messages/get-messages/${enc(roomId)}`, { query: { before_seq: beforeSeq, limit } }),
  /** Ascending page after `afterSeq`. */
  messagesAfter: (roomId, afterSeq, limit = 200) => request('GET', `/messages/get-messages/${enc(roomId)}`, { query: { after_seq: afterSeq, limit } }),

  // notifications
  notifications: (limit = 50, unreadOnly = false) => request('GET', '/notifications/get-notifications', { query: { limit, unread_only: unreadOnly } }),
  markNotificationRead: (id) => request('PUT', `/notifications/update-notification/${enc(id)}`),
  markAllNotificationsRead: () => request('PUT', '/notifications/update-notifications/read-all'),
  unreadNotifications: () => request('GET', '/notifications/get-notifications-count-unread'),
  deleteNotification: (id) => request('DELETE', `/notifications/delete-notification/${enc(id)}`),

  // analytics
  roomStats: (roomId) => request('GET', '/analytics/get-room-stats', { query: { room_id: roomId } }),
  userActivity: (userId) => request('GET', '/analytics/get-user-activity', { query: { user_id: userId } }),
  topActiveRooms: (limit = 10) => request('GET', '/analytics/get-top-active-rooms', { query: { limit } }),
  messagesPerMinutes: (roomId, sinceMinutes) => request('GET', '/analytics/get-message-per-minutes', { query: { room_id: roomId, since_minutes: sinceMinutes } }),
  retention: (days = 30) => request('GET', '/analytics/get-user-retention', { query: { days } }),
  editDeleteRatio: () => request('GET', '/analytics/get-message-edit-delete-ratio'),
  topSocialUsers: (limit = 10) => request('GET', '/analytics/get-top-social-users', { query: { limit } }),
};
