import { describe, expect, it } from 'vitest';
import { commandCalls, commandDelta, parseInfo, totalCommands } from './redis-info.ts';

const STATS =
  '# Stats\r\ntotal_connections_received:4\r\ntotal_commands_processed:1234\r\ninstantaneous_ops_per_sec:0\r\n';
const COMMANDSTATS_BEFORE =
  '# Commandstats\r\ncmdstat_info:calls=2,usec=80,usec_per_call=40.00,rejected_calls=0,failed_calls=0\r\n' +
  'cmdstat_evalsha:calls=10,usec=900,usec_per_call=90.00,rejected_calls=0,failed_calls=0\r\n';
const COMMANDSTATS_AFTER =
  '# Commandstats\r\ncmdstat_info:calls=4,usec=160,usec_per_call=40.00,rejected_calls=0,failed_calls=0\r\n' +
  'cmdstat_evalsha:calls=110,usec=9900,usec_per_call=90.00,rejected_calls=0,failed_calls=0\r\n' +
  'cmdstat_bzpopmin:calls=7,usec=70,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n' +
  'cmdstat_hincrbyfloat:calls=7,usec=70,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n';

describe('INFO parsing', () => {
  it('reads key:value fields and skips section headers', () => {
    expect([...parseInfo('# Server\r\nredis_version:7.0.15\r\n\r\n# Stats\r\na:b:c\r\n')]).toEqual([
      ['redis_version', '7.0.15'],
      ['a', 'b:c'],
    ]);
  });

  it.each([
    { info: STATS, total: 1234 },
    { info: 'total_commands_processed:0\n', total: 0 },
  ])('total_commands_processed of $info', ({ info, total }) => {
    expect(totalCommands(info)).toBe(total);
  });

  it.each(['# Stats\r\n', 'total_commands_processed:many\r\n'])('refuses %j', (info) => {
    expect(() => totalCommands(info)).toThrow('INFO stats has no numeric total_commands_processed');
  });

  it('reads calls per command', () => {
    expect([...commandCalls(COMMANDSTATS_BEFORE)]).toEqual([
      ['info', 2],
      ['evalsha', 10],
    ]);
  });

  it('orders the calls between two snapshots by count, then name, without zero deltas', () => {
    expect(commandDelta(commandCalls(COMMANDSTATS_BEFORE), commandCalls(COMMANDSTATS_AFTER))).toEqual([
      ['evalsha', 100],
      ['bzpopmin', 7],
      ['hincrbyfloat', 7],
      ['info', 2],
    ]);
    expect(commandDelta(commandCalls(COMMANDSTATS_AFTER), commandCalls(COMMANDSTATS_AFTER))).toEqual([]);
  });
});
