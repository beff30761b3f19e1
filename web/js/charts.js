// Tiny SVG charts (no libraries). All text goes in as text nodes.

import { h, s } from './dom.js';

export const SERIES = 6; // CSS classes series-0 .. series-5

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** A y axis for counts: a round top and 3-5 round ticks (integers when the data is small). */
function axis(maxVal) {
  const v = Math.max(1, maxVal);
  const raw = v / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((m) => m * p).find((x) => x >= raw) || 10 * p;
  if (step < 1) step = 1;
  const max = Math.ceil(v / step) * step;
  const ticks = [];
  for (let t = 0; t <= max + 1e-9; t += step) ticks.push(t);
  return { max, ticks };
}

function fmt(v) {
  if (!Number.isFinite(v)) return '–';
  if (Math.abs(v) >= 1000) return `${Math.round(v / 100) / 10}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function truncate(text, n) {
  const chars = [...String(text)];
  return chars.length > n ? `${chars.slice(0, n - 1).join('')}…` : chars.join('');
}

/**
 * Horizontal bar chart: one row per item (HTML label and value, an SVG bar that stretches),
 * so the text keeps its size at any width.
 * items: [{label, value, note?}]; opts: {max, format, ariaLabel, testid, series}
 */
export function barChart(items, opts = {}) {
  const format = opts.format || fmt;
  if (!items.length) return h('p', { class: 'muted chart-empty', 'data-testid': opts.testid }, opts.empty || 'No data yet.');
  const max = opts.max || niceMax(Math.max(...items.map((i) => i.value || 0)));
  const rows = items.map((it, i) => {
    const v = Math.max(0, it.value || 0);
    const pct = Math.min(100, (v / max) * 100);
    const svg = s('svg', { viewBox: '0 0 100 10', preserveAspectRatio: 'none', class: 'hbar', 'aria-hidden': 'true' },
      s('rect', { x: 0, y: 0, width: 100, height: 10, rx: 0, class: 'bar-track' }),
      s('rect', { x: 0, y: 0, width: v > 0 ? Math.max(0.8, pct) : 0, height: 10, class: `bar series-${(opts.series ?? i) % SERIES}` }));
    const title = `${it.label}: ${format(v)}${it.note ? ` (${it.note})` : ''}`;
    return h('div', { class: 'hbar-row', role: 'listitem', 'data-testid': 'chart-bar', title, 'aria-label': title },
      h('span', { class: 'hbar-label', 'aria-hidden': 'true' }, truncate(it.label, 22)),
      svg,
      h('span', { class: 'hbar-value', 'aria-hidden': 'true' }, format(v)));
  });
  return h('div', { class: 'chart chart-bar', role: 'list', 'aria-label': opts.ariaLabel || 'Bar chart', 'data-testid': opts.testid }, rows);
}

/**
 * Line chart with several series over the same x labels.
 * series: [{name, values: number[]}]; labels: string[]
 */
export function lineChart(series, labels, opts = {}) {
  const wrap = h('figure', { class: 'chart-figure', 'data-testid': opts.testid });
  if (!series.length || !labels.length) {
    wrap.appendChild(h('p', { class: 'muted chart-empty' }, opts.empty || 'No data yet.'));
    return wrap;
  }
  const W = Math.max(320, Math.round(opts.width || 640));
  const H = opts.height || 240;
  const m = { l: 40, r: 12, t: 12, b: 28 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const all = series.flatMap((x) => x.values);
  const { max, ticks } = axis(Math.max(...all));
  const x = (i) => m.l + (labels.length === 1 ? pw / 2 : (i / (labels.length - 1)) * pw);
  const y = (v) => m.t + ph - (v / max) * ph;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart chart-line', role: 'img', 'aria-label': opts.ariaLabel || 'Line chart' });
  svg.appendChild(s('title', {}, opts.ariaLabel || 'Line chart'));
  for (const t of ticks) {
    svg.appendChild(s('line', { x1: m.l, x2: W - m.r, y1: y(t), y2: y(t), class: 'grid' }));
    svg.appendChild(s('text', { x: m.l - 6, y: y(t), class: 'chart-axis', 'text-anchor': 'end', 'dominant-baseline': 'middle' }, fmt(t)));
  }
  const every = Math.max(1, Math.ceil(labels.length / 7));
  labels.forEach((lb, i) => {
    if (i % every !== 0 && i !== labels.length - 1) return;
    svg.appendChild(s('text', { x: x(i), y: H - 8, class: 'chart-axis', 'text-anchor': i === 0 ? 'start' : i === labels.length - 1 ? 'end' : 'middle' }, lb));
  });
  series.forEach((sr, si) => {
    const cls = `series-${si % SERIES}`;
    const pts = sr.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    svg.appendChild(s('polyline', { points: pts, class: `line ${cls}`, fill: 'none' }));
    sr.values.forEach((v, i) => {
      const c = s('circle', { cx: x(i), cy: y(v), r: 3.5, class: `dot ${cls}` });
      c.appendChild(s('title', {}, `${sr.name} · ${labels[i]}: ${fmt(v)}`));
      svg.appendChild(c);
    });
  });
  wrap.appendChild(svg);
  wrap.appendChild(h('figcaption', { class: 'legend' }, series.map((sr, si) => h('span', { class: 'legend-item' },
    h('span', { class: `swatch series-${si % SERIES}`, 'aria-hidden': 'true' }), truncate(sr.name, 24)))));
  return wrap;
}

/** Vertical column chart for one series (e.g. a room's activity per bucket). */
export function columnChart(values, labels, opts = {}) {
  const W = Math.max(320, Math.round(opts.width || 640));
  const H = opts.height || 200;
  const m = { l: 36, r: 8, t: 10, b: 26 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const { max, ticks } = axis(Math.max(...values));
  const slot = pw / Math.max(1, values.length);
  const bw = Math.max(4, slot * 0.7);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart chart-col', role: 'img', 'aria-label': opts.ariaLabel || 'Column chart', 'data-testid': opts.testid });
  svg.appendChild(s('title', {}, opts.ariaLabel || 'Column chart'));
  for (const t of ticks) {
    const yy = m.t + ph - (t / max) * ph;
    svg.appendChild(s('line', { x1: m.l, x2: W - m.r, y1: yy, y2: yy, class: 'grid' }));
    svg.appendChild(s('text', { x: m.l - 6, y: yy, class: 'chart-axis', 'text-anchor': 'end', 'dominant-baseline': 'middle' }, fmt(t)));
  }
  const every = Math.max(1, Math.ceil(values.length / 8));
  values.forEach((v, i) => {
    const hgt = (v / max) * ph;
    const xx = m.l + i * slot + (slot - bw) / 2;
    const r = s('rect', { x: xx, y: m.t + ph - hgt, width: bw, height: Math.max(0, hgt), rx: 3, class: `bar series-${opts.series ?? 0}` });
    r.appendChild(s('title', {}, `${labels[i]}: ${fmt(v)}`));
    svg.appendChild(r);
    if (i % every === 0 || i === values.length - 1) {
      svg.appendChild(s('text', { x: xx + bw / 2, y: H - 8, class: 'chart-axis', 'text-anchor': 'middle' }, labels[i]));
    }
  });
  return svg;
}

/** A ring showing a percentage (0..100). */
export function ring(percent, opts = {}) {
  const p = Math.max(0, Math.min(100, Number(percent) || 0));
  const R = 52;
  const C = 2 * Math.PI * R;
  const svg = s('svg', { viewBox: '0 0 140 140', class: 'chart chart-ring', role: 'img', 'aria-label': opts.ariaLabel || `${p.toFixed(1)} percent`, 'data-testid': opts.testid });
  svg.appendChild(s('circle', { cx: 70, cy: 70, r: R, class: 'ring-track', fill: 'none' }));
  svg.appendChild(s('circle', {
    cx: 70, cy: 70, r: R, fill: 'none', class: `ring-fill series-${opts.series ?? 0}`,
    'stroke-dasharray': `${(p / 100) * C} ${C}`, transform: 'rotate(-90 70 70)',
  }));
  svg.appendChild(s('text', { x: 70, y: 70, class: 'ring-text', 'text-anchor': 'middle', 'dominant-baseline': 'middle' }, `${p.toFixed(p >= 10 || p === 0 ? 0 : 1)}%`));
  return svg;
}
