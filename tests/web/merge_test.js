// Checks Mission Control's series merge (assets/web/app.js) without a browser:
//   node tests/web/merge_test.js
// app.js is loaded in a VM with just enough of `window`/`document` to define itself; the
// page never starts (readyState stays "loading"), so no connection is attempted.
'use strict';
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const vm = require('vm');

const src = fs.readFileSync(path.join(__dirname, '..', '..', 'assets', 'web', 'app.js'), 'utf8');
const window = { addEventListener() {} };
const document = { readyState: 'loading', addEventListener() {} };
vm.runInNewContext(src, { window, document, console, setTimeout, clearTimeout });
const { mergeSeries, sortedUnique } = window.missionControl;

const s = (second, commits) => ({ second, commits });
const seconds = (list) => Array.from(list, (x) => x.second); // this realm's arrays

// A whole series arrives unsorted with a repeat: sorted, the last repeat wins.
let held = sortedUnique([s(3, 30), s(1, 10), s(2, 20), s(2, 21)]);
assert.deepStrictEqual(seconds(held), [1, 2, 3]);
assert.strictEqual(held[1].commits, 21);

// The usual tail: the last sample again (now complete) and new ones.
mergeSeries(held, [s(3, 33), s(4, 40), s(5, 50)]);
assert.deepStrictEqual(seconds(held), [1, 2, 3, 4, 5]);
assert.strictEqual(held[2].commits, 33);

// Only new ones, after a gap (frames dropped): appended, the gap kept.
mergeSeries(held, [s(8, 80), s(9, 90)]);
assert.deepStrictEqual(seconds(held), [1, 2, 3, 4, 5, 8, 9]);

// Late and out of order: filled in, replaced, order kept.
mergeSeries(held, [s(7, 70), s(6, 60), s(2, 22)]);
assert.deepStrictEqual(seconds(held), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
assert.strictEqual(held[1].commits, 22);

// Nothing new, nothing valid: unchanged.
mergeSeries(held, []);
mergeSeries(held, [{ commits: 1 }, null, { second: 'x' }]);
assert.strictEqual(held.length, 9);

// Into an empty hold.
const empty = [];
mergeSeries(empty, [s(2, 2), s(1, 1)]);
assert.deepStrictEqual(seconds(empty), [1, 2]);

console.log('merge_test: ok');
