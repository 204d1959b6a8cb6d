// Builds plugin.js into a wasmgate plugin component.
//
//   node build.mjs [out.wasm]     (default {{name}}.wasm)
//
// The WIT world is the gateway's contract in wit/. WASI features the plugin
// does not use are disabled so the component imports as little as possible;
// `fetch-event` must go or it would also export `wasi:http/incoming-handler`.
import { componentize } from '@bytecodealliance/componentize-js';
import { rename, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? resolve(here, '{{name}}.wasm'));

process.chdir(here); // componentize-js resolves the source relative to the cwd
const { component } = await componentize({
  sourcePath: 'plugin.js',
  witPath: resolve(here, 'wit'),
  worldName: 'plugin',
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(`${out}.tmp`, component);
await rename(`${out}.tmp`, out);
console.log(`wrote ${out} (${component.length} bytes)`);
