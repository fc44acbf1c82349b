import { makeRow, type Row } from './report.js';

/** Label of the VM-mode flint run target. */
export const VM_LABEL = 'flint vm';

/** Target of measure 1 in VM mode: VM start / embedded start. */
export function vmStartRow(vmMs: number | undefined, embeddedMs: number | undefined, note: string): Row {
  return makeRow({
    measure: 'VM start latency (median)',
    unit: 'ms',
    subjectLabel: VM_LABEL,
    subject: vmMs,
    referenceLabel: 'embedded',
    reference: embeddedMs,
    target: { op: '<=', value: 2.0 },
    note,
  });
}

/** Target of measure 3 in VM mode: VM throughput / embedded throughput. */
export function vmThroughputRow(vmMiBs: number | undefined, embeddedMiBs: number | undefined, note: string): Row {
  return makeRow({
    measure: 'VM stdout throughput (median)',
    unit: 'MiB/s',
    subjectLabel: VM_LABEL,
    subject: vmMiBs,
    referenceLabel: 'embedded',
    reference: embeddedMiBs,
    target: { op: '>=', value: 0.7 },
    note,
  });
}
