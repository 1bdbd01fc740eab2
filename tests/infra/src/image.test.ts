/**
 * The container image: the Dockerfile at the repository root (multi-stage on Node 24 slim, npm ci
 * from the lockfile, production dependencies only in the final stage, a non-root user, a service
 * as the command) and the .dockerignore that decides what reaches the build.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { IDeployment } from 'kubernetes-models/apps/v1';
import { describe, expect, it } from 'vitest';
import { copyArgs, execForm, parseDockerfile, type Stage } from './dockerfile.ts';
import { isIgnored, parseDockerignore } from './dockerignore.ts';
import { kustomize } from './kustomize.ts';
import { INFRA_DIR, REPO_ROOT } from './repo.ts';
import { appOfCommand, SERVICES } from './services.ts';

const BASE_IMAGE = 'node:24-slim';
const dockerfile = parseDockerfile(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'));
const ignore = parseDockerignore(readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8'));
const finalStage = dockerfile.stages.at(-1);

function stageNamed(name: string): Stage | undefined {
  return dockerfile.stages.find((s) => s.name === name || String(s.index) === name);
}

/** The stages whose files reach `stage`: itself, its base stage and COPY --from sources, transitively. */
function feeding(stage: Stage, seen = new Set<Stage>()): Set<Stage> {
  if (seen.has(stage)) return seen;
  seen.add(stage);
  const base = stageNamed(stage.base);
  if (base !== undefined) feeding(base, seen);
  for (const i of stage.instructions) {
    if (i.keyword !== 'COPY') continue;
    const from = copyArgs(i).from;
    const source = from === undefined ? undefined : stageNamed(from);
    if (source !== undefined) feeding(source, seen);
  }
  return seen;
}

function runs(stage: Stage, pattern: RegExp): string[] {
  return stage.instructions.filter((i) => i.keyword === 'RUN' && pattern.test(i.args)).map((i) => i.args);
}

/**
 * Whether package-lock.json reaches `stage`: named by a COPY from the build context or by a RUN
 * (which copies it on) in `stage` or a stage feeding it. A bare `COPY . .` does not count: npm ci
 * would run on whatever the lines after it leave.
 */
function receivesLockfile(stage: Stage): boolean {
  return [...feeding(stage)].some((s) =>
    s.instructions.some(
      (i) =>
        (i.keyword === 'RUN' && i.args.includes('package-lock.json')) ||
        (i.keyword === 'COPY' &&
          copyArgs(i).from === undefined &&
          copyArgs(i).sources.includes('package-lock.json')),
    ),
  );
}

describe('Dockerfile', () => {
  it(`is multi-stage, every stage on ${BASE_IMAGE} or an earlier stage`, () => {
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of dockerfile.stages) {
      const earlier = dockerfile.stages.slice(0, stage.index).some((s) => s.name === stage.base);
      expect(
        earlier || stage.base === BASE_IMAGE,
        `stage ${stage.name ?? stage.index} FROM ${stage.base}`,
      ).toBe(true);
    }
  });

  it('installs with npm ci from the lockfile, and only production dependencies reach the final stage', () => {
    const all = dockerfile.stages.flatMap((s) => runs(s, /\bnpm\s+(install|i|add|update)\b/));
    expect(all, 'npm install ignores the lockfile where it disagrees').toEqual([]);
    const final = finalStage ?? dockerfile.stages[0];
    if (final === undefined) throw new Error('no stage');
    const installers = [...feeding(final)].filter((s) => runs(s, /\bnpm\s+ci\b/).length > 0);
    expect(installers.length).toBeGreaterThan(0);
    for (const stage of installers) {
      for (const command of runs(stage, /\bnpm\s+ci\b/)) expect(command).toMatch(/--omit=dev\b/);
      expect(receivesLockfile(stage), `stage ${stage.name ?? stage.index} gets package-lock.json`).toBe(true);
    }
  });

  it('runs as a non-root user, by number, the one the manifests run as', async () => {
    const users = finalStage?.instructions.filter((i) => i.keyword === 'USER') ?? [];
    const user = users.at(-1)?.args ?? '';
    // A number, so that the kubelet can verify runAsNonRoot without the image's /etc/passwd.
    expect(user).toMatch(/^\d+(:\d+)?$/);
    const uid = Number(user.split(':')[0]);
    expect(uid).not.toBe(0);
    const base = await kustomize(join(INFRA_DIR, 'base'));
    const uids = base
      .filter((o) => o.kind === 'Deployment')
      .map((o) => (o as unknown as IDeployment).spec?.template.spec?.securityContext?.runAsUser);
    expect(new Set(uids)).toEqual(new Set([uid]));
  });

  it('copies the sources and starts a service by default', () => {
    const copies = (finalStage?.instructions ?? []).filter((i) => i.keyword === 'COPY').map(copyArgs);
    const fromContext = copies.filter((c) => c.from === undefined).flatMap((c) => c.sources);
    expect(fromContext).toEqual(expect.arrayContaining(['apps', 'libs', 'package.json']));
    const cmd = finalStage?.instructions.filter((i) => i.keyword === 'CMD').at(-1);
    const app = appOfCommand(execForm(cmd?.args ?? ''));
    expect(Object.keys(SERVICES)).toContain(app);
  });
});

/** Files under `dir` (relative to the repository), skipping node_modules and dot directories. */
function walk(dir: string): string[] {
  return readdirSync(join(REPO_ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory())
      return entry.name === 'node_modules' || entry.name.startsWith('.') ? [] : walk(path);
    return [path];
  });
}

function workspacePackageFiles(): string[] {
  const root = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { workspaces: string[] };
  return root.workspaces.flatMap((glob) => {
    const parent = glob.replace(/\/\*$/, '');
    return readdirSync(join(REPO_ROOT, parent), { withFileTypes: true })
      .filter((e) => e.isDirectory() && readdirSync(join(REPO_ROOT, parent, e.name)).includes('package.json'))
      .map((e) => relative(REPO_ROOT, join(REPO_ROOT, parent, e.name, 'package.json')));
  });
}

describe('.dockerignore', () => {
  it('sends the lockfile and every workspace manifest (npm ci checks them against each other)', () => {
    const needed = ['package.json', 'package-lock.json', '.npmrc', ...workspacePackageFiles()];
    expect(needed.length).toBeGreaterThan(Object.keys(SERVICES).length);
    expect(needed.filter((p) => isIgnored(ignore, p))).toEqual([]);
  });

  it('sends every source file of apps/ and libs/, and no test', () => {
    const sources = ['apps', 'libs'].flatMap((top) =>
      readdirSync(join(REPO_ROOT, top))
        // A project directory without src/ is one being created: nothing of it to send yet.
        .filter((project) => existsSync(join(REPO_ROOT, top, project, 'src')))
        .flatMap((project) => walk(`${top}/${project}/src`)),
    );
    const code = sources.filter((p) => p.endsWith('.ts') && !p.endsWith('.test.ts'));
    const tests = sources.filter((p) => p.endsWith('.test.ts'));
    expect(code.length).toBeGreaterThan(0);
    expect(tests.length).toBeGreaterThan(0);
    expect(code.filter((p) => isIgnored(ignore, p))).toEqual([]);
    expect(tests.filter((p) => !isIgnored(ignore, p))).toEqual([]);
  });

  it.each([
    'node_modules/bullmq/package.json',
    'libs/oci/node_modules/.vite/x',
    '.git/HEAD',
    '.nx/cache/x',
    'infra/base/kustomization.yaml',
    'docs/queues.md',
    'tests/infra/src/overlays.test.ts',
    'tools/stack/src/main.ts',
    'libs/store/.scratch/blob',
    'libs/store/test/fixtures.ts',
    'apps/api/vitest.config.ts',
    'Dockerfile',
  ])('leaves out %s', (path) => {
    expect(isIgnored(ignore, path)).toBe(true);
  });
});
