/**
 * `.dockerignore` as BuildKit reads it: one pattern per line (`#` comments), `!` re-includes,
 * `*` and `?` stay within a path segment, `**` spans segments. A pattern applies to a path when it
 * matches the path or any of its parent directories, and the last pattern that applies decides.
 */

export interface IgnoreRule {
  readonly pattern: string;
  /** `!pattern`: re-include what an earlier pattern excluded. */
  readonly include: boolean;
  readonly regex: RegExp;
}

export function parseDockerignore(text: string): IgnoreRule[] {
  const rules: IgnoreRule[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const include = line.startsWith('!');
    const pattern = cleanPath((include ? line.slice(1) : line).trim());
    rules.push({ pattern, include, regex: globToRegex(pattern) });
  }
  return rules;
}

/** Whether the build context leaves out `path` (relative to the context, `/`-separated). */
export function isIgnored(rules: readonly IgnoreRule[], path: string): boolean {
  const candidates = ancestorsAndSelf(cleanPath(path));
  let ignored = false;
  for (const rule of rules) {
    if (candidates.some((p) => rule.regex.test(p))) ignored = !rule.include;
  }
  return ignored;
}

function cleanPath(path: string): string {
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return parts.join('/');
}

/** `a/b/c` → [a, a/b, a/b/c]. */
function ancestorsAndSelf(path: string): string[] {
  const parts = path.split('/');
  return parts.map((_, i) => parts.slice(0, i + 1).join('/'));
}

function globToRegex(pattern: string): RegExp {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern.charAt(i);
    if (c === '*' && pattern.charAt(i + 1) === '*') {
      // `**/` is any number of leading directories (zero included); a bare `**` is anything.
      if (pattern.charAt(i + 2) === '/') {
        out += '(?:.*/)?';
        i += 2;
      } else {
        out += '.*';
        i += 1;
      }
    } else if (c === '*') {
      out += '[^/]*';
    } else if (c === '?') {
      out += '[^/]';
    } else if (c === '\\' && i + 1 < pattern.length) {
      out += escapeRegex(pattern.charAt(++i));
    } else {
      out += escapeRegex(c);
    }
  }
  return new RegExp(`^${out}$`);
}

function escapeRegex(c: string): string {
  return /[.+^${}()|[\]\\]/.test(c) ? `\\${c}` : c;
}
