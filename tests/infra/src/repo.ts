/** Where things are in the repository. */
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const REPO_ROOT = resolve(import.meta.dirname, '../../..');
export const INFRA_DIR = join(REPO_ROOT, 'infra');
export const OVERLAYS_DIR = join(INFRA_DIR, 'overlays');

/** The overlays in infra/overlays, by directory name. */
export function listOverlays(): string[] {
  return readdirSync(OVERLAYS_DIR, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
}
