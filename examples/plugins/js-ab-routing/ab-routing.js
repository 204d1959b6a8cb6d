// Sticky A/B variant tagging for wasmgate, in JavaScript.
//
// Each client is assigned a variant by hashing a stable client id (a header
// such as `x-client-id`, falling back to the client's IP) into weighted
// buckets. The variant travels to the upstream as a header, is shared with
// later plugins through the request context, and is pinned with a cookie so a
// client keeps its variant even when its id changes.

import * as context from 'wasmgate:plugin/context@0.1.0';
import { log } from 'wasmgate:plugin/log@0.1.0';
import { counterAdd } from 'wasmgate:plugin/metrics@0.1.0';

const CONTEXT_KEY = 'ab.variant';
const NEW_KEY = 'ab.assigned';

let settings = null;

/** 32-bit FNV-1a over the UTF-16 code units: stable across instances and restarts. */
function fnv1a(text) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

function fail(message) {
  throw `ab-routing: ${message}`;
}

function parseSettings(configText) {
  let config;
  try {
    config = JSON.parse(configText || '{}') ?? {};
  } catch (e) {
    fail(`config is not JSON: ${e}`);
  }
  if (typeof config !== 'object' || Array.isArray(config)) fail('config must be an object');
  const known = ['variants', 'id_header', 'cookie', 'header', 'salt', 'cookie_max_age_s'];
  for (const key of Object.keys(config)) {
    if (!known.includes(key)) fail(`unknown field \`${key}\`, expected one of ${known.join(', ')}`);
  }
  const variants = config.variants ?? [{ name: 'a', weight: 50 }, { name: 'b', weight: 50 }];
  if (!Array.isArray(variants) || variants.length === 0) fail('`variants` must be a non-empty list');
  let total = 0;
  const names = new Set();
  for (const v of variants) {
    if (typeof v?.name !== 'string' || !/^[A-Za-z0-9_-]+$/.test(v.name)) {
      fail('every variant needs a `name` of letters, digits, `-` or `_`');
    }
    if (names.has(v.name)) fail(`variant \`${v.name}\` is listed twice`);
    names.add(v.name);
    if (!Number.isInteger(v.weight) || v.weight < 0) fail(`variant \`${v.name}\`: \`weight\` must be a whole number >= 0`);
    if (v.path_prefix !== undefined && !(typeof v.path_prefix === 'string' && v.path_prefix.startsWith('/'))) {
      fail(`variant \`${v.name}\`: \`path_prefix\` must start with /`);
    }
    total += v.weight;
  }
  if (total === 0) fail('the variant weights add up to 0');
  const lower = (value, fallback) => (value ?? fallback).toString().toLowerCase();
  return {
    variants,
    total,
    idHeader: lower(config.id_header, 'x-client-id'),
    cookie: config.cookie ?? 'ab_variant',
    header: lower(config.header, 'x-ab-variant'),
    salt: config.salt ?? '',
    maxAge: config.cookie_max_age_s ?? 30 * 24 * 3600,
  };
}

function header(headers, name) {
  for (const [key, value] of headers) if (key === name) return value;
  return undefined;
}

function cookieValue(headers, name) {
  for (const [key, value] of headers) {
    if (key !== 'cookie') continue;
    for (const part of value.split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
    }
  }
  return undefined;
}

function assign(clientId) {
  let bucket = fnv1a(settings.salt + clientId) % settings.total;
  for (const v of settings.variants) {
    if (bucket < v.weight) return v;
    bucket -= v.weight;
  }
  return settings.variants[settings.variants.length - 1];
}

function clientIp(addr) {
  // `ip:port`, `[v6]:port`
  const colon = addr.lastIndexOf(':');
  return (colon > 0 ? addr.slice(0, colon) : addr).replace(/^\[|\]$/g, '');
}

export const handler = {
  init(configText) {
    settings = parseSettings(configText);
    return { wantsRequestBody: false, wantsResponse: true, wantsResponseBody: false };
  },

  headerInterest() {
    return ['cookie', settings.idHeader];
  },

  onRequest(request) {
    const pinned = cookieValue(request.headers, settings.cookie);
    let variant = settings.variants.find((v) => v.name === pinned && v.weight > 0);
    if (variant === undefined) {
      const id = header(request.headers, settings.idHeader) ?? clientIp(request.clientAddr);
      variant = assign(id);
      context.set(NEW_KEY, variant.name);
      counterAdd('ab_assignments_total', 1n, [['variant', variant.name]]);
      log('debug', 'assigned a/b variant', [['variant', variant.name]]);
    }
    context.set(CONTEXT_KEY, variant.name);
    const path = variant.path_prefix === undefined ? undefined : variant.path_prefix.replace(/\/$/, '') + request.path;
    return {
      tag: 'continue',
      val: {
        headers: { remove: [], set: [[settings.header, variant.name]], append: [] },
        path,
        query: undefined,
        body: undefined,
      },
    };
  },

  onResponse(_response) {
    const set = [];
    const append = [];
    const variant = context.get(CONTEXT_KEY);
    if (variant !== undefined) set.push([settings.header, variant]);
    const assigned = context.get(NEW_KEY);
    if (assigned !== undefined) {
      append.push([
        'set-cookie',
        `${settings.cookie}=${assigned}; Path=/; Max-Age=${settings.maxAge}; HttpOnly; SameSite=Lax`,
      ]);
    }
    return { status: undefined, headers: { remove: [], set, append }, body: undefined };
  },
};
