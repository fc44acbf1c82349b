import { writeFileSync } from 'node:fs';

/** pass/miss against a target; info when there is none; n/a when a side could not be measured. */
export type Verdict = 'pass' | 'miss' | 'info' | 'n/a';

/** A bound on a ratio: `<=` when lower is better, `>=` when higher is better. */
export interface Target {
  readonly op: '<=' | '>=';
  readonly value: number;
}

/** One line of the table: a subject measured against a reference, their ratio, and the target for it. */
export interface Row {
  /** What was measured, e.g. "start latency (median)". */
  readonly measure: string;
  readonly unit: string;
  /** e.g. "flint", "flint vm". */
  readonly subjectLabel: string;
  readonly subject: number | null;
  /** e.g. "runc", "flint embedded"; empty for a row without a reference. */
  readonly referenceLabel: string;
  readonly reference: number | null;
  /** subject / reference. */
  readonly ratio: number | null;
  readonly target: Target | null;
  readonly verdict: Verdict;
  readonly note: string;
}

/** What one measure hands back: its rows, raw data for the JSON, and any failures verbatim. */
export interface MeasureResult {
  readonly name: string;
  readonly rows: Row[];
  readonly details: unknown;
  readonly errors: string[];
  readonly seconds: number;
}

/** Inputs for makeRow; the ratio and verdict are derived. */
export interface RowInput {
  readonly measure: string;
  readonly unit: string;
  readonly subjectLabel: string;
  readonly subject: number | null | undefined;
  readonly referenceLabel?: string;
  readonly reference?: number | null;
  readonly target?: Target;
  readonly note?: string;
}

const usable = (x: number | null | undefined): x is number => typeof x === 'number' && Number.isFinite(x);

/** Builds a row, computing subject/reference and checking it against the target. */
export function makeRow(r: RowInput): Row {
  const subject = usable(r.subject) ? r.subject : null;
  const reference = usable(r.reference) ? r.reference : null;
  const ratio = subject !== null && reference !== null && reference !== 0 ? subject / reference : null;
  let verdict: Verdict;
  if (r.referenceLabel === undefined) verdict = subject === null ? 'n/a' : 'info';
  else if (ratio === null) verdict = 'n/a';
  else if (r.target === undefined) verdict = 'info';
  else verdict = (r.target.op === '<=' ? ratio <= r.target.value : ratio >= r.target.value) ? 'pass' : 'miss';
  return {
    measure: r.measure,
    unit: r.unit,
    subjectLabel: r.subjectLabel,
    subject,
    referenceLabel: r.referenceLabel ?? '',
    reference,
    ratio,
    target: r.target ?? null,
    verdict,
    note: r.note ?? '',
  };
}

/** A number with sensible precision for the table. */
export function fmt(x: number | null, digits?: number): string {
  if (x === null) return '-';
  const d = digits ?? (Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2);
  return x.toFixed(d);
}

/** The ratio to 2 decimals, or 3 when 2 would print exactly the target it misses (0.998 vs ≥1.0). */
export function ratioText(r: Row): string {
  if (r.ratio === null) return '-';
  const two = r.ratio.toFixed(2);
  return r.target !== null && two === r.target.value.toFixed(2) && r.verdict === 'miss' ? r.ratio.toFixed(3) : two;
}

/** "≤1.5" / "≥1.0". */
export function targetText(t: Target | null): string {
  return t === null ? '' : `${t.op === '<=' ? '≤' : '≥'}${t.value.toFixed(1)}`;
}

/** The results as a plain-text table (one line per row, notes indented below). */
export function renderTable(rows: readonly Row[]): string {
  const header = ['measure', 'unit', 'subject', 'reference', 'ratio', 'target', 'result'];
  const body = rows.map((r) => [
    r.measure,
    r.unit,
    `${r.subjectLabel} ${fmt(r.subject)}`,
    r.referenceLabel === '' ? '' : `${r.referenceLabel} ${fmt(r.reference)}`,
    ratioText(r),
    targetText(r.target),
    r.verdict,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd();
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  ')];
  rows.forEach((r, i) => {
    out.push(line(body[i]!));
    if (r.note !== '') out.push(`    ${r.note}`);
  });
  return out.join('\n');
}

/** Everything written to results.json. */
export interface BenchReport {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly wallSeconds: number;
  readonly environment: Readonly<Record<string, string | number>>;
  readonly settings: unknown;
  readonly rows: readonly Row[];
  readonly measures: readonly MeasureResult[];
}

/** Writes the report as pretty JSON. */
export function writeJson(path: string, report: BenchReport): void {
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
}
