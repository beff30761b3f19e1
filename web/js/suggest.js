// @-autocomplete for a textarea: typing '@' and the start of a name lists the matching
// usernames; ↑/↓ choose, Enter or Tab inserts, Escape closes, a click inserts too.

import { h, replace, replaceText } from './dom.js';

const MAX = 6;
// '@' at a word start, then username characters up to the caret (the server's mention rule).
const TOKEN = /(?:^|[^\p{L}\p{N}_.\-])@([\p{L}\p{N}_.\-]*)$/u;

/**
 * `names()` gives the usernames that may be suggested. Returns the listbox element (to place
 * near the input) and `onKey(e)`, to call first in the input's keydown handler: true when the
 * key was used by the suggestions.
 */
export function mentionSuggest(input, names) {
  const box = h('ul', { class: 'suggest', role: 'listbox', id: 'mention-suggestions', 'data-testid': 'mention-suggestions', hidden: true, 'aria-label': 'People to mention' });
  let items = [];
  let active = 0;
  let start = -1; // where the '@' is

  const close = () => {
    box.hidden = true;
    items = [];
    input.removeAttribute('aria-activedescendant');
    input.setAttribute('aria-expanded', 'false');
  };

  const draw = () => {
    replace(box, items.map((name, i) => {
      const li = h('li', { role: 'option', id: `mention-option-${i}`, class: 'suggest-item', 'data-testid': 'mention-option', 'aria-selected': String(i === active) }, '@' + name);
      // mousedown, not click: the input keeps its focus.
      li.addEventListener('mousedown', (e) => { e.preventDefault(); pick(i); });
      return li;
    }));
    input.setAttribute('aria-activedescendant', `mention-option-${active}`);
  };

  const update = () => {
    const caret = input.selectionStart;
    const m = input.selectionEnd === caret ? TOKEN.exec(input.value.slice(0, caret)) : null;
    if (!m) { close(); return; }
    const prefix = m[1].toLowerCase();
    start = caret - m[1].length - 1;
    items = names().filter((n) => n.toLowerCase().startsWith(prefix)).sort((a, b) => a.localeCompare(b)).slice(0, MAX);
    if (!items.length) { close(); return; }
    active = Math.min(active, items.length - 1);
    box.hidden = false;
    input.setAttribute('aria-expanded', 'true');
    draw();
  };

  const pick = (i) => {
    const name = items[i];
    close();
    replaceText(input, start, input.selectionStart, `@${name} `);
  };

  input.setAttribute('aria-controls', box.id);
  input.setAttribute('aria-autocomplete', 'list');
  input.setAttribute('aria-expanded', 'false');
  input.addEventListener('input', () => { active = 0; update(); });
  input.addEventListener('click', update);
  input.addEventListener('blur', close);

  const onKey = (e) => {
    if (box.hidden || !items.length || e.isComposing) return false;
    switch (e.key) {
      case 'ArrowDown': active = (active + 1) % items.length; draw(); break;
      case 'ArrowUp': active = (active + items.length - 1) % items.length; draw(); break;
      case 'Enter':
      case 'Tab': pick(active); break;
      case 'Escape': close(); break;
      default: return false;
    }
    e.preventDefault();
    e.stopPropagation();
    return true;
  };
  return { box, onKey };
}
