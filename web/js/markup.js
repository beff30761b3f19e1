// Message text -> DOM: a safe subset of markdown (``` code blocks ```, `inline code`, **bold**,
// *italic* / _italic_), web links made clickable, and @mentions highlighted. Only elements
// made here and text nodes: nothing from a message is ever parsed as HTML, and only http(s)
// links become links.

import { h } from './dom.js';
import { splitMentions } from './util.js';

// Each rule turns the text parts of a list into nodes and smaller text parts, in this order:
// what a code span holds is not formatted any further, and a link's text is not either.
const RULES = [
  { re: /```(?:[^\n`]*\n)?([\s\S]*?)```/g, make: (m) => h('pre', { class: 'md-pre' }, h('code', {}, m[1].replace(/\n$/, ''))) },
  { re: /`([^`\n]+)`/g, make: (m) => h('code', { class: 'md-code' }, m[1]) },
  {
    // A URL ends before trailing punctuation that belongs to the sentence.
    re: /\bhttps?:\/\/[^\s<>"'`]+[^\s<>"'`.,;:!?)\]}]/g,
    make: (m) => h('a', { href: m[0], target: '_blank', rel: 'noopener noreferrer nofollow ugc', class: 'md-link' }, m[0]),
  },
  { re: /\*\*(?=\S)([^*\n]+?)\*\*/g, make: (m, inner) => h('strong', {}, inner(m[1])) },
  { re: /(?<![\w*])\*(?=\S)([^*\n]+?)\*(?![\w*])/g, make: (m, inner) => h('em', {}, inner(m[1])) },
  { re: /(?<![\p{L}\p{N}_])_(?=\S)([^_\n]+?)_(?![\p{L}\p{N}_])/gu, make: (m, inner) => h('em', {}, inner(m[1])) },
];

/** The nodes of a message's text; mentions of `me` (a username) get the `mention-me` class. */
export function renderMarkup(text, me) {
  const meKey = (me || '').toLowerCase();
  const mentions = (t) => splitMentions(t).map((p) => (p.mention
    ? h('span', { class: p.mention.toLowerCase() === meKey ? 'mention mention-me' : 'mention', 'data-testid': 'mention' }, p.text)
    : p.text));
  const apply = (parts, from) => {
    if (from === RULES.length) return parts.flatMap((p) => (typeof p === 'string' ? mentions(p) : [p]));
    const { re, make } = RULES[from];
    // Bold and italic hold formatted text themselves (links, mentions, the other emphasis).
    const inner = (t) => apply([t], from + 1);
    const out = [];
    for (const p of parts) {
      if (typeof p !== 'string') { out.push(p); continue; }
      let last = 0;
      for (const m of p.matchAll(re)) {
        if (m.index > last) out.push(p.slice(last, m.index));
        out.push(make(m, inner));
        last = m.index + m[0].length;
      }
      if (last < p.length) out.push(p.slice(last));
    }
    return apply(out, from + 1);
  };
  return apply([text], 0);
}
