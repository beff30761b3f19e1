// Emoji pickers: a grid of common emoji. The composer's opens from its button and inserts the
// pick; the reactions' opens under the message it reacts to. Keyboard: the grid's buttons are
// tabbable, Escape closes and returns focus; a click elsewhere closes.

import { h } from './dom.js';

export const COMMON_EMOJI = [
  '😀', '😂', '🙂', '😉', '😍', '😎', '🤔', '😅', '😢', '😮',
  '😡', '🥳', '😴', '🙄', '🤯', '👍', '👎', '👏', '🙏', '💪',
  '👋', '🤝', '👀', '🎉', '🔥', '✨', '❤️', '💯', '✅', '❌',
  '⚠️', '💡', '📌', '🚀', '☕', '🍕', '🐛', '🤖', '⏰', '👌',
];

/** A hidden grid panel; `pick(e)` gets the emoji clicked, `close()` when it should close. */
function grid(attrs, testid, pick, close) {
  const panel = h('div', { ...attrs, role: 'group', hidden: true },
    COMMON_EMOJI.map((e) => h('button', { type: 'button', class: 'emoji-item', 'data-testid': testid, title: e, onclick: () => pick(e) }, e)));
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { e.stopPropagation(); close(); }
  });
  return panel;
}

/** Closes `panel` on a mousedown outside it and outside `owner()` (the button that opened it). */
function closeOnOutsideClick(panel, owner, close) {
  document.addEventListener('mousedown', (e) => {
    if (!panel.hidden && !panel.contains(e.target) && !owner()?.contains(e.target)) close();
  });
}

export function emojiPicker(onPick) {
  const button = h('button', { type: 'button', class: 'btn emoji-btn', 'aria-label': 'Insert emoji', 'aria-expanded': 'false', 'aria-controls': 'emoji-panel', 'data-testid': 'emoji-button' }, '☺');
  const close = (refocus = true) => {
    panel.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    if (refocus) button.focus();
  };
  const panel = grid({ class: 'emoji-panel', id: 'emoji-panel', 'aria-label': 'Emoji', 'data-testid': 'emoji-panel' }, 'emoji-option',
    (e) => { close(false); onPick(e); }, close);
  button.addEventListener('click', () => {
    panel.hidden = !panel.hidden;
    button.setAttribute('aria-expanded', String(!panel.hidden));
    if (!panel.hidden) panel.querySelector('button').focus();
  });
  closeOnOutsideClick(panel, () => button, () => close(false));
  return { button, panel, close };
}

/**
 * One panel for every message's "add reaction": `open(anchor, onPick)` shows it by `anchor`
 * (kept inside the window), and `onPick(emoji)` gets the choice.
 */
export function reactionPicker() {
  let anchor = null;
  let onPick = null;
  const close = (refocus = true) => {
    panel.hidden = true;
    if (refocus && anchor && anchor.isConnected) anchor.focus();
    anchor = null;
    onPick = null;
  };
  const panel = grid({ class: 'emoji-panel reaction-panel', 'aria-label': 'React with', 'data-testid': 'reaction-panel' }, 'reaction-option',
    (e) => { const pick = onPick; close(false); if (pick) pick(e); }, close);
  closeOnOutsideClick(panel, () => anchor, () => close(false));
  function open(at, pick) {
    anchor = at;
    onPick = pick;
    panel.hidden = false;
    const r = at.getBoundingClientRect();
    const width = panel.offsetWidth;
    const height = panel.offsetHeight;
    const below = r.bottom + 4 + height <= window.innerHeight;
    panel.style.left = `${Math.max(8, Math.min(r.right - width, window.innerWidth - width - 8))}px`;
    panel.style.top = `${below ? r.bottom + 4 : Math.max(8, r.top - height - 4)}px`;
    panel.querySelector('button').focus();
  }
  return { panel, open, close };
}
