import { agentMain } from '../../src/agent/main.js';

await agentMain(process.argv.slice(2));
