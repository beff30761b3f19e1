// Rooms hub: create, search, popular rooms, my pending join requests.
// (My rooms with unread counts live in the sidebar, shown on every page.)

import { api } from '../api.js';
import { store } from '../store.js';
import { h, replace, errorBox, showError, hideError, busy, toast, relTime } from '../dom.js';
import { visibilityLabel } from '../util.js';

export function roomCard(room, ctx, { onChanged } = {}) {
  const member = store.isMember(room.id);
  const pending = store.myRequests.find((r) => r.room_id === room.id);
  const err = h('p', { class: 'inline-error', role: 'alert', hidden: true });
  let action;
  if (member) {
    action = h('a', { class: 'btn btn-small', href: `#/room/${encodeURIComponent(room.id)}`, 'data-testid': 'open-room' }, 'Open');
  } else if (pending) {
    action = h('span', { class: 'tag', 'data-testid': 'request-pending' }, 'Request pending');
  } else if (room.is_public) {
    action = h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-testid': 'join-room' }, 'Join');
    action.addEventListener('click', async () => {
      err.hidden = true;
      action.disabled = true;
      try {
        await api.requestJoin(room.id, null);
      } catch (ex) {
        if (!(ex.status === 400 && /already in this room/i.test(ex.message))) {
          err.textContent = ex.message;
          err.hidden = false;
          action.disabled = false;
          return;
        }
      }
      await store.loadRooms().catch(() => {});
      toast(`You joined “${room.name}”.`, 'success');
      ctx.navigate(`#/room/${encodeURIComponent(room.id)}`);
    });
  } else {
    action = h('a', { class: 'btn btn-small', href: `#/room/${encodeURIComponent(room.id)}`, 'data-testid': 'request-join-link' }, 'Request to join');
  }
  const count = room.participants_count ?? 0;
  return h('li', { class: 'room-card', 'data-testid': 'room-card', 'data-room-id': room.id },
    h('div', { class: 'room-card-main' },
      h('div', { class: 'room-card-title' },
        h('span', { class: 'room-card-name' }, room.name),
        h('span', { class: room.is_public ? 'tag tag-public' : 'tag tag-private' }, visibilityLabel(room)),
        member ? h('span', { class: 'tag tag-member' }, 'Member') : null),
      room.description ? h('p', { class: 'room-card-desc' }, room.description) : null,
      h('p', { class: 'muted small' }, `${count} member${count === 1 ? '' : 's'}`),
      err),
    h('div', { class: 'room-card-action' }, action));
}

export function mountHub(main, _params, ctx) {
  const offs = [];

  // -- create
  const cErr = errorBox('create-room-error');
  const name = h('input', { id: 'room-name', name: 'name', required: true, maxlength: 32, autocomplete: 'off', 'data-testid': 'room-name-input' });
  const desc = h('textarea', { id: 'room-desc', name: 'description', rows: 2, maxlength: 1000, 'data-testid': 'room-description-input' });
  const pub = h('input', { type: 'radio', name: 'visibility', id: 'vis-public', value: 'public', checked: true, 'data-testid': 'room-public' });
  const priv = h('input', { type: 'radio', name: 'visibility', id: 'vis-private', value: 'private', 'data-testid': 'room-private' });
  const unl = h('input', { type: 'radio', name: 'visibility', id: 'vis-unlisted', value: 'unlisted', 'data-testid': 'room-unlisted' });
  const createForm = h('form', { class: 'form', 'data-testid': 'create-room-form', novalidate: true },
    cErr,
    h('div', { class: 'field' }, h('label', { for: 'room-name' }, 'Name'), name),
    h('div', { class: 'field' }, h('label', { for: 'room-desc' }, 'Description (optional)'), desc),
    h('fieldset', { class: 'field radios' },
      h('legend', {}, 'Who can join?'),
      h('label', { for: 'vis-public', class: 'radio' }, pub, ' Public — anyone can join'),
      h('label', { for: 'vis-private', class: 'radio' }, priv, ' Private — by request, found in search'),
      h('label', { for: 'vis-unlisted', class: 'radio' }, unl, ' Unlisted — by request, found only through its share link')),
    h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'create-room-submit' }, 'Create room'));
  createForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    hideError(cErr);
    if (!name.value.trim()) { showError(cErr, 'Give the room a name.'); name.focus(); return; }
    try {
      const room = await busy(createForm, () => api.createRoom(name.value.trim(), desc.value.trim() || null, createForm.elements.visibility.value));
      store.upsertRoom({ ...room, last_read_seq: room.last_seq ?? 0 });
      store.loadRooms().catch(() => {});
      toast(`Room “${room.name}” created.`, 'success');
      ctx.navigate(`#/room/${encodeURIComponent(room.id)}`);
    } catch (ex) {
      showError(cErr, ex);
      name.focus();
    }
  });

  // -- search
  const sErr = errorBox('search-error');
  const q = h('input', { id: 'room-search', type: 'search', name: 'text', autocomplete: 'off', placeholder: 'Room name…', 'data-testid': 'search-input' });
  const results = h('ul', { class: 'room-cards', 'data-testid': 'search-results', 'aria-live': 'polite' });
  const searchForm = h('form', { class: 'form form-inline', role: 'search', 'data-testid': 'search-form' },
    h('label', { for: 'room-search', class: 'sr-only' }, 'Search rooms'),
    q,
    h('button', { type: 'submit', class: 'btn' }, 'Search'));
  let lastResults = null;
  const renderResults = () => {
    if (!lastResults) return;
    replace(results, lastResults.length
      ? lastResults.map((r) => roomCard(r, ctx))
      : h('li', { class: 'muted' }, 'No rooms match.'));
  };
  searchForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    hideError(sErr);
    const text = q.value.trim();
    if (!text) { showError(sErr, 'Type part of a room name.'); q.focus(); return; }
    try {
      lastResults = await busy(searchForm, () => api.searchRooms(text, 20));
      renderResults();
    } catch (ex) {
      showError(sErr, ex);
    }
    q.focus();
  });

  // -- popular
  const top = h('ul', { class: 'room-cards', 'data-testid': 'top-rooms' }, h('li', { class: 'muted' }, 'Loading…'));
  let topRooms = null;
  const renderTop = () => {
    if (!topRooms) return;
    replace(top, topRooms.length ? topRooms.map((r) => roomCard(r, ctx)) : h('li', { class: 'muted' }, 'No rooms yet. Create the first one!'));
  };
  const loadTop = () => api.topRooms(6, false)
    .then((list) => { topRooms = list; renderTop(); })
    .catch((ex) => replace(top, h('li', { class: 'inline-error' }, ex.message)));

  // -- my pending requests
  const reqs = h('ul', { class: 'plain-list', 'data-testid': 'my-requests' });
  const renderReqs = () => {
    const list = store.myRequests;
    replace(reqs, list.length
      ? list.map((r) => h('li', { class: 'req-item', 'data-testid': 'my-request', 'data-room-id': r.room_id },
        h('span', { class: 'strong' }, r.room_name),
        r.message ? h('span', { class: 'muted' }, ` — “${r.message}”`) : null,
        h('span', { class: 'muted small' }, ` · sent ${relTime(r.created_at)}`)))
      : h('li', { class: 'muted' }, 'No pending requests.'));
  };

  main.appendChild(h('div', { class: 'page hub' },
    h('h1', {}, 'Rooms'),
    h('div', { class: 'hub-grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-create' }, h('h2', { id: 'h-create' }, 'Create a room'), createForm),
      h('section', { class: 'card', 'aria-labelledby': 'h-search' }, h('h2', { id: 'h-search' }, 'Find rooms'), sErr, searchForm, results),
      h('section', { class: 'card', 'aria-labelledby': 'h-top' }, h('h2', { id: 'h-top' }, 'Popular rooms'), top),
      h('section', { class: 'card', 'aria-labelledby': 'h-reqs' }, h('h2', { id: 'h-reqs' }, 'My pending join requests'), reqs))));

  renderReqs();
  loadTop();
  store.loadMyRequests().catch(() => {});
  offs.push(store.on('requests', () => { renderReqs(); renderTop(); renderResults(); }));
  const sig = () => [...store.rooms.keys()].sort().join(',');
  let memberSig = sig();
  offs.push(store.on('rooms', () => {
    const now = sig();
    if (now !== memberSig) { memberSig = now; renderTop(); renderResults(); }
  }));
  return () => offs.forEach((f) => f());
}
