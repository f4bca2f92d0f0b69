/**
 * A process for log-sink.test.ts: writes N lines through the sink on a file, then either crashes
 * (uncaught exception → flushSync → exit 70, as serve's crash handler does) or exits without
 * flushing, to show what the flush saves.
 *   node log-sink-child.js FILE COUNT crash|exit
 */
import { openSync } from 'node:fs';
import { createLogSink } from '../../src/http/log-sink.js';

const [file = '', countText = '0', mode = 'crash'] = process.argv.slice(2);
const sink = createLogSink(openSync(file, 'a'));
process.on('uncaughtException', () => {
  sink.write('{"event":"process.crashed"}');
  sink.flushSync();
  process.exit(70);
});
for (let i = 0; i < Number(countText); i += 1) sink.write(`{"n":${String(i)}}`);
if (mode === 'crash') throw new Error('crash');
process.exit(0);
