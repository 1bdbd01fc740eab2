import { describe, expect, it } from 'vitest';
import { parseBenchArgs, UsageError } from './args.ts';

describe('parseBenchArgs', () => {
  it.each([
    {
      argv: ['pull'],
      pull: { s3: false, workers: [1, 2, 4], repeat: 3, timeoutMs: 1_800_000, peers: true, set: 'usr' },
      quick: false,
      json: false,
    },
    {
      argv: ['pull', '--quick', '--json'],
      pull: { s3: false, workers: [1, 2, 4], repeat: 1, timeoutMs: 120_000, peers: true, set: 'usr' },
      quick: true,
      json: true,
    },
    {
      argv: ['pull', '--s3', '--workers', '4, 1,4', '--repeat', '5', '--timeout', '60'],
      pull: { s3: true, workers: [4, 1], repeat: 5, timeoutMs: 60_000, peers: true, set: 'usr' },
      quick: false,
      json: false,
    },
    {
      argv: ['pull', '--set', 'usr-share', '--workers', '1', '--no-peers'],
      pull: { s3: false, workers: [1], repeat: 3, timeoutMs: 1_800_000, peers: false, set: 'usr-share' },
      quick: false,
      json: false,
    },
  ])('pull $argv', ({ argv, pull, quick, json }) => {
    const args = parseBenchArgs(argv)!;
    expect(args.name).toBe('pull');
    expect(args.pull).toEqual(pull);
    expect(args.quick).toBe(quick);
    expect(args.json).toBe(json);
    expect(Object.isFrozen(args)).toBe(true);
  });

  it.each([
    { argv: ['split'], passThrough: [] },
    {
      argv: ['split', '--quick'],
      passThrough: ['--dataset', 'a', '--files', '100', '--backend', 'directory'],
    },
    {
      argv: ['split', '--quick', '--backend', 's3', '--files', '50'],
      passThrough: ['--backend', 's3', '--files', '50', '--dataset', 'a'],
    },
    {
      argv: ['split', '--dataset', 'b', '--results-dir', '/tmp/r'],
      passThrough: ['--dataset', 'b'],
    },
    {
      argv: ['split', '--input', 'fresh', '--dataset', 'b'],
      passThrough: ['--dataset', 'b', '--input', 'fresh'],
    },
  ])('split $argv', ({ argv, passThrough }) => {
    const args = parseBenchArgs(argv)!;
    expect(args.name).toBe('split');
    expect(args.split.passThrough).toEqual(passThrough);
  });

  it('reads --results-dir', () => {
    expect(parseBenchArgs(['pull', '--results-dir', '/tmp/r'])!.resultsDir).toBe('/tmp/r');
    expect(parseBenchArgs(['pull'])!.resultsDir).toBeUndefined();
  });

  it('returns undefined for --help', () => {
    expect(parseBenchArgs(['--help'])).toBeUndefined();
    expect(parseBenchArgs(['pull', '-h'])).toBeUndefined();
  });

  it.each([
    { argv: [], message: 'expected one benchmark name (split or pull), got 0' },
    { argv: ['pull', 'split'], message: 'expected one benchmark name (split or pull), got 2' },
    { argv: ['push'], message: 'unknown benchmark "push": expected split or pull' },
    { argv: ['pull', '--workers', '0'], message: '--workers takes an integer from 1 to 32, not "0"' },
    { argv: ['pull', '--workers', '1,,2'], message: '--workers takes an integer from 1 to 32, not ""' },
    { argv: ['pull', '--workers', '33'], message: '--workers takes an integer from 1 to 32, not "33"' },
    { argv: ['pull', '--repeat', '2.5'], message: '--repeat takes an integer from 1 to' },
    { argv: ['pull', '--timeout', '-1'], message: "Option '--timeout' argument is ambiguous" },
    { argv: ['pull', '--files', '10'], message: '--files do(es) not apply to pull' },
    { argv: ['split', '--s3', '--repeat', '2'], message: '--s3, --repeat do(es) not apply to split' },
    { argv: ['pull', '--bogus'], message: "Unknown option '--bogus'" },
    { argv: ['pull', '--set', 'etc'], message: '--set takes usr or usr-share, not "etc"' },
    { argv: ['split', '--set', 'usr'], message: '--set do(es) not apply to split' },
  ])('refuses $argv', ({ argv, message }) => {
    expect(() => parseBenchArgs(argv)).toThrow(UsageError);
    expect(() => parseBenchArgs(argv)).toThrow(message);
  });
});
