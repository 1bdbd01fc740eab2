import { describe, expect, it } from 'vitest';
import { parseSplitOutput } from './split.ts';

const OUTPUT = `directory / synthetic 100 x 200 KiB: 21 MB tar, 100 files as objects, 100 object refs
  split    120 MB/s, 571 objects/s (0.18 s)
  requests 0.0 PUT per GB written (0 PUT, 0 POST for 21 MB)
  stored   1.010 x unique content (21 MB stored / 21 MB unique)
  rebuild  300 MB/s (0.07 s, verified)
  1% files changed, drop policy: +0.2 MB = 1.05% of the tar
  peak RSS 140 MiB
s3 / tar of /usr/share: 700 MB tar, 48000 files as objects, 48000 object refs
  split    80 MB/s, 5000 objects/s (8.75 s)
warming the page cache
`;

describe('parseSplitOutput', () => {
  it('groups indented figure lines under their section title', () => {
    expect(parseSplitOutput(OUTPUT)).toEqual({
      sections: [
        {
          title: 'directory / synthetic 100 x 200 KiB: 21 MB tar, 100 files as objects, 100 object refs',
          figures: [
            'split    120 MB/s, 571 objects/s (0.18 s)',
            'requests 0.0 PUT per GB written (0 PUT, 0 POST for 21 MB)',
            'stored   1.010 x unique content (21 MB stored / 21 MB unique)',
            'rebuild  300 MB/s (0.07 s, verified)',
            '1% files changed, drop policy: +0.2 MB = 1.05% of the tar',
            'peak RSS 140 MiB',
          ],
        },
        {
          title: 's3 / tar of /usr/share: 700 MB tar, 48000 files as objects, 48000 object refs',
          figures: ['split    80 MB/s, 5000 objects/s (8.75 s)'],
        },
      ],
      otherLines: ['warming the page cache'],
    });
  });

  it.each([
    { output: '', sections: 0, other: 0 },
    { output: '  split 1 MB/s\n', sections: 0, other: 1 },
    { output: 'error: no backend\n', sections: 0, other: 1 },
  ])('keeps lines outside a section apart ($output)', ({ output, sections, other }) => {
    const parsed = parseSplitOutput(output);
    expect(parsed.sections).toHaveLength(sections);
    expect(parsed.otherLines).toHaveLength(other);
  });
});
