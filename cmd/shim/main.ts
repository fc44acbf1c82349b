import { shimMain } from '../../src/shim/main.js';

await shimMain(process.argv.slice(2), process.argv[1]!);
