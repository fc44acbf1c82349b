/**
 * The protobufjs runtime the generated code imports (pbjs --dependency). It
 * switches 64-bit integers to plain JS numbers before any generated module is
 * evaluated: the generated classes compute their int64 prototype defaults at
 * load time and the Reader picks toNumber/toLong in configure(), so both must
 * see util.Long unset. Hand-written; scripts/gen-proto.sh does not touch it.
 *
 * Values above 2^53 lose precision; nothing the shim API carries gets there
 * (pids, exit statuses, nanosecond timeouts, byte counters).
 */
import $protobuf from 'protobufjs/minimal.js';

$protobuf.util.Long = undefined as unknown as typeof $protobuf.util.Long;
$protobuf.configure();

export default $protobuf;
