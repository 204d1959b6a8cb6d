// `{{name}}`: a wasmgate plugin in JavaScript. It greets every request with
// a header (and tells later plugins through the context), and answers paths
// under `blocked_prefix` with 403 JSON.
//
// The contract is wit/plugin.wit (wasmgate:plugin@{{contract}}): the handler
// exports init, headerInterest, onRequest and onResponse; host capabilities
// are imported from 'wasmgate:plugin/<interface>@{{contract}}'.

import * as context from 'wasmgate:plugin/context@{{contract}}';
import { log } from 'wasmgate:plugin/log@{{contract}}';

let settings = null;

function parseSettings(text) {
  let config;
  try {
    config = JSON.parse(text || '{}') ?? {};
  } catch (e) {
    throw `config is not JSON: ${e}`;
  }
  const known = ['greeting', 'blocked_prefix'];
  for (const key of Object.keys(config)) {
    if (!known.includes(key)) throw `unknown field \`${key}\`, expected one of ${known.join(', ')}`;
  }
  if (typeof config.greeting !== 'string' || config.greeting === '') throw '`greeting` must not be empty';
  return { greeting: config.greeting, blockedPrefix: config.blocked_prefix };
}

const NO_HEADERS = { remove: [], set: [], append: [] };

export const handler = {
  // Runs once per instance; a thrown string refuses the config at load time.
  init(configText) {
    settings = parseSettings(configText);
    return { wantsRequestBody: false, wantsResponse: false, wantsResponseBody: false };
  },

  // It reads no request header, so the host copies none into the call.
  headerInterest() {
    return [];
  },

  onRequest(request) {
    if (settings.blockedPrefix !== undefined && request.path.startsWith(settings.blockedPrefix)) {
      log('info', 'blocked', [['path', request.path]]);
      return {
        tag: 'respond',
        val: {
          status: 403,
          headers: [['content-type', 'application/json']],
          body: new TextEncoder().encode(JSON.stringify({ error: 'blocked', code: 'forbidden' })),
        },
      };
    }
    context.set('greeting', settings.greeting);
    return {
      tag: 'continue',
      val: {
        headers: { remove: [], set: [['x-greeting', settings.greeting]], append: [] },
        path: undefined,
        query: undefined,
        body: undefined,
      },
    };
  },

  onResponse(_response) {
    return { status: undefined, headers: NO_HEADERS, body: undefined };
  },
};
