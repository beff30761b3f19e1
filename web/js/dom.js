// Safe DOM helpers: every piece of text goes through textContent / createTextNode.
// Never use innerHTML with data from the server or the user.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(parent, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(parent, c);
    return;
  }
  if (child instanceof Node) parent.appendChild(child);
  else parent.appendChild(document.createTextNode(String(child)));
}

function applyProps(el, props, isSvg) {
  if (!props) return;
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class' || key === 'className') {
      el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else if (key === 'text') {
      el.textContent = String(value);
    } else if (key === 'style' && typeof value === 'object') {
      Object.assign(el.style, value);
    } else if (key === 'dataset' && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) if (v !== null && v !== undefined) el.dataset[k] = String(v);
    } else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (!isSvg && (key === 'value' || key === 'checked' || key === 'selected' || key === 'disabled' || key === 'hidden')) {
      el[key] = value;
    } else if (key === 'ref' && typeof value === 'function') {
      value(el);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

/** h('button', {class: 'btn', onclick: fn}, 'Label', child...) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  applyProps(el, props, false);
  append(el, children);
  return el;
}

/** SVG element with attributes. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyProps(el, attrs, true);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

/** A short "10:42" / "Mon 10:42" / "12 Nov 10:42" time for a message. */
export function shortTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const now = new Date();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === now.toDateString()) return time;
  const days = (now - d) / 86400000;
  if (days < 6 && days > 0) return `${d.toLocaleDateString([], { weekday: 'short' })} ${time}`;
  return `${d.toLocaleDateString([], { day: 'numeric', month: 'short', year: d.getFullYear() === now.getFullYear() ? undefined : 'numeric' })} ${time}`;
}

export function fullTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString();
}

/** "3 min ago" style relative time. */
export function relTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const secs = Math.round((Date.now() - d.getTime()) / 1000);
  if (Number.isNaN(secs)) return '';
  if (secs < 45) return 'just now';
  if (secs < 3600) return `${Math.round(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.round(secs / 3600)} h ago`;
  return shortTime(iso);
}

/** A button that asks "Sure?" inline (no window.confirm, which blocks and is easy to miss). */
export function confirmButton(label, { confirmLabel = 'Yes', cancelLabel = 'No', question = 'Sure?', className = 'btn btn-small', testid, onConfirm }) {
  const wrap = h('span', { class: 'confirm-wrap' });
  const btn = h('button', { type: 'button', class: className, 'data-testid': testid }, label);
  const ask = () => {
    const q = h('span', { class: 'confirm-question', role: 'group', 'aria-label': question }, question + ' ');
    const yes = h('button', { type: 'button', class: 'btn btn-small btn-danger', 'data-testid': testid ? `${testid}-confirm` : undefined }, confirmLabel);
    const no = h('button', { type: 'button', class: 'btn btn-small' }, cancelLabel);
    const restore = () => { replace(wrap, btn); btn.focus(); };
    no.addEventListener('click', restore);
    q.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.stopPropagation(); restore(); } });
    yes.addEventListener('click', async () => {
      yes.disabled = true; no.disabled = true;
      try { await onConfirm(); } finally { if (wrap.isConnected) replace(wrap, btn); }
    });
    q.append(yes, ' ', no);
    replace(wrap, q);
    yes.focus();
  };
  btn.addEventListener('click', ask);
  wrap.appendChild(btn);
  return wrap;
}

let toastRegion = null;
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && toastRegion && toastRegion.firstChild && !e.defaultPrevented) {
    const t = e.target;
    if (t && t.closest && t.closest('form, .confirm-question')) return;
    while (toastRegion.firstChild) toastRegion.firstChild.remove();
  }
});
/** Shows a short notice in the toast region (role=status). kind: info | success | error. */
export function toast(message, kind = 'info', ms = 6000, { onOpen = null, openLabel = 'Open' } = {}) {
  if (!toastRegion) toastRegion = document.getElementById('toasts');
  if (!toastRegion) return;
  // A toast never blocks for long: it goes away by itself, with its × or with Escape; one that
  // leads somewhere (a mention, a join request) opens it when clicked.
  const t = h('div', { class: `toast toast-${kind}`, 'data-testid': 'toast', role: kind === 'error' ? 'alert' : 'status' });
  const remove = () => t.remove();
  if (onOpen) {
    t.appendChild(h('button', {
      type: 'button', class: 'toast-open', 'data-testid': 'toast-open', title: openLabel,
      onclick: () => { remove(); onOpen(); },
    }, message));
  } else {
    t.appendChild(h('span', {}, message));
  }
  t.appendChild(h('button', { type: 'button', class: 'toast-close', 'data-testid': 'toast-close', 'aria-label': 'Dismiss', onclick: remove }, '×'));
  toastRegion.appendChild(t);
  while (toastRegion.children.length > 3) toastRegion.firstChild.remove();
  if (ms) setTimeout(remove, ms);
}

/** Replaces `input`'s text from `from` to `to` with `text`, puts the caret after it, and tells
 * the input's listeners (as typing would). */
export function replaceText(input, from, to, text) {
  input.value = input.value.slice(0, from) + text + input.value.slice(to);
  input.setSelectionRange(from + text.length, from + text.length);
  input.dispatchEvent(new Event('input', { bubbles: true }));
}

/** Shows an error message (string or list) inside a form's error box. */
export function showError(box, err) {
  const msgs = Array.isArray(err) ? err : (err && err.messages) ? err.messages : [String(err && err.message ? err.message : err)];
  clear(box);
  if (!msgs.length || (msgs.length === 1 && !msgs[0])) { box.hidden = true; return; }
  if (msgs.length === 1) box.textContent = msgs[0];
  else box.appendChild(h('ul', {}, msgs.map((m) => h('li', {}, m))));
  box.hidden = false;
}

export function hideError(box) {
  clear(box);
  box.hidden = true;
}

export function errorBox(testid = 'form-error') {
  return h('div', { class: 'form-error', role: 'alert', 'data-testid': testid, hidden: true });
}

/** Disables a form's controls during an async action. */
export async function busy(form, fn) {
  const controls = [...form.querySelectorAll('button, input, textarea, select')];
  const was = controls.map((c) => c.disabled);
  const focused = form.contains(document.activeElement) ? document.activeElement : null;
  controls.forEach((c) => { c.disabled = true; });
  form.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } finally {
    controls.forEach((c, i) => { c.disabled = was[i]; });
    form.removeAttribute('aria-busy');
    // Disabling drops focus; give it back so keyboard users stay where they were.
    if (focused && focused.isConnected && (document.activeElement === document.body || !document.activeElement)) focused.focus();
  }
}
