import { describe, expect, it } from 'vitest';
import { copyArgs, execForm, parseDockerfile } from './dockerfile.ts';

const SAMPLE = `# syntax=docker/dockerfile:1
ARG BASE=node:24-slim
ARG OTHER

FROM \${BASE} AS deps
WORKDIR /app
# a comment
RUN npm ci \\
  # a comment inside a continuation
  --omit=dev \\
 && npm cache clean --force

FROM --platform=linux/amd64 $BASE
COPY --from=deps --chown=1000:1000 /app/node_modules ./node_modules
COPY ["a b", "c", "/dest/"]
USER 1000:1000
CMD ["node", "main.ts"]
`;

describe('parseDockerfile', () => {
  const file = parseDockerfile(SAMPLE);

  it('reads global ARG defaults and resolves FROM with them', () => {
    expect([...file.args]).toEqual([
      ['BASE', 'node:24-slim'],
      ['OTHER', ''],
    ]);
    expect(file.stages.map((s) => [s.index, s.name, s.base])).toEqual([
      [0, 'deps', 'node:24-slim'],
      [1, undefined, 'node:24-slim'],
    ]);
  });

  it('joins continuation lines and drops comments', () => {
    expect(file.stages[0]?.instructions).toEqual([
      { keyword: 'WORKDIR', args: '/app', line: 6 },
      { keyword: 'RUN', args: 'npm ci --omit=dev && npm cache clean --force', line: 8 },
    ]);
  });

  it('splits COPY flags, sources and destination', () => {
    const [fromStage, json] = file.stages[1]?.instructions ?? [];
    expect(fromStage && copyArgs(fromStage)).toEqual({
      from: 'deps',
      sources: ['/app/node_modules'],
      destination: './node_modules',
    });
    expect(json && copyArgs(json)).toEqual({ from: undefined, sources: ['a b', 'c'], destination: '/dest/' });
  });

  it.each([
    ['RUN true\n', 'line 1: RUN before the first FROM'],
    ['FROM a AS\n', 'line 1: cannot read "FROM a AS"'],
    ['FROM a B c\n', 'line 1: cannot read "FROM a B c"'],
  ])('refuses %j', (text, message) => {
    expect(() => parseDockerfile(text)).toThrow(message);
  });
});

describe('execForm', () => {
  it.each([
    ['["node", "apps/api/src/main.ts"]', ['node', 'apps/api/src/main.ts']],
    ['node apps/api/src/main.ts', undefined],
  ])('%s', (args, words) => {
    expect(execForm(args)).toEqual(words);
  });

  it('refuses a JSON array of other things', () => {
    expect(() => execForm('[1, 2]')).toThrow('not a JSON array of strings: [1, 2]');
  });
});

describe('copyArgs', () => {
  it('refuses a COPY without a destination', () => {
    expect(() => copyArgs({ keyword: 'COPY', args: '--from=x onlyone', line: 3 })).toThrow(
      'line 3: COPY needs sources and a destination',
    );
  });
});
