/* KSI signature parsing and internal verification for the verification page (verify.js), in
 * plain JavaScript: no dependencies, hashing through WebCrypto (crypto.subtle). It follows
 * KSI-FORMAT.md and keyless's lib/client (sig.c, sig_parts.c, chains.c, verify_internal.c):
 * TLV (§1), the signature (§2), aggregation chains (§4), the calendar chain (§5), publication
 * records and strings (§6). Runs in a browser and in node (tests: module.exports). */
'use strict';
(function (root) {
  /* id -> [name, digest bytes, WebCrypto name or null]; KSI-FORMAT.md §3. */
  const ALGS = {
    0: ['SHA-1', 20, 'SHA-1'], 1: ['SHA-256', 32, 'SHA-256'], 2: ['RIPEMD-160', 20, null],
    4: ['SHA-384', 48, 'SHA-384'], 5: ['SHA-512', 64, 'SHA-512'], 7: ['SHA3-224', 28, null],
    8: ['SHA3-256', 32, null], 9: ['SHA3-384', 48, null], 10: ['SHA3-512', 64, null], 11: ['SM3', 32, null],
  };
  const SHA1_DEPRECATED = 1467331200; /* 2016-07-01T00:00:00Z */

  class KsiError extends Error {
    constructor(kind, msg) { super(msg); this.kind = kind; } /* kind: FORMAT or UNSUPPORTED */
  }
  const bad = (msg) => { throw new KsiError('FORMAT', msg); };
  const algName = (a) => (ALGS[a] ? ALGS[a][0] : 'algorithm 0x' + a.toString(16).padStart(2, '0'));
  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const cat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  };
  const deprecatedAt = (alg, t) => alg === 0 && t >= SHA1_DEPRECATED;

  /* ---- TLV (§1) ---- */
  function tlvList(buf, off, end) {
    const out = [];
    while (off < end) {
      if (end - off < 2) bad('truncated TLV header at offset ' + off);
      const b0 = buf[off];
      let type, len, hdr;
      if (b0 & 0x80) {
        if (end - off < 4) bad('truncated TLV16 header at offset ' + off);
        type = ((b0 & 0x1f) << 8) | buf[off + 1];
        len = (buf[off + 2] << 8) | buf[off + 3];
        hdr = 4;
      } else {
        type = b0 & 0x1f;
        len = buf[off + 1];
        hdr = 2;
      }
      if (len > end - off - hdr)
        bad('TLV 0x' + type.toString(16) + ' at offset ' + off + ' claims ' + len + ' bytes, ' + (end - off - hdr) + ' remain');
      out.push({ type, tlv16: !!(b0 & 0x80), n: !!(b0 & 0x40), f: !!(b0 & 0x20), offset: off,
        buf, vstart: off + hdr, value: buf.subarray(off + hdr, off + hdr + len) });
      off += hdr + len;
    }
    return out;
  }
  const kids = (t) => tlvList(t.buf, t.vstart, t.vstart + t.value.length);
  const unknown = (t, where) => {
    if (!t.n) bad('unknown critical element 0x' + t.type.toString(16) + ' at offset ' + t.offset + ' in ' + where);
  };
  function uint(t) {
    const v = t.value;
    if (v.length > 8) bad('integer 0x' + t.type.toString(16) + ' at offset ' + t.offset + ' is longer than 8 bytes');
    if (v.length && v[0] === 0) bad('integer 0x' + t.type.toString(16) + ' at offset ' + t.offset + ' has a leading zero');
    let x = 0n;
    for (const b of v) x = (x << 8n) | BigInt(b);
    return x;
  }
  const time = (t) => Number(uint(t));
  function str(t) {
    const v = t.value;
    if (!v.length || v[v.length - 1] !== 0 || v.indexOf(0) !== v.length - 1) bad('bad string at offset ' + t.offset);
    return new TextDecoder().decode(v.subarray(0, v.length - 1));
  }
  function imprint(t) {
    const v = t.value;
    if (!v.length || !ALGS[v[0]]) bad('imprint at offset ' + t.offset + ': unknown hash algorithm' + (v.length ? ' id ' + v[0] : ''));
    if (v.length !== ALGS[v[0]][1] + 1) bad('imprint at offset ' + t.offset + ' has the wrong length for ' + algName(v[0]));
    return v;
  }
  function once(seen, t, where) {
    if (seen[t.type]) bad('element 0x' + t.type.toString(16) + ' appears more than once in ' + where);
    seen[t.type] = true;
  }

  /* ---- signature parts (§2) ---- */
  function metadata(t) {
    const m = { value: t.value, pads: [], trusted: true };
    kids(t).forEach((c, i) => {
      if (c.type === 0x1e) m.pads.push([c, i]);
      else if (c.type === 0x01) m.clientId = str(c);
      else if (c.type === 0x02) m.machineId = str(c);
      else if (c.type === 0x03) m.seq = uint(c);
      else if (c.type === 0x04) m.reqTime = uint(c);
      else unknown(c, 'metadata');
    });
    if (m.clientId === undefined) bad('metadata at offset ' + t.offset + ' lacks its client id');
    const v = t.value, [p, pos] = m.pads[0] || [];
    let why = null; /* INT-11, §4.4 */
    if (m.pads.length > 1) why = 'more than one padding element';
    else if (p) {
      if (pos !== 0) why = 'the padding element is not the first';
      else if (p.tlv16) why = 'the padding element is in TLV16 form';
      else if (!(p.n && p.f)) why = 'the padding element lacks the N and F flags';
      else if (!eq(p.value, [1]) && !eq(p.value, [1, 1])) why = 'the padding value is not 01 or 01 01';
      else if (v.length % 2) why = 'the padded metadata has an odd length';
    } else if (v.length && ALGS[v[0]] && v.length === ALGS[v[0]][1] + 1) why = 'without padding, the metadata reads as an imprint';
    m.untrustedWhy = why;
    return m;
  }
  function aggrLink(t) {
    const l = { left: t.type === 0x07, lc: 0n };
    let sibs = 0;
    for (const c of kids(t)) {
      if (c.type === 0x01) l.lc = uint(c);
      else if (c.type === 0x02 || c.type === 0x03 || c.type === 0x04) {
        if (sibs++) bad('aggregation link at offset ' + t.offset + ' has more than one sibling');
        l.kind = c.type;
        l.sib = c.value;
        if (c.type === 0x02) imprint(c);
        else if (c.type === 0x04) l.meta = metadata(c);
        else {
          const v = c.value;
          if (v.length !== 29 || v[0] !== 3 || v[1] !== 0 || v[2] > 25 || v.subarray(3 + v[2]).some((x) => x) ||
              v.subarray(3, 3 + v[2]).includes(0))
            bad('legacy id at offset ' + c.offset + ' is malformed');
          l.legacyId = new TextDecoder().decode(v.subarray(3, 3 + v[2]));
        }
      } else unknown(c, 'aggregation link');
    }
    if (!sibs) bad('aggregation link at offset ' + t.offset + ' has no sibling');
    return l;
  }
  function aggrChain(t) {
    const c = { offset: t.offset, index: [], links: [] }, seen = {};
    for (const k of kids(t)) {
      if (k.type === 0x02) { once(seen, k, 'aggregation chain'); c.time = time(k); }
      else if (k.type === 0x03) c.index.push(uint(k));
      else if (k.type === 0x04) once(seen, k, 'aggregation chain');
      else if (k.type === 0x05) { once(seen, k, 'aggregation chain'); c.input = imprint(k); }
      else if (k.type === 0x06) {
        once(seen, k, 'aggregation chain');
        const a = uint(k);
        if (a > 255n || !ALGS[Number(a)]) bad('aggregation chain at offset ' + t.offset + ': unknown hash algorithm id ' + a);
        c.algo = Number(a);
      } else if (k.type === 0x07 || k.type === 0x08) c.links.push(aggrLink(k));
      else unknown(k, 'aggregation chain');
    }
    const miss = c.time === undefined ? 'aggregation time' : !c.index.length ? 'chain index' : !c.input ? 'input hash'
      : c.algo === undefined ? 'aggregation algorithm' : !c.links.length ? 'links' : null;
    if (miss) bad('aggregation chain at offset ' + t.offset + ' lacks its ' + miss);
    if (c.links.length > 64) bad('aggregation chain at offset ' + t.offset + ' has more than 64 links');
    return c;
  }
  function calChain(t) {
    const c = { links: [] }, seen = {};
    for (const k of kids(t)) {
      if (k.type === 0x01) { once(seen, k, 'calendar chain'); c.pubTime = time(k); }
      else if (k.type === 0x02) { once(seen, k, 'calendar chain'); c.aggrTime = time(k); }
      else if (k.type === 0x05) { once(seen, k, 'calendar chain'); c.input = imprint(k); }
      else if (k.type === 0x07 || k.type === 0x08) c.links.push({ left: k.type === 0x07, sib: imprint(k) });
      else unknown(k, 'calendar chain');
    }
    if (c.pubTime === undefined || !c.input || !c.links.length) bad('calendar chain lacks its publication time, input hash or links');
    if (c.aggrTime === undefined) c.aggrTime = c.pubTime;
    return c;
  }
  function pubData(t) {
    const d = {}, seen = {};
    for (const k of kids(t)) {
      if (k.type === 0x02) { once(seen, k, 'publication data'); d.time = time(k); }
      else if (k.type === 0x04) { once(seen, k, 'publication data'); d.hash = imprint(k); }
      else unknown(k, 'publication data');
    }
    if (d.time === undefined || !d.hash) bad('publication data lacks its time or hash');
    return d;
  }
  function record(t, where, extra) { /* publication record 0x803, calendar auth record 0x805 */
    const r = { refs: [], uris: [] };
    for (const k of kids(t)) {
      if (k.type === 0x10) { if (r.data) bad(where + ' has two publication data'); r.data = pubData(k); }
      else if (extra && extra(k, r)) continue;
      else unknown(k, where);
    }
    if (!r.data || (extra === signedData && !r.signed)) bad(where + ' lacks publication data or signed data');
    return r;
  }
  const pubExtra = (k, r) => {
    if (k.type === 0x09) r.refs.push(str(k));
    else if (k.type === 0x0a) r.uris.push(str(k));
    else return false;
    return true;
  };
  function signedData(k, r) { /* 0x805/0x0B: parsed for its structure; the PKI signature is not checked here */
    if (k.type !== 0x0b) return false;
    if (r.signed) bad('calendar auth record has two signed data');
    const d = r.signed = {}, seen = {};
    for (const c of kids(k)) {
      if (c.type === 0x01) { once(seen, c, 'signed data'); d.sigType = str(c); }
      else if (c.type === 0x02) { once(seen, c, 'signed data'); d.value = c.value; }
      else if (c.type === 0x03) { once(seen, c, 'signed data'); d.certId = c.value; }
      else if (c.type === 0x04) { once(seen, c, 'signed data'); d.certUri = str(c); }
      else unknown(c, 'signed data');
    }
    if (d.sigType === undefined || !d.value || !d.value.length || !d.certId)
      bad('calendar auth record: signed data lacks its type, value or certificate id');
    return true;
  }
  function rfc3161(t) {
    const r = { index: [] }, seen = {}, num = { 0x02: 'time', 0x12: 'tstAlg', 0x15: 'sigAlg' };
    const oct = { 0x10: 'tstPrefix', 0x11: 'tstSuffix', 0x13: 'sigPrefix', 0x14: 'sigSuffix' };
    for (const k of kids(t)) {
      if (k.type !== 0x03) once(seen, k, 'RFC 3161 record');
      if (num[k.type]) r[num[k.type]] = Number(uint(k));
      else if (oct[k.type]) r[oct[k.type]] = k.value;
      else if (k.type === 0x03) r.index.push(uint(k));
      else if (k.type === 0x05) r.input = imprint(k);
      else unknown(k, 'RFC 3161 record');
    }
    for (const f of ['time', 'tstAlg', 'sigAlg', 'tstPrefix', 'tstSuffix', 'sigPrefix', 'sigSuffix', 'input'])
      if (r[f] === undefined) bad('RFC 3161 record lacks its ' + f);
    if (!ALGS[r.tstAlg] || !ALGS[r.sigAlg]) bad('RFC 3161 record: unknown hash algorithm');
    return r;
  }

  function parseSignature(bytes) {
    if (bytes.length > 65539) bad('the file is ' + bytes.length + ' bytes; a KSI signature is at most 65539');
    const top = tlvList(bytes, 0, bytes.length);
    if (top.length !== 1 || top[0].type !== 0x800) bad('not a KSI signature (expected one 0x800 element)');
    const s = { chains: [] }, one = (k, f, name) => { if (s[name]) bad('signature has two ' + name); s[name] = f(k); };
    for (const k of kids(top[0])) {
      if (k.type === 0x801) s.chains.push(aggrChain(k));
      else if (k.type === 0x802) one(k, calChain, 'cal');
      else if (k.type === 0x803) one(k, (x) => record(x, 'publication record', pubExtra), 'pub');
      else if (k.type === 0x804) one(k, () => true, 'aggrAuth');
      else if (k.type === 0x805) one(k, (x) => record(x, 'calendar auth record', signedData), 'auth');
      else if (k.type === 0x806) one(k, rfc3161, 'rfc3161');
      else unknown(k, 'signature');
    }
    if (!s.chains.length) bad('signature has no aggregation hash chain');
    if (!s.cal && (s.pub || s.auth)) bad('signature has a publication or auth record but no calendar chain');
    if (s.pub && s.auth) bad('signature has both a publication record and a calendar auth record');
    s.chains.sort((a, b) => b.index.length - a.index.length || a.offset - b.offset);
    s.docHash = s.rfc3161 ? s.rfc3161.input : s.chains[0].input;
    s.time = s.chains[0].time;
    return s;
  }

  /* ---- hashing ---- */
  async function H(alg, data) {
    const a = ALGS[alg];
    if (!a || !a[2])
      throw new KsiError('UNSUPPORTED', algName(alg) + ' is not available in a browser (WebCrypto has SHA-1 and SHA-2 only): ' +
        'verify this signature with `keyless verify`');
    return cat([alg], new Uint8Array(await root.crypto.subtle.digest(a[2], data)));
  }

  /* ---- publication strings (§6.2) ---- */
  function crc32(b) {
    let c = ~0;
    for (const x of b) { c ^= x; for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1)); }
    return ~c >>> 0;
  }
  function decodePubString(s) {
    const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', out = [];
    let acc = 0, bits = 0;
    for (const ch of s.trim().toUpperCase().replace(/-/g, '')) {
      if (ch === '=') break;
      const v = A.indexOf(ch);
      if (v < 0) bad('the publication string has a character outside base32: "' + ch + '"');
      acc = ((acc << 5) | v) & 0xfff; bits += 5;
      if (bits >= 8) { bits -= 8; out.push((acc >> bits) & 0xff); }
    }
    const b = Uint8Array.from(out);
    if (b.length < 14 || !ALGS[b[8]] || b.length !== 8 + 1 + ALGS[b[8]][1] + 4) bad('the publication string has the wrong length');
    const n = b.length - 4, crc = ((b[n] << 24) | (b[n + 1] << 16) | (b[n + 2] << 8) | b[n + 3]) >>> 0;
    if (crc32(b.subarray(0, n)) !== crc) bad('the publication string fails its CRC-32 check (mistyped?)');
    let t = 0;
    for (let i = 0; i < 8; i++) t = t * 256 + b[i];
    return { time: t, hash: b.slice(8, n) };
  }

  /* ---- chains (§4, §5) ---- */
  function shape(c) {
    let v = 1n;
    for (let i = c.links.length - 1; i >= 0; i--) v = (v << 1n) | (c.links[i].left ? 1n : 0n);
    return v;
  }
  async function aggrCompute(c, level, steps) {
    let cur = c.input;
    for (const l of c.links) {
      if (l.lc > 255n || level + Number(l.lc) + 1 > 255) throw new KsiError('FORMAT', 'level above 255');
      level += Number(l.lc) + 1;
      const input = cur;
      cur = await H(c.algo, l.left ? cat(cur, l.sib, [level]) : cat(l.sib, cur, [level]));
      steps.push({ link: l, level, input, output: cur });
    }
    return [cur, level];
  }
  function calTime(c) { /* §5.2: the aggregation time the shape encodes, or -1 */
    let r = c.pubTime, t = 0;
    for (let i = c.links.length - 1; i >= 0; i--) {
      if (r <= 0) return -1;
      let hb = 1;
      while (hb <= r / 2) hb *= 2;
      if (c.links[i].left) r = hb - 1; else { t += hb; r -= hb; }
    }
    return r === 0 ? t : -1;
  }
  async function calRoot(c, steps) {
    let cur = c.input, alg = c.input[0];
    for (const l of c.links) {
      if (l.left) alg = l.sib[0]; /* the node takes its right child's algorithm */
      const input = cur;
      cur = await H(alg, l.left ? cat(cur, l.sib, [0xff]) : cat(l.sib, cur, [0xff]));
      steps.push({ link: l, alg, input, output: cur });
    }
    return cur;
  }

  /* The internal policy (KSI-FORMAT.md §8; verify_internal.c's order), then a user publication.
   * opts.docHash: an imprint or null. Returns {verdict: OK|FAIL|NA, code, message, ...drawing}. */
  async function verify(s, opts) {
    const res = { verdict: 'OK', code: '', message: '', chains: [], cal: null, root: null, docHash: opts.docHash || null };
    const fail = (code, msg) => Object.assign(res, { verdict: code === 'GEN-02' ? 'NA' : 'FAIL', code, message: msg });
    const d = opts.docHash;
    if (d && d[0] !== s.docHash[0])
      return fail('GEN-04', 'the document hash uses ' + algName(d[0]) + ', the signature ' + algName(s.docHash[0]));
    if (d && !eq(d, s.docHash))
      return fail('GEN-01', 'wrong document: its hash ' + hex(d) + ' is not the signed ' + hex(s.docHash));
    if (deprecatedAt(s.docHash[0], s.rfc3161 ? s.rfc3161.time : s.time))
      return fail('INT-13', 'the document hash algorithm was deprecated at signing time');
    const first = s.chains[0];
    if (s.rfc3161) {
      const r = s.rfc3161;
      if (deprecatedAt(r.tstAlg, r.time) || deprecatedAt(r.sigAlg, r.time))
        return fail('INT-14', 'RFC 3161 record algorithms deprecated');
      if (deprecatedAt(first.input[0], r.time)) return fail('INT-17', 'RFC 3161 output algorithm deprecated');
      const t = await H(r.tstAlg, cat(r.tstPrefix, r.input.subarray(1), r.tstSuffix));
      const g = await H(r.sigAlg, cat(r.sigPrefix, t.subarray(1), r.sigSuffix));
      if (!eq(await H(first.input[0], g), first.input))
        return fail('INT-01', 'the RFC 3161 record does not lead to the first chain\'s input hash');
      if (r.time !== first.time) return fail('INT-02', 'the RFC 3161 record time differs from the aggregation time');
      if (r.index.length !== first.index.length || r.index.some((x, i) => x !== first.index[i]))
        return fail('INT-12', 'the RFC 3161 chain index differs');
    }
    for (const [i, c] of s.chains.entries())
      for (const [k, l] of c.links.entries())
        if (l.meta && l.meta.untrustedWhy)
          return fail('INT-11', 'aggregation chain ' + (i + 1) + ', link ' + (k + 1) + ': ' + l.meta.untrustedWhy);
    for (const [i, c] of s.chains.entries())
      if (deprecatedAt(c.algo, c.time))
        return fail('INT-15', 'aggregation chain ' + (i + 1) + ' uses ' + algName(c.algo) + ', deprecated at its time');
    for (let i = 0; i + 1 < s.chains.length; i++) {
      const c = s.chains[i], n = s.chains[i + 1];
      if (n.index.length + 1 !== c.index.length || n.index.some((x, k) => x !== c.index[k]))
        return fail('INT-12', 'the chain index of aggregation chain ' + (i + 2) + ' is not a prefix of chain ' + (i + 1) + '\'s');
    }
    for (const [i, c] of s.chains.entries())
      if (c.time !== first.time)
        return fail('INT-02', 'aggregation chain ' + (i + 1) + ' has time ' + c.time + ', chain 1 has ' + first.time);
    for (const [i, c] of s.chains.entries())
      if (c.links.length > 63 || shape(c) !== c.index[c.index.length - 1])
        return fail('INT-10', 'aggregation chain ' + (i + 1) + ': the chain index does not match its shape');
    let cur = null, level = 0;
    for (const [i, c] of s.chains.entries()) {
      const drawn = { chain: c, steps: [], ok: true };
      res.chains.push(drawn);
      if (i > 0 && !eq(cur, c.input)) {
        drawn.ok = false;
        return fail('INT-01', 'aggregation chain ' + (i + 1) + '\'s input hash differs from chain ' + i + '\'s output');
      }
      try { [cur, level] = await aggrCompute(c, level, drawn.steps); } catch (e) {
        if (e.kind === 'FORMAT') return fail('INT-01', 'aggregation chain ' + (i + 1) + ': ' + e.message);
        throw e;
      }
    }
    res.aggrRoot = cur;
    const cal = s.cal;
    if (!cal)
      return Object.assign(res, { message: 'no calendar chain: the signature is not anchored in the calendar yet' }, userPub(res, s, opts));
    res.cal = { chain: cal, steps: [] };
    if (!eq(cal.input, cur)) return fail('INT-03', 'the calendar chain\'s input differs from the aggregation root');
    if (cal.aggrTime !== s.time)
      return fail('INT-04', 'calendar aggregation time ' + cal.aggrTime + ' differs from the signing time ' + s.time);
    if (calTime(cal) !== cal.aggrTime)
      return fail('INT-05', 'the calendar chain\'s shape does not encode time ' + cal.aggrTime + ' for publication time ' + cal.pubTime);
    res.root = await calRoot(cal, res.cal.steps);
    for (const [r, c1, c2] of [[s.auth, 'INT-06', 'INT-08'], [s.pub, 'INT-07', 'INT-09']]) {
      if (!r) continue;
      if (r.data.time !== cal.pubTime)
        return fail(c1, 'the record\'s time ' + r.data.time + ' differs from the calendar chain\'s ' + cal.pubTime);
      if (!eq(r.data.hash, res.root))
        return fail(c2, 'the calendar root differs from the ' + (r === s.pub ? 'published hash' : 'authenticated hash'));
    }
    return Object.assign(res, userPub(res, s, opts));
  }
  function userPub(res, s, opts) { /* PUB-04 and the anchoring of the calendar root */
    const u = opts.pub;
    if (!u) return {};
    const cal = s.cal;
    if (s.pub && (s.pub.data.time !== u.time || !eq(s.pub.data.hash, u.hash)))
      return { verdict: 'FAIL', code: 'PUB-04', message: 'the signature\'s publication record differs from the publication string' };
    if (cal && cal.pubTime === u.time) {
      if (!eq(res.root, u.hash))
        return { verdict: 'FAIL', code: 'PUB-01', message: 'the calendar root differs from the published hash' };
      return { anchored: true };
    }
    return { verdict: 'NA', code: 'GEN-02', message: 'the publication string is for ' + u.time + ', the calendar chain reaches ' +
      (cal ? cal.pubTime : 'no publication') + ': extend the signature to that publication (keyless extend) and try again' };
  }

  root.KSI = { ALGS, KsiError, algName, hex, eq, tlvList, parseSignature, decodePubString, crc32, verify, H, calTime };
  if (typeof module !== 'undefined') module.exports = root.KSI;
})(typeof window !== 'undefined' ? window : globalThis);
