/**
 * The peer tools, run side by side with stevedore on the same registry and images:
 *
 *  - skopeo: `skopeo copy docker://HOST/repo:tag oci:DIR:name`, both images at once into one OCI
 *    layout. Fetch only (no unpack). Two copies sharing a base each fetch it: the duplicate fetch
 *    stevedore's per-blob locks avoid.
 *  - containerd: a private `containerd` (generated config, temporary root and state, its own
 *    socket, CRI off), then `ctr images pull` of both images at once: fetch and unpack into the
 *    overlayfs snapshotter, or `native` where overlayfs is not supported.
 *
 * Each run starts from nothing (a new layout directory, a new containerd root), so every blob is
 * fetched.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { containerdConfig, type FaultProxy } from '@stevedore/testing';
import { tempDir, withCleanups } from './cleanup.ts';
import { findProgram, runCommand, startDaemon } from './exec.ts';
import { peakRssMiB } from './proc-status.ts';

/** Registry blob downloads, as the proxy counts them (uploads are PATCH/PUT, manifests elsewhere). */
export const BLOB_GET_PATH = /\/blobs\/sha256:/;

export interface PeerRun {
  readonly tool: 'skopeo' | 'containerd';
  /** `oci layout` or the containerd snapshotter. */
  readonly mode: string;
  /** Both images, from the first command started to the last one finished. */
  readonly wallSeconds: number;
  readonly registryBytes: number;
  /** containerd's peak RSS in MiB (the daemon does the work; ctr is a client). */
  readonly peakRssMiB: number | undefined;
  /** The machine's 1-minute load average when the run started (it is shared). */
  readonly loadAverage1m: number;
}

export interface PeerContext {
  readonly proxy: FaultProxy;
  /** `repository:tag` of each image, pulled through `proxy.host`. */
  readonly refs: readonly string[];
  readonly timeoutMs: number;
}

// ---- skopeo ------------------------------------------------------------------------------------

/** Accept any image: the benchmark's registry is a local one with unsigned images. */
const INSECURE_POLICY = { default: [{ type: 'insecureAcceptAnything' }] };

export async function runSkopeo(skopeo: string, ctx: PeerContext): Promise<PeerRun> {
  return withCleanups(async (defer) => {
    const work = await tempDir('stevedore-bench-skopeo-', defer);
    const policy = join(work, 'policy.json');
    await writeFile(policy, JSON.stringify(INSECURE_POLICY));
    const layout = join(work, 'layout');
    ctx.proxy.resetCounters();
    const loadAverage1m = loadavg()[0]!;
    const started = performance.now();
    await Promise.all(
      ctx.refs.map((ref) =>
        runCommand(
          skopeo,
          [
            '--policy',
            policy,
            'copy',
            '--quiet',
            '--src-tls-verify=false',
            `docker://${ctx.proxy.host}/${ref}`,
            `oci:${layout}:${ref.replaceAll(/[/:]/g, '-')}`,
          ],
          { timeoutMs: ctx.timeoutMs },
        ),
      ),
    );
    const wallSeconds = (performance.now() - started) / 1000;
    return {
      tool: 'skopeo',
      mode: 'oci layout',
      wallSeconds,
      registryBytes: ctx.proxy.bytesServed(BLOB_GET_PATH, 'GET'),
      peakRssMiB: undefined,
      loadAverage1m,
    };
  });
}

// ---- containerd --------------------------------------------------------------------------------

/** containerd logs this once it serves its socket. */
const BOOTED = /containerd successfully booted/;
const BOOT_TIMEOUT_MS = 30_000;
const CTR_TIMEOUT_MS = 30_000;
const NAMESPACE = 'stevedore-bench';

/** Status per snapshotter from `ctr plugins ls` (`io.containerd.snapshotter.v1  overlayfs  linux/amd64  ok`). */
export function parseSnapshotters(pluginsLs: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const line of pluginsLs.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols[0] === 'io.containerd.snapshotter.v1' && cols.length >= 4) found.set(cols[1]!, cols.at(-1)!);
  }
  return found;
}

/** overlayfs when containerd reports it `ok` here, else native (plain directory copies). */
export function chooseSnapshotter(statuses: ReadonlyMap<string, string>): 'overlayfs' | 'native' {
  return statuses.get('overlayfs') === 'ok' ? 'overlayfs' : 'native';
}

export interface ContainerdTools {
  readonly containerd: string;
  readonly ctr: string;
}

export async function findContainerd(): Promise<ContainerdTools | undefined> {
  const [containerd, ctr] = await Promise.all([findProgram('containerd'), findProgram('ctr')]);
  return containerd === undefined || ctr === undefined ? undefined : { containerd, ctr };
}

export async function runContainerd(tools: ContainerdTools, ctx: PeerContext): Promise<PeerRun> {
  return withCleanups(async (defer) => {
    // Short: the socket path must fit in sockaddr_un.
    const dir = await tempDir('sb-ctrd-', defer);
    await mkdir(join(dir, 'root'));
    await writeFile(join(dir, 'config.toml'), containerdConfig(dir));
    const daemon = startDaemon('containerd', tools.containerd, ['--config', join(dir, 'config.toml')]);
    defer(() => daemon.stop());
    try {
      await daemon.waitForOutput(BOOTED, BOOT_TIMEOUT_MS);
      const ctr = (args: readonly string[], timeoutMs = CTR_TIMEOUT_MS) =>
        runCommand(tools.ctr, ['--address', join(dir, 'c.sock'), '--namespace', NAMESPACE, ...args], {
          timeoutMs,
        });
      const snapshotter = chooseSnapshotter(parseSnapshotters((await ctr(['plugins', 'ls'])).output));
      const refs = ctx.refs.map((ref) => `${ctx.proxy.host}/${ref}`);
      ctx.proxy.resetCounters();
      const loadAverage1m = loadavg()[0]!;
      const started = performance.now();
      await Promise.all(
        refs.map((ref) =>
          ctr(['images', 'pull', '--plain-http', '--snapshotter', snapshotter, ref], ctx.timeoutMs),
        ),
      );
      const wallSeconds = (performance.now() - started) / 1000;
      const registryBytes = ctx.proxy.bytesServed(BLOB_GET_PATH, 'GET');
      const listed = (await ctr(['images', 'ls', '--quiet'])).output.split('\n');
      const missing = refs.filter((r) => !listed.includes(r));
      if (missing.length > 0) throw new Error(`containerd does not list ${missing.join(', ')} after pulling`);
      const peak = await peakRssMiB(daemon.pid);
      return {
        tool: 'containerd',
        mode: snapshotter,
        wallSeconds,
        registryBytes,
        peakRssMiB: peak,
        loadAverage1m,
      };
    } catch (err) {
      throw new Error(`containerd run failed; its log ends:\n${tailOf(daemon.output())}`, { cause: err });
    }
  });
}

function tailOf(text: string, lines = 10): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** The first line a tool prints about its version, for the report (`skopeo version 1.9.3`). */
export async function toolVersion(program: string, args: readonly string[]): Promise<string> {
  const { output } = await runCommand(program, args, { timeoutMs: CTR_TIMEOUT_MS });
  return output.trim().split('\n')[0] ?? '';
}
