// A small emoji picker: a button that opens a grid of common emoji; picking one calls `onPick`
// with it. Keyboard: the grid's buttons are tabbable, Escape closes and returns focus.

import { h } from './dom.js';

export const COMMON_EMOJI = [
  '😀', '😂', '🙂', '😉', '😍', '😎', '🤔', '😅', '😢', '😮',
  '😡', '🥳', '😴', '🙄', '🤯', '👍', '👎', '👏', '🙏', '💪',
  '👋', '🤝', '👀', '🎉', '🔥', '✨', '❤️', '💯', '✅', '❌',
  '⚠️', '💡', '📌', '🚀', '☕', '🍕', '🐛', '🤖', '⏰', '👌',
];

export function emojiPicker(onPick) {
  const button = h('button', { type: 'button', class: 'btn emoji-btn', 'aria-label': 'Insert emoji', 'aria-expanded': 'false', 'aria-controls': 'emoji-panel', 'data-testid': 'emoji-button' }, '☺');
  const panel = h('div', { class: 'emoji-panel', id: 'emoji-panel', role: 'group', 'aria-label': 'Emoji', hidden: true, 'data-testid': 'emoji-panel' },
    COMMON_EMOJI.map((e) => h('button', { type: 'button', class: 'emoji-item', 'data-testid': 'emoji-option', title: e, onclick: () => { close(); onPick(e); } }, e)));
  const close = () => { panel.hidden = true; button.setAttribute('aria-expanded', 'false'); };
  button.addEventListener('click', () => {
    panel.hidden = !panel.hidden;
    button.setAttribute('aria-expanded', String(!panel.hidden));
    if (!panel.hidden) panel.querySelector('button').focus();
  });
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { e.stopPropagation(); close(); button.focus(); }
  });
  // A click anywhere else closes it.
  document.addEventListener('mousedown', (e) => {
    if (!panel.hidden && !panel.contains(e.target) && e.target !== button) close();
  });
  return { button, panel, close };
}
