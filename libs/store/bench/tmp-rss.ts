import { readFileSync } from 'node:fs';
const rss = () => { const m = /VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8')); return (Number(m![1]) / 1024).toFixed(0); };
console.log('before import', rss());
await import('../src/index.ts');
console.log('after import', rss());
