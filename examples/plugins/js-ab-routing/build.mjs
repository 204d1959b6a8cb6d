// Builds ab-routing.js into a wasmgate plugin component.
//
//   node build.mjs [out.wasm]     (WIT dir: $WASMGATE_WIT, default ../../../wit)
//
// The WIT world is the gateway's contract, `wasmgate:plugin/plugin@0.1.0`.
// Every WASI feature the plugin does not use is disabled, so the component
// imports as little as possible; `fetch-event` must go or the component
// would also export `wasi:http/incoming-handler`.
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wit = resolve(process.env.WASMGATE_WIT ?? resolve(here, '../../../wit'));
const out = resolve(process.argv[2] ?? resolve(here, '../../../target/plugins-polyglot/js-ab-routing.wasm'));

process.chdir(here); // componentize-js resolves the source relative to the cwd
const { component } = await componentize({
  sourcePath: 'ab-routing.js',
  witPath: wit,
  worldName: 'plugin',
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await mkdir(dirname(out), { recursive: true });
await writeFile(`${out}.tmp`, component);
await rename(`${out}.tmp`, out);
console.log(`wrote ${out} (${component.length} bytes)`);
