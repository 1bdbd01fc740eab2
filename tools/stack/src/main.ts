/**
 * `npm run stack [-- --json]`: starts the local stack (Redis, a plain, a token-auth and a
 * Basic-auth registry, S3) on free loopback ports, prints the endpoints and the credentials of
 * the auth registries (as lines, or one JSON line with --json), and runs until SIGINT/SIGTERM.
 */
import { parseArgs } from 'node:util';
import { startStack, type StackInfo } from '@stevedore/testing';

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    'token-expires-in': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
if (values.help) {
  process.stdout.write('usage: npm run stack -- [--json] [--token-expires-in SECONDS]\n');
  process.exit(0);
}
const expiresIn = values['token-expires-in'];
if (expiresIn !== undefined && !/^[1-9]\d*$/.test(expiresIn)) {
  process.stderr.write(`--token-expires-in must be a positive number of seconds, got "${expiresIn}"\n`);
  process.exit(2);
}

const stack = await startStack(expiresIn === undefined ? {} : { tokenExpiresIn: Number(expiresIn) });
const info = stack.info();
process.stdout.write(values.json ? `${JSON.stringify(info)}\n` : describe(info));
process.stderr.write('stack running; Ctrl-C (SIGINT) or SIGTERM stops it\n');

let stopping = false;
const shutdown = (signal: NodeJS.Signals): void => {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`${signal}: stopping the stack\n`);
  stack.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error('stopping the stack failed', err);
      process.exit(1);
    },
  );
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);

function describe(s: StackInfo): string {
  return [
    `redis           ${s.redis.url}`,
    `registry        ${s.registry.url}  (no auth)`,
    `token registry  ${s.tokenRegistry.url}  user ${s.tokenRegistry.username}  password ${s.tokenRegistry.password}  realm ${s.tokenRegistry.realm}  service ${s.tokenRegistry.service}`,
    `basic registry  ${s.basicRegistry.url}  user ${s.basicRegistry.username}  password ${s.basicRegistry.password}`,
    `s3              ${s.s3.endpoint}  bucket ${s.s3.bucket}  region ${s.s3.region}  path-style  access key ${s.s3.accessKeyId}  secret ${s.s3.secretAccessKey}`,
    '',
  ].join('\n');
}
