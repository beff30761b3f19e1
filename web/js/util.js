// Small helpers without DOM access.

/** A random UUID v4 (crypto.randomUUID exists only in secure contexts). */
export function uuid() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function') {
    try { return crypto.randomUUID(); } catch { /* not a secure context */ }
  }
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** A tiny event emitter. on() returns an unsubscribe function. */
export class Emitter {
  constructor() { this._h = new Map(); }
  on(type, fn) {
    if (!this._h.has(type)) this._h.set(type, new Set());
    this._h.get(type).add(fn);
    return () => this.off(type, fn);
  }
  off(type, fn) { this._h.get(type)?.delete(fn); }
  emit(type, ...args) {
    for (const fn of [...(this._h.get(type) || [])]) {
      try { fn(...args); } catch (e) { console.error(`listener for ${type} failed`, e); }
    }
  }
}

const isNameChar = (c) => /[\p{L}\p{N}_.\-]/u.test(c);

/**
 * Splits text into plain parts and @mentions, with the server's rule: '@' at a word start,
 * followed by username characters (letters, digits, _ . -), minus a trailing '.' or '-'.
 * Returns [{text, mention: username|null}].
 */
export function splitMentions(text) {
  const chars = [...text];
  const out = [];
  let buf = '';
  let i = 0;
  while (i < chars.length) {
    const atStart = i === 0 || !isNameChar(chars[i - 1]);
    if (chars[i] === '@' && atStart) {
      let end = i + 1;
      while (end < chars.length && isNameChar(chars[end])) end++;
      while (end > i + 1 && (chars[end - 1] === '.' || chars[end - 1] === '-')) end--;
      if (end > i + 1) {
        if (buf) { out.push({ text: buf, mention: null }); buf = ''; }
        const name = chars.slice(i + 1, end).join('');
        out.push({ text: '@' + name, mention: name });
        i = end;
        continue;
      }
    }
    buf += chars[i];
    i++;
  }
  if (buf) out.push({ text: buf, mention: null });
  return out;
}

export function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

/** Runs async fns with at most `n` at a time; resolves to their results (errors as undefined). */
export async function pool(items, n, fn) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      try { results[i] = await fn(items[i], i); } catch { results[i] = undefined; }
    }
  }
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return results;
}

/**
 * A room name as `me` should read it. Rooms come named for the caller; a notification carries
 * a direct conversation's stored name (everyone's usernames, then U+2063): the others' names.
 */
export function displayRoomName(name, me) {
  if (!name || !name.endsWith('\u2063')) return name;
  const others = name.slice(0, -1).split(', ').filter((n) => n !== me);
  return others.length ? others.join(', ') : me;
}

/** A room's visibility: `public`, `private`, `unlisted` or `direct` (servers without the field: from is_public). */
export function visibilityOf(room) {
  return room.visibility || (room.is_public ? 'public' : 'private');
}

/** "Public", "Private", "Unlisted" or "Direct". */
export function visibilityLabel(room) {
  const v = visibilityOf(room);
  return v.charAt(0).toUpperCase() + v.slice(1);
}

/** Applies a live ROOM_UPDATED `is_public` to a room (it carries no visibility: a room made
 *  public is public, one made non-public stays unlisted if it was). */
export function applyIsPublic(room, value) {
  room.is_public = String(value).toLowerCase() === 'true';
  if (room.is_public) room.visibility = 'public';
  else if (visibilityOf(room) === 'public') room.visibility = 'private';
}
