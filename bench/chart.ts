import { writeFileSync } from 'node:fs';
import { ratioText, targetText, type Row } from './report.js';

const WIDTH = 980;
const ROW_HEIGHT = 38;
const LABEL_WIDTH = 370;
const PLOT_LEFT = LABEL_WIDTH + 10;
const PLOT_RIGHT = WIDTH - 110;
const TOP = 56;
/** Ratios are drawn on a log2 axis from 1/16 to 16, so 0.5x and 2x are equally far from parity. */
const LOG2_MIN = -4;
const LOG2_MAX = 4;

const COLORS = { pass: '#2e7d32', miss: '#c62828', info: '#78909c', 'n/a': '#b0bec5' } as const;

function x(ratio: number): number {
  const l = Math.min(LOG2_MAX, Math.max(LOG2_MIN, Math.log2(ratio)));
  return PLOT_LEFT + ((l - LOG2_MIN) / (LOG2_MAX - LOG2_MIN)) * (PLOT_RIGHT - PLOT_LEFT);
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function tickLabel(l: number): string {
  return l >= 0 ? String(2 ** l) : `1/${2 ** -l}`;
}

/**
 * An SVG with one bar per compared row: the bar runs from parity (1.0) to
 * the ratio, green when it meets its target, red when it misses, grey
 * without a target; the target is a black tick on the same row. Rows that
 * could not be measured say so instead of a bar.
 */
export function renderChart(rows: readonly Row[], title: string): string {
  const shown = rows.filter((r) => r.referenceLabel !== '');
  const height = TOP + shown.length * ROW_HEIGHT + 40;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="${WIDTH / 2}" y="40" text-anchor="middle" fill="#555">ratio subject / reference (log scale); black tick = target</text>`,
  );
  const plotBottom = TOP + shown.length * ROW_HEIGHT;
  for (let l = LOG2_MIN; l <= LOG2_MAX; l++) {
    const gx = x(2 ** l);
    parts.push(
      `<line x1="${gx}" y1="${TOP - 4}" x2="${gx}" y2="${plotBottom}" stroke="${l === 0 ? '#333' : '#e0e0e0'}" stroke-width="${l === 0 ? 1.5 : 1}"/>`,
      `<text x="${gx}" y="${plotBottom + 16}" text-anchor="middle" fill="#555">${tickLabel(l)}</text>`,
    );
  }
  shown.forEach((r, i) => {
    const y = TOP + i * ROW_HEIGHT;
    const mid = y + ROW_HEIGHT / 2;
    parts.push(
      `<text x="${LABEL_WIDTH}" y="${mid - 2}" text-anchor="end">${esc(r.measure)}</text>`,
      `<text x="${LABEL_WIDTH}" y="${mid + 11}" text-anchor="end" fill="#777" font-size="10">${esc(`${r.subjectLabel} / ${r.referenceLabel}`)}</text>`,
    );
    if (r.ratio === null) {
      parts.push(`<text x="${x(1) + 6}" y="${mid + 4}" fill="#888" font-style="italic">not available</text>`);
    } else {
      const x0 = x(1);
      const x1 = x(r.ratio);
      const clipped = Math.abs(Math.log2(r.ratio)) > LOG2_MAX;
      parts.push(
        `<rect x="${Math.min(x0, x1)}" y="${y + 8}" width="${Math.max(1, Math.abs(x1 - x0))}" height="${ROW_HEIGHT - 16}" fill="${COLORS[r.verdict]}"${clipped ? ' fill-opacity="0.6"' : ''}/>`,
      );
      // Left of the bar's end when there is room, else just right of parity.
      const right = x1 >= x0 || x1 - PLOT_LEFT < 40;
      const tx = x1 >= x0 ? x1 + 4 : right ? x0 + 4 : x1 - 4;
      parts.push(
        `<text x="${tx}" y="${mid + 4}" text-anchor="${right ? 'start' : 'end'}" font-weight="bold">${ratioText(r)}${clipped ? ' (off scale)' : ''}</text>`,
      );
    }
    if (r.target !== null) {
      const tx = x(r.target.value);
      parts.push(`<line x1="${tx}" y1="${y + 4}" x2="${tx}" y2="${y + ROW_HEIGHT - 4}" stroke="#000" stroke-width="2.5"/>`);
    }
    const status = r.target === null ? r.verdict : `${targetText(r.target)} ${r.verdict}`;
    parts.push(`<text x="${PLOT_RIGHT + 12}" y="${mid + 4}" fill="${COLORS[r.verdict]}">${esc(status)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** Writes renderChart's SVG to `path`. */
export function writeChart(path: string, rows: readonly Row[], title: string): void {
  writeFileSync(path, renderChart(rows, title));
}
