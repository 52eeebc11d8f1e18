// The verification page's JavaScript (extender/www/ksi.js) against the KSI test vectors'
// expected results (the same CSVs keyless's C verifier is tested on, tests/unit): parse errors,
// INT-xx codes, document hashes, aggregation and calendar roots, publication strings.
// usage: node verify_page_vectors.js SOURCE_DIR VECTORS_DIR. Prints "N passed, M failed".
'use strict';
const fs = require('fs');
const path = require('path');
if (!globalThis.crypto) globalThis.crypto = require('crypto').webcrypto; // node 18 (Debian 12)
const KSI = require(path.resolve(process.argv[2], 'extender/www/ksi.js'));
const VEC = process.argv[3];
let passed = 0, failed = 0, skipped = 0;
const ok = (name, cond, why) => {
  if (cond) passed++;
  else { failed++; console.log('not ok - ' + name + ': ' + why); }
};
const fromHex = (h) => Uint8Array.from(h.match(/../g).map((x) => parseInt(x, 16)));

async function row(dir, line) {
  const f = line.split(';');
  const [file, policy, code, , level, docHex, aggrHex, rootHex, , , pubStr] = f;
  const name = path.basename(file);
  if (policy === 'not-implemented' || (level && level !== '0')) { skipped++; return; }
  const bytes = new Uint8Array(fs.readFileSync(path.join(dir, file)));
  let sig;
  try { sig = KSI.parseSignature(bytes); } catch (e) {
    ok(name, policy === 'parsing', 'did not parse: ' + e.message);
    return;
  }
  let res;
  try { res = await KSI.verify(sig, { docHash: docHex ? fromHex(docHex) : null }); } catch (e) {
    if (e.kind === 'UNSUPPORTED') { skipped++; return; }
    throw e;
  }
  if (policy === 'parsing') { ok(name, code && res.code === code, 'parsed, expected a parse error' + (code ? ' or ' + code : '')); return; }
  if (policy === 'internal' && code) { ok(name, res.code === code, 'expected ' + code + ', got ' + res.verdict + ' ' + res.code + ' ' + res.message); return; }
  // Other policies: the internal part must pass, or fail with the expected internal code.
  if (/^(INT|GEN-0[134])/.test(code)) { ok(name, res.code === code, 'expected ' + code + ', got ' + res.code); return; }
  ok(name, res.verdict === 'OK', 'internal: ' + res.verdict + ' ' + res.code + ' ' + res.message);
  if (aggrHex) ok(name + ' aggregation root', res.aggrRoot && KSI.hex(res.aggrRoot) === aggrHex.toLowerCase(), 'got ' + (res.aggrRoot && KSI.hex(res.aggrRoot)));
  if (rootHex && !code) ok(name + ' calendar root', res.root && KSI.hex(res.root) === rootHex.toLowerCase(), 'got ' + (res.root && KSI.hex(res.root)));
  if (pubStr && !code) {
    const p = KSI.decodePubString(pubStr);
    if (rootHex) ok(name + ' publication string hash', KSI.hex(p.hash) === rootHex.toLowerCase(), 'got ' + KSI.hex(p.hash));
    const r2 = await KSI.verify(sig, { pub: p });
    if (sig.pub && policy === 'userPublication') ok(name + ' with its publication string', r2.verdict === 'OK' && r2.anchored, r2.code + ' ' + r2.message);
  }
}

(async () => {
  for (const csv of ['valid-signatures/signature-results.csv', 'internal-policy-signatures/internal-policy-results.csv',
    'invalid-signatures/invalid-signature-results.csv', 'policy-verification-signatures/policy-verification-results.csv']) {
    const dir = path.join(VEC, path.dirname(csv));
    for (const line of fs.readFileSync(path.join(VEC, csv), 'utf8').split('\n'))
      if (line && line[0] !== '#') await row(dir, line);
  }
  // A publication string with one character changed fails its CRC; the documented example decodes.
  const good = 'AAAAAA-DF6NWU-QAI2RL-2V3JBJ-KPXGJE-M323ZF-IHJDLN-OXYON2-IYQND4-ROQTV4-VZBCXB-446L2D';
  ok('publication string example', KSI.decodePubString(good).time === 1710452040, 'wrong time');
  let threw = '';
  try { KSI.decodePubString(good.replace('QAI2RL', 'QAI2RM')); } catch (e) { threw = e.message; }
  ok('a mistyped publication string', /CRC/.test(threw), 'no CRC error: ' + threw);
  console.log('(' + skipped + ' vectors skipped: SHA-3/RIPEMD-160 chains or an input level)');
  console.log(passed + ' passed, ' + failed + ' failed');
  process.exit(failed ? 1 : 0);
})();
