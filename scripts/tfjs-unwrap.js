#!/usr/bin/env node
// SPDX-License-Identifier: MIT
'use strict';
// Unwrap one nsfwjs JavaScript-wrapped TF.js model into the standard TF.js files.
//
//   node scripts/tfjs-unwrap.js SRC_DIR OUT_DIR
//
// SRC_DIR (package/dist/models/<name>/ of the nsfwjs npm package) holds
//   model.min.js               browserify UMD module exporting {modelTopology, weightsManifest, ...}
//   group1-shardXofY.min.js    browserify UMD module exporting ONE base64 string: the raw
//                              bytes of the standard weight shard group1-shardXofY
// OUT_DIR receives model.json and the binary shards named by weightsManifest[].paths,
// which `imgsim model import OUT_DIR/model.json` reads.
//
// The modules are evaluated in an empty vm context (no require, no process, no fs),
// with a time limit, so the package's code cannot touch anything; the result must be
// plain data of the expected shape.
const fs = require('fs');
const path = require('path');
const vm = require('vm');

function evalModule(file) {
  const code = fs.readFileSync(file, 'utf8');
  const module = { exports: {} };
  const sandbox = { module, exports: module.exports };
  vm.runInNewContext(code, sandbox, { filename: file, timeout: 60000 });
  return module.exports;
}

function main() {
  const [src, out] = process.argv.slice(2);
  if (!src || !out) {
    process.stderr.write('usage: node tfjs-unwrap.js SRC_DIR OUT_DIR\n');
    process.exit(2);
  }
  const mj = evalModule(path.join(src, 'model.min.js'));
  if (!mj || typeof mj !== 'object' || !mj.modelTopology || !Array.isArray(mj.weightsManifest))
    throw new Error(`${src}/model.min.js: not a TF.js model module`);
  // copy the plain data out of the sandbox (JSON round trip) before writing it
  const model = JSON.parse(JSON.stringify(mj));
  fs.mkdirSync(out, { recursive: true });
  let total = 0;
  for (const g of model.weightsManifest) {
    for (const p of g.paths) {
      if (typeof p !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(p) || p.startsWith('.'))
        throw new Error(`bad shard path ${JSON.stringify(p)}`);
      const b64 = evalModule(path.join(src, p + '.min.js'));
      if (typeof b64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64))
        throw new Error(`${p}.min.js: does not export one base64 string`);
      const buf = Buffer.from(b64, 'base64');
      fs.writeFileSync(path.join(out, p + '.tmp'), buf);
      fs.renameSync(path.join(out, p + '.tmp'), path.join(out, p));
      total += buf.length;
    }
  }
  fs.writeFileSync(path.join(out, 'model.json.tmp'), JSON.stringify(model));
  fs.renameSync(path.join(out, 'model.json.tmp'), path.join(out, 'model.json'));
  const n = model.weightsManifest.reduce((a, g) => a + g.paths.length, 0);
  process.stderr.write(`${path.basename(src)}: model.json + ${n} shard(s), ${total} bytes -> ${out}\n`);
}

try {
  main();
} catch (e) {
  process.stderr.write(`tfjs-unwrap: ${e.message}\n`);
  process.exit(1);
}
