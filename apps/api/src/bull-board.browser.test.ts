/**
 * Bull Board in a real browser: Debian's chromium, headless, driven by playwright-core. Logs in
 * with HTTP Basic, sees every stevedore queue, opens the fetch queue's completed jobs and finds the
 * job a real BullMQ worker completed, and saves a screenshot to test-artifacts/bull-board.png.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Queue, Worker } from 'bullmq';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_PREFIX, QUEUES, type FetchBlobJob, type FetchResult } from '@stevedore/queue';
import { BOARD_PASSWORD, BOARD_USER, startApi, type TestApi } from '../test/support.ts';

const DB = 2;
const CHROMIUM = '/usr/bin/chromium';
const REPO_ROOT = resolve(import.meta.dirname, '../../..');
export const SCREENSHOT = join(REPO_ROOT, 'test-artifacts', 'bull-board.png');
/** Every wait for the page; generous, since the machine is shared. */
const UI_TIMEOUT_MS = 30_000;

const JOB_ID = 'pull-demo.fetch.sha256-4f7a9c0de1b2a3948576a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6';
const JOB_DATA: FetchBlobJob = {
  pullId: 'pull-demo',
  repository: 'registry.example/library/alpine',
  digest: 'sha256:4f7a9c0de1b2a3948576a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6',
  mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
  size: 3_623_807,
  diffID: 'sha256:94e5f06ff8e3d4441dc3cd8b090ff38dc911bfa8ebdb0dc28395bc98f82f983f',
};

let api: TestApi;
let context: BrowserContext;
let userDataDir: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: install the Debian package "chromium" (apt-get install -y chromium, or npm run setup)`,
    );
  }
  api = await startApi(DB);

  // One job completed by a real worker, and one still waiting, on the real Redis.
  const connection = api.workerRedis;
  const fetchQueue = new Queue<FetchBlobJob>(QUEUES.fetch, { connection, prefix: QUEUE_PREFIX });
  const worker = new Worker<FetchBlobJob, FetchResult>(
    QUEUES.fetch,
    (job) => Promise.resolve({ outcome: 'fetched', bytesFetched: job.data.size }),
    { connection, prefix: QUEUE_PREFIX },
  );
  const workerErrors: Error[] = [];
  worker.on('error', (err) => workerErrors.push(err));
  const completed = new Promise<void>((done) => worker.once('completed', () => done()));
  await fetchQueue.add('fetch-blob', JOB_DATA, { jobId: JOB_ID });
  await completed;
  await worker.close();
  expect(workerErrors).toEqual([]);
  await fetchQueue.close();
  await api.submitter.submit('registry.example/library/alpine:3.20', 'linux/amd64');

  userDataDir = await mkdtemp(join(tmpdir(), 'stevedore-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    httpCredentials: { username: BOARD_USER, password: BOARD_PASSWORD },
    viewport: { width: 1400, height: 900 },
  });
}, 120_000);

afterAll(async () => {
  await context?.close();
  if (userDataDir !== undefined) await rm(userDataDir, { recursive: true, force: true });
  await api?.close();
});

describe('Bull Board', () => {
  it('logs in with HTTP Basic, lists the queues and shows a completed job', async () => {
    const page = await context.newPage();
    const response = await page.goto(`${api.url}/admin/queues`, { timeout: UI_TIMEOUT_MS });
    expect(response?.status()).toBe(200);

    for (const name of ['pull', 'fetch', 'split', 'commit']) {
      await page
        .locator(`a[href$="/admin/queues/queue/${name}"]`)
        .first()
        .waitFor({ timeout: UI_TIMEOUT_MS });
    }

    await page.goto(`${api.url}/admin/queues/queue/fetch?status=completed`, { timeout: UI_TIMEOUT_MS });
    const job = page.getByText(JOB_ID).first();
    await job.waitFor({ timeout: UI_TIMEOUT_MS });
    await page.getByText(JOB_DATA.diffID).first().waitFor({ timeout: UI_TIMEOUT_MS });

    await mkdir(join(REPO_ROOT, 'test-artifacts'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
  });
});
