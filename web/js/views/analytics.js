// Analytics: charts drawn from the analytics API with inline SVG.

import { api } from '../api.js';
import { store } from '../store.js';
import { h, replace, fullTime } from '../dom.js';
import { barChart, lineChart, columnChart, ring } from '../charts.js';
import { pool } from '../util.js';

const RANGES = {
  hour: { label: 'Last hour', step: 5, n: 12 },
  six: { label: 'Last 6 hours', step: 30, n: 12 },
  day: { label: 'Last 24 hours', step: 120, n: 12 },
};

function bucketLabel(minsAgo) {
  if (minsAgo === 0) return 'now';
  if (minsAgo < 60) return `-${minsAgo}m`;
  return `-${Math.round((minsAgo / 60) * 10) / 10}h`;
}

/** Messages per bucket, oldest first, from cumulative "since N minutes" counts. */
async function buckets(roomId, step, n) {
  const windows = Array.from({ length: n }, (_, i) => (i + 1) * step);
  const counts = await pool(windows, 4, (w) => api.messagesPerMinutes(roomId, w));
  const c = counts.map((v) => (Number.isFinite(Number(v)) ? Number(v) : 0));
  const per = c.map((v, i) => Math.max(0, v - (i === 0 ? 0 : c[i - 1]))); // newest first
  const values = per.reverse();
  const labels = windows.map((w) => bucketLabel(w - step)).reverse();
  return { values, labels };
}

function card(title, body, { wide = false, testid, extra } = {}) {
  const id = `h-${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  return h('section', { class: `card chart-card${wide ? ' wide' : ''}`, 'aria-labelledby': id, 'data-testid': testid },
    h('div', { class: 'card-head' }, h('h2', { id }, title), extra || null),
    body);
}

function tile(label, value, testid) {
  return h('div', { class: 'tile', 'data-testid': testid }, h('span', { class: 'tile-value' }, String(value)), h('span', { class: 'tile-label' }, label));
}

const loadingP = () => h('p', { class: 'muted' }, 'Loading…');
const errP = (ex) => h('p', { class: 'inline-error', role: 'alert' }, ex.message || String(ex));

export function mountAnalytics(main) {
  let disposed = false;
  const roomNames = new Map();
  for (const r of store.rooms.values()) roomNames.set(r.id, r.name);
  const userNames = new Map([[store.me.id, store.me.username]]);
  const nameOf = (id) => roomNames.get(id) || `Room ${String(id).slice(0, 8)}`;

  const mine = h('div', {}, loadingP());
  const retention = h('div', { class: 'ring-wrap' }, loadingP());
  const ratio = h('div', {}, loadingP());
  const topRooms = h('div', {}, loadingP());
  const overTime = h('div', {}, loadingP());
  const roomAct = h('div', {}, loadingP());
  const social = h('div', {}, loadingP());

  const rangeSel = h('select', { id: 'range', 'data-testid': 'range-select', 'aria-label': 'Time range' },
    Object.entries(RANGES).map(([k, r]) => h('option', { value: k }, r.label)));
  const roomSel = h('select', { id: 'room-select', 'data-testid': 'room-select', 'aria-label': 'Room' });
  const refresh = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'analytics-refresh' }, 'Refresh');

  main.appendChild(h('div', { class: 'page analytics' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Analytics'), refresh),
    h('p', { class: 'muted' }, 'Statistics are computed by the server in the background, so the newest activity can take a moment to show up.'),
    h('div', { class: 'analytics-grid', 'data-testid': 'analytics-charts' },
      card('Your activity', mine, { testid: 'card-my-activity' }),
      card('User retention (30 days)', retention, { testid: 'card-retention' }),
      card('Edits and deletions', ratio, { testid: 'card-edit-delete' }),
      card('Messages over time — top rooms', overTime, { wide: true, testid: 'card-over-time', extra: rangeSel }),
      card('Top active rooms', topRooms, { testid: 'card-top-rooms' }),
      card('Most social users', social, { testid: 'card-top-users' }),
      card('Room activity', roomAct, { wide: true, testid: 'card-room-activity', extra: roomSel }))));

  let top = [];

  async function resolveRoomNames(ids) {
    const missing = ids.filter((id) => !roomNames.has(id));
    if (!missing.length) return;
    try {
      const list = await api.topRooms(50, false);
      for (const r of list) roomNames.set(r.id, r.name);
    } catch { /* names are cosmetic */ }
    await pool(ids.filter((id) => !roomNames.has(id)), 4, async (id) => {
      const r = await api.getRoom(id);
      roomNames.set(id, r.name);
    });
  }

  async function loadMine() {
    try {
      const a = await api.userActivity(store.me.id);
      replace(mine, h('div', { class: 'tiles' },
        tile('messages sent', a.messages ?? 0, 'stat-my-messages'),
        tile('rooms joined', a.rooms_joined ?? 0, 'stat-my-rooms'),
        tile('rooms I am in now', store.rooms.size, 'stat-my-rooms-now')));
    } catch (ex) { replace(mine, errP(ex)); }
  }

  async function loadRetention() {
    try {
      const v = Number(await api.retention(30)) || 0;
      replace(retention, ring(v, { ariaLabel: `Retention: ${v.toFixed(1)} percent of users active in the last 30 days`, testid: 'chart-retention' }),
        h('p', { class: 'muted small' }, 'Share of users who were active in the last 30 days.'));
    } catch (ex) { replace(retention, errP(ex)); }
  }

  async function loadRatio() {
    try {
      const r = await api.editDeleteRatio();
      const pct = (v) => `${(v * 100).toFixed(1)}%`;
      replace(ratio, barChart([
        { label: 'Edited', value: Number(r.edit_ratio) || 0 },
        { label: 'Deleted', value: Number(r.delete_ratio) || 0 },
      ], { max: 1, format: pct, ariaLabel: `Edited ${pct(r.edit_ratio || 0)}, deleted ${pct(r.delete_ratio || 0)} of all messages`, testid: 'chart-edit-delete' }),
      h('p', { class: 'muted small' }, 'Share of all messages that were edited or deleted.'));
    } catch (ex) { replace(ratio, errP(ex)); }
  }

  async function loadTop() {
    try {
      top = await api.topActiveRooms(10);
      await resolveRoomNames(top.map((r) => r.room_id));
      if (disposed) return;
      replace(topRooms, barChart(top.map((r) => ({ label: nameOf(r.room_id), value: r.total_messages || 0, note: `${r.users_amount || 0} users` })), {
        ariaLabel: 'Messages per room, most active rooms', testid: 'chart-top-rooms', series: 0, empty: 'No messages yet.',
      }));
    } catch (ex) { replace(topRooms, errP(ex)); top = []; }
  }

  async function loadOverTime() {
    const range = RANGES[rangeSel.value] || RANGES.hour;
    replace(overTime, loadingP());
    const rooms = top.slice(0, 5);
    if (!rooms.length) {
      replace(overTime, h('p', { class: 'muted chart-empty', 'data-testid': 'chart-over-time' }, 'No active rooms yet.'));
      return;
    }
    try {
      const results = await Promise.all(rooms.map((r) => buckets(r.room_id, range.step, range.n)));
      if (disposed) return;
      const labels = results[0].labels;
      const series = rooms.map((r, i) => ({ name: nameOf(r.room_id), values: results[i].values }));
      replace(overTime, lineChart(series, labels, {
        ariaLabel: `Messages per ${range.step} minutes in the top ${rooms.length} rooms, ${range.label.toLowerCase()}`,
        testid: 'chart-over-time',
        width: overTime.clientWidth,
      }), h('p', { class: 'muted small' }, `Messages per ${range.step >= 60 ? `${range.step / 60} h` : `${range.step} min`}, from get-message-per-minutes windows.`));
    } catch (ex) { replace(overTime, errP(ex)); }
  }

  async function loadSocial() {
    try {
      const list = await api.topSocialUsers(10);
      const unknown = list.some((u) => !userNames.has(u.user_id));
      if (unknown) {
        await pool([...store.rooms.keys()].slice(0, 20), 4, async (rid) => {
          for (const u of await api.roomUsers(rid)) userNames.set(u.id, u.username);
        });
      }
      if (disposed) return;
      replace(social, barChart(list.map((u) => ({
        label: userNames.get(u.user_id) || `User ${String(u.user_id).slice(0, 8)}`,
        value: u.messages || 0,
        note: `${u.rooms || 0} rooms`,
      })), { ariaLabel: 'Messages per user, most social users', testid: 'chart-top-users', series: 2, empty: 'No users yet.' }),
      h('p', { class: 'muted small' }, 'Messages sent; hover a bar for the number of rooms.'));
    } catch (ex) { replace(social, errP(ex)); }
  }

  function fillRoomSelect() {
    const rooms = [...store.rooms.values()].sort((a, b) => a.name.localeCompare(b.name));
    const cur = roomSel.value;
    replace(roomSel, rooms.length ? rooms.map((r) => h('option', { value: r.id }, r.name)) : h('option', { value: '' }, 'No rooms'));
    if (cur && rooms.some((r) => r.id === cur)) roomSel.value = cur;
    else if (store.activeRoomId && rooms.some((r) => r.id === store.activeRoomId)) roomSel.value = store.activeRoomId;
  }

  async function loadRoomActivity() {
    const id = roomSel.value;
    if (!id) { replace(roomAct, h('p', { class: 'muted' }, 'Join a room to see its activity.')); return; }
    replace(roomAct, loadingP());
    try {
      const [st, hour, day] = await Promise.all([
        api.roomStats(id),
        buckets(id, 10, 6),
        api.messagesPerMinutes(id, 1440),
      ]);
      if (disposed || roomSel.value !== id) return;
      const lastHour = hour.values.reduce((a, b) => a + b, 0);
      replace(roomAct,
        h('div', { class: 'tiles' },
          tile('messages in total', st.total_messages ?? 0, 'stat-room-total'),
          tile('users', st.users_amount ?? 0, 'stat-room-users'),
          tile('messages last hour', lastHour, 'stat-room-hour'),
          tile('messages last 24 h', Number(day) || 0, 'stat-room-day')),
        columnChart(hour.values, hour.labels, { ariaLabel: `Messages per 10 minutes in ${nameOf(id)}, last hour`, testid: 'chart-room-activity', series: 1, width: roomAct.clientWidth }),
        h('p', { class: 'muted small' }, st.last_updated ? `Stats updated ${fullTime(st.last_updated)}.` : 'Stats not computed yet.'));
    } catch (ex) { replace(roomAct, errP(ex)); }
  }

  async function loadAll() {
    fillRoomSelect();
    await Promise.all([loadMine(), loadRetention(), loadRatio(), loadSocial(), loadRoomActivity(),
      loadTop().then(loadOverTime)]);
  }

  rangeSel.addEventListener('change', loadOverTime);
  roomSel.addEventListener('change', loadRoomActivity);
  refresh.addEventListener('click', async () => {
    refresh.disabled = true;
    await loadAll();
    refresh.disabled = false;
    refresh.focus();
  });
  loadAll();
  return () => { disposed = true; };
}
