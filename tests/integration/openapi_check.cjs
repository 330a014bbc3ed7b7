// SPDX-License-Identifier: MIT
// Checks a live `imgsim serve` against docs/openapi.yaml (given as JSON):
//   node openapi_check.cjs SPEC.json SRC_DIR BASE_URL API_KEY IN_COLL.jpeg NEW.jpeg
// 1. the server's route table (IMS_ROUTES in src/server/server_int.h and the
//    literal paths of ims__route_match in routes.c) equals the spec's paths;
// 2. per path, the methods the server allows (its 405 Allow header) are the
//    documented ones (GET documented = GET, HEAD allowed);
// 3. a scenario of requests covering every operation, and its error cases:
//    each answer's status is documented for that operation, its Content-Type
//    is one documented for that status, and a JSON body has the documented
//    shape (type, required keys, enums, items; $ref resolved);
// 4. every operation answered a 2xx at least once.
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');

const [specFile, srcDir, base, apiKey, inColl, newImg] = process.argv.slice(2);
const spec = JSON.parse(fs.readFileSync(specFile, 'utf8'));
const url = new URL(base);
let failures = 0;
const fail = (msg) => { failures++; console.error('FAIL: ' + msg); };

// ---- a tiny JSON Schema subset: type (incl. arrays), required, properties, items, enum, $ref
function resolve(o) {
  while (o && o.$ref) {
    o = o.$ref.replace(/^#\//, '').split('/').reduce((a, k) => a[k], spec);
  }
  return o;
}
function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}
function validate(schema, v, where, errs) {
  schema = resolve(schema);
  if (!schema) return;
  if (schema.type) {
    const types = [].concat(schema.type);
    const t = typeOf(v);
    if (!types.includes(t) && !(t === 'integer' && types.includes('number'))) {
      errs.push(`${where}: ${t}, want ${types.join('|')}`);
      return;
    }
  }
  if (schema.enum && !schema.enum.includes(v)) errs.push(`${where}: ${JSON.stringify(v)} not in ${schema.enum}`);
  if (typeOf(v) === 'object') {
    for (const k of schema.required || []) if (!(k in v)) errs.push(`${where}: no "${k}"`);
    for (const [k, s] of Object.entries(schema.properties || {}))
      if (k in v) validate(s, v[k], `${where}.${k}`, errs);
  }
  if (typeOf(v) === 'array' && schema.items) v.forEach((x, i) => validate(schema.items, x, `${where}[${i}]`, errs));
}

// ---- HTTP
function request(method, p, { body, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (body !== undefined) h['Content-Length'] = Buffer.byteLength(body);
    const req = http.request({ host: url.hostname, port: url.port, method, path: p, headers: h }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.setTimeout(60000, () => req.destroy(new Error('timeout')));
    if (body !== undefined) req.write(body);
    req.end();
  });
}
function multipart(fields) {
  const b = '----imgsimopenapi' + Date.now();
  const parts = [];
  for (const [name, v] of Object.entries(fields)) {
    if (Buffer.isBuffer(v)) {
      parts.push(Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="${name}"; filename="${name}.jpeg"\r\n` +
                             'Content-Type: image/jpeg\r\n\r\n'), v, Buffer.from('\r\n'));
    } else {
      parts.push(Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${v}\r\n`));
    }
  }
  parts.push(Buffer.from(`--${b}--\r\n`));
  return { body: Buffer.concat(parts), headers: { 'Content-Type': `multipart/form-data; boundary=${b}` } };
}

// ---- the spec's operations
const ops = {}; // "GET /v1/items/{id}" -> operation
for (const [p, item] of Object.entries(spec.paths))
  for (const m of ['get', 'post', 'put', 'delete', 'patch', 'head', 'options'])
    if (item[m]) ops[`${m.toUpperCase()} ${p}`] = item[m];
const answered2xx = new Set();

function templateOf(p) {
  const bare = p.split('?')[0];
  for (const t of Object.keys(spec.paths)) {
    const re = new RegExp('^' + t.replace(/[.]/g, '\\.').replace(/\{[^}]+\}/g, '[^/]+') + '$');
    if (re.test(bare)) return t;
  }
  return null;
}

// One request: its answer must be documented. want: the status expected.
async function check(method, p, want, opts = {}) {
  const r = await request(method, p, opts);
  const t = templateOf(p);
  const key = `${method === 'HEAD' ? 'GET' : method} ${t}`;
  const op = ops[key];
  const tag = `${method} ${p} -> ${r.status}`;
  if (r.status !== want) fail(`${tag}, want ${want}: ${r.body.toString().slice(0, 200)}`);
  if (!op) { fail(`${tag}: ${key} is not documented`); return r; }
  const doc = op.responses[String(r.status)] && resolve(op.responses[String(r.status)]);
  if (!doc) { fail(`${tag}: status ${r.status} not documented for ${key}`); return r; }
  if (r.status >= 200 && r.status < 300) answered2xx.add(key);
  const ct = (r.headers['content-type'] || '').split(';')[0].trim();
  const content = doc.content || {};
  const media = Object.keys(content).find((m) => m === ct || (m.endsWith('/*') && ct.startsWith(m.slice(0, -1))));
  if (Object.keys(content).length && !media) fail(`${tag}: Content-Type '${ct}' not documented (${Object.keys(content)})`);
  if (method !== 'HEAD' && media === 'application/json') {
    let j;
    try { j = JSON.parse(r.body.toString()); } catch (e) { fail(`${tag}: body is not JSON`); return r; }
    const errs = [];
    validate(content[media].schema, j, 'body', errs);
    for (const e of errs) fail(`${tag}: ${e}`);
    r.json = j;
  }
  for (const h of Object.keys(doc.headers || {}))
    if (r.status < 300 && !(h.toLowerCase() in r.headers)) fail(`${tag}: no ${h} header`);
  return r;
}

async function main() {
  // 1. route table of the server == the spec's paths
  const intH = fs.readFileSync(path.join(srcDir, 'src/server/server_int.h'), 'utf8');
  const routesC = fs.readFileSync(path.join(srcDir, 'src/server/routes.c'), 'utf8');
  const labels = [...intH.matchAll(/X\(([A-Z_]+),\s*"([^"]+)"\)/g)].filter((m) => m[1] !== 'NONE').map((m) => m[2]);
  const match = routesC.slice(routesC.indexOf('int ims__route_match'), routesC.indexOf('int ims__route_is_write'));
  const literals = [...match.matchAll(/strcmp\(path, "([^"]+)"\)/g)].map((m) => m[1]);
  if (labels.length < 5) fail(`found only ${labels.length} routes in server_int.h`);
  const server = new Set([...labels, ...literals]);
  const documented = new Set(Object.keys(spec.paths));
  for (const p of server) if (!documented.has(p)) fail(`route ${p} of the server is not in the spec`);
  for (const p of documented) if (!server.has(p)) fail(`spec path ${p} is not a route of the server`);
  console.log(`routes: ${[...server].sort().join(' ')}`);

  const img = fs.readFileSync(inColl), fresh = fs.readFileSync(newImg);
  const auth = { Authorization: `Bearer ${apiKey}` };

  // 2. allowed methods per path == documented ones
  for (const p of documented) {
    const concrete = p.replace('{id}', '1');
    const r = await request('PUT', concrete);
    if (r.status !== 405) { fail(`PUT ${concrete} -> ${r.status}, want 405`); continue; }
    const allow = new Set((r.headers.allow || '').split(',').map((s) => s.trim()).filter(Boolean));
    const want = new Set();
    for (const m of Object.keys(spec.paths[p])) {
      if (m === 'get') { want.add('GET'); want.add('HEAD'); } else if (ops[`${m.toUpperCase()} ${p}`]) want.add(m.toUpperCase());
    }
    if ([...allow].sort().join() !== [...want].sort().join())
      fail(`${p}: server allows ${[...allow]}, spec documents ${[...want]}`);
    const errs = []; validate({ $ref: '#/components/schemas/Error' }, JSON.parse(r.body.toString()), '405 body', errs);
    errs.forEach(fail);
  }

  // 3. the scenario
  await check('GET', '/healthz', 200);
  await check('HEAD', '/healthz', 200);
  await check('GET', '/metrics', 200);
  await check('GET', '/', 200);
  await check('GET', '/index.html', 200);
  await check('GET', '/v1/categories', 200);
  const s = await check('POST', '/v1/search?k=3', 200, { body: img, headers: { 'Content-Type': 'image/jpeg' } });
  if (!s.json || !s.json.results.length) { fail('search gave no results'); return; }
  const id = s.json.self_id || s.json.results[0].id;
  const mp = multipart({ image: img });
  await check('POST', `/v1/search?k=2&category=${encodeURIComponent(s.json.results[0].category)}`, 200, mp);
  await check('POST', '/v1/search?k=0', 400, { body: img, headers: { 'Content-Type': 'image/jpeg' } });
  await check('POST', '/v1/search', 400, { body: Buffer.alloc(0), headers: { 'Content-Type': 'image/jpeg' } });
  await check('POST', '/v1/search', 415, { body: 'hello', headers: { 'Content-Type': 'text/plain' } });
  await check('POST', '/v1/search', 422, { body: Buffer.from('not an image at all'), headers: { 'Content-Type': 'image/jpeg' } });
  await check('GET', `/v1/items/${id}/similar?k=2`, 200);
  await check('GET', '/v1/items/abc/similar', 400);
  await check('GET', '/v1/items/999999/similar', 404);
  await check('GET', `/v1/items/${id}`, 200);
  await check('GET', '/v1/items/999999', 404);
  await check('GET', '/v1/items/0', 400);
  const im = await check('GET', `/v1/images/${id}`, 200);
  if (!im.body.equals(img) && im.body.length === 0) fail('image: empty body');
  await check('GET', '/v1/images/999999', 404);
  // writes: the API key, add, duplicate, bad metadata, delete
  await check('POST', '/v1/items', 401, multipart({ image: fresh }));
  const add = multipart({ image: fresh, metadata: '{"sku":"openapi-1"}', category: 'added', name: 'added by the test' });
  const a = await check('POST', '/v1/items', 201, { body: add.body, headers: { ...add.headers, ...auth } });
  const dup = multipart({ image: fresh });
  const d = await check('POST', '/v1/items', 409, { body: dup.body, headers: { ...dup.headers, ...auth } });
  if (a.json && d.json && d.json.error.id !== a.json.id) fail(`409 names id ${d.json.error.id}, want ${a.json.id}`);
  const bad = multipart({ image: img, metadata: '[1]' });
  await check('POST', '/v1/items', 400, { body: bad.body, headers: { ...bad.headers, ...auth } });
  if (a.json) {
    if (a.headers.location !== `/v1/items/${a.json.id}`) fail(`Location ${a.headers.location}`);
    await check('GET', `/v1/items/${a.json.id}`, 200);
    await check('DELETE', `/v1/items/${a.json.id}`, 401);
    await check('DELETE', `/v1/items/${a.json.id}`, 200, { headers: auth });
    await check('DELETE', `/v1/items/${a.json.id}`, 404, { headers: auth });
  }
  const nf = await request('GET', '/v1/no-such-route');
  if (nf.status !== 404) fail(`GET /v1/no-such-route -> ${nf.status}, want 404`);

  // 4. coverage
  for (const k of Object.keys(ops)) if (!answered2xx.has(k)) fail(`${k}: never answered 2xx in the scenario`);
  console.log(`${Object.keys(ops).length} operations checked, ${failures} failure(s)`);
}

main().then(() => process.exit(failures ? 1 : 0), (e) => { console.error(e); process.exit(1); });
