/* The verification page (verify.html): files dropped or chosen, the document hashed locally,
 * KSI.verify (ksi.js), and the verdict with the chains drawn from the document hash up to the
 * calendar root and the publication. Nothing is sent anywhere (the page's CSP has
 * connect-src 'none').
 * For tests only: a URL fragment #sig=BASE64&doc=BASE64[&hash=ALG:HEX][&pub=STRING] fills the
 * inputs and runs (the fragment never leaves the browser either). */
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const st = { sig: null, sigName: '', doc: null, docName: '', gen: 0 };

  function el(tag, cls, text, ...kids) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    for (const k of kids) if (k) e.appendChild(k);
    return e;
  }
  const when = (t) => new Date(t * 1000).toISOString().replace('.000Z', 'Z') + ' (' + t + ')';
  const imp = (b, cls) => el('code', 'imprint' + (cls ? ' ' + cls : ''), KSI.algName(b[0]) + ':' + KSI.hex(b.subarray(1)));

  /* "SHA-256:hex", "sha256:hex" or hex alone (in the signature's algorithm) -> an imprint. */
  function parseHash(text, alg) {
    let t = text.trim(), a = alg;
    const m = /^([A-Za-z0-9-]+):([0-9a-fA-F]+)$/.exec(t);
    if (m) {
      const norm = (s) => s.toUpperCase().replace(/-/g, '').replace(/^SHA2(\d{3})$/, 'SHA$1');
      a = Number(Object.keys(KSI.ALGS).find((k) => norm(KSI.ALGS[k][0]) === norm(m[1])));
      if (Number.isNaN(a)) throw new Error('unknown hash algorithm "' + m[1] + '"');
      t = m[2];
    }
    if (!/^([0-9a-fA-F]{2})+$/.test(t)) throw new Error('the document hash is not hexadecimal');
    if (t.length !== 2 * KSI.ALGS[a][1]) throw new Error('the document hash has ' + t.length / 2 + ' bytes, ' + KSI.algName(a) + ' has ' + KSI.ALGS[a][1]);
    return Uint8Array.from([a].concat(t.match(/../g).map((x) => parseInt(x, 16))));
  }

  function show(verdict, reason, facts, res, sig) {
    $('result').hidden = false;
    $('result').dataset.doc = st.doc ? st.docName : ''; /* what this verdict covers (for tests) */
    const v = $('verdict');
    v.textContent = verdict;
    v.className = verdict.toLowerCase();
    $('reason').textContent = reason;
    const dl = $('facts');
    dl.replaceChildren();
    for (const [k, val] of facts) dl.append(el('dt', null, k), typeof val === 'string' ? el('dd', null, val) : el('dd', null, null, val));
    $('drawing').replaceChildren();
    if (res && sig) draw(res, sig);
  }

  function sibling(l) {
    if (l.kind === 0x02) return imp(l.sib);
    if (l.kind === 0x03) return el('span', 'meta', 'legacy id "' + l.legacyId + '"');
    const m = l.meta, parts = ['client ' + m.clientId];
    if (m.machineId !== undefined) parts.push('machine ' + m.machineId);
    if (m.seq !== undefined) parts.push('seq ' + m.seq);
    if (m.reqTime !== undefined) parts.push('requested ' + new Date(Number(m.reqTime / 1000n)).toISOString());
    return el('span', 'meta', 'metadata: ' + parts.join(', '));
  }

  /* One step: the two children in order (the path's node marked) and the parent. */
  function stepRow(n, left, cur, sib, level, out) {
    const here = el('span', 'node path', null, cur), other = el('span', 'node sibling', null, sib);
    return el('li', 'step', null, el('span', 'lvl', n + '. ' + (left ? 'left' : 'right') + ' link, ' + level),
      el('div', 'pair', null, left ? here : other, el('span', 'plus', '‖'), left ? other : here),
      el('div', 'out', null, el('span', 'arrow', '→ '), imp(out)));
  }

  const links = (c) => c.links.length + (c.links.length === 1 ? ' link' : ' links');

  function draw(res, sig) {
    const d = $('drawing');
    d.append(el('p', 'legend', 'Each step hashes its two children in order, with the level byte: the node on the ' +
      'path from the document is shaded, the other is the sibling the signature carries.'));
    const bad = (code) => res.verdict === 'FAIL' && res.code === code;
    const differs = (label, b) => el('div', 'differs', null, el('span', null, '≠ ' + label + ' '), imp(b));
    const docBad = bad('GEN-01') || bad('GEN-04');
    d.append(el('div', 'box doc' + (docBad ? ' bad' : ''), null,
      el('h3', null, 'Document hash (signed: the first chain\'s input)'), imp(sig.docHash),
      docBad && res.docHash ? differs('the document\'s hash', res.docHash) : null));
    res.chains.forEach((dc, i) => {
      const c = dc.chain, ol = el('ol', 'steps');
      dc.steps.forEach((s, k) => {
        const l = s.link, lvl = 'level ' + s.level + (l.lc ? ' (correction ' + l.lc + ')' : '');
        ol.append(stepRow(k + 1, l.left, imp(s.input), sibling(l), lvl, s.output));
      });
      d.append(el('div', 'box chain' + (dc.ok ? '' : ' bad'), null,
        el('h3', null, 'Aggregation chain ' + (i + 1) + ' of ' + sig.chains.length + ' — ' + KSI.algName(c.algo) +
          ', chain index ' + c.index.join('/') + ', ' + links(c)),
        el('div', 'in', null, el('span', null, 'input '), imp(c.input, dc.ok ? '' : 'bad')),
        dc.ok ? null : differs('the output of chain ' + i, res.chains[i - 1].steps.slice(-1)[0].output), ol));
    });
    if (res.cal) {
      const c = res.cal.chain, ol = el('ol', 'steps');
      res.cal.steps.forEach((s, k) => ol.append(stepRow(k + 1, s.link.left, imp(s.input), imp(s.link.sib), KSI.algName(s.alg), s.output)));
      d.append(el('div', 'box cal' + (bad('INT-03') || bad('INT-05') ? ' bad' : ''), null,
        el('h3', null, 'Calendar chain — publication time ' + when(c.pubTime) + ', ' + links(c)),
        el('div', 'in', null, el('span', null, 'input (the aggregation root) '), imp(c.input, bad('INT-03') ? 'bad' : '')),
        bad('INT-03') ? differs('the aggregation root computed above', res.aggrRoot) : null, ol,
        res.root ? el('div', 'root', null, el('span', null, 'calendar root '), imp(res.root)) : null));
    }
    const pubBad = bad('INT-07') || bad('INT-09') || bad('PUB-04') || bad('PUB-01');
    if (sig.pub) {
      const p = sig.pub;
      d.append(el('div', 'box pub' + (pubBad ? ' bad' : ''), null, el('h3', null, 'Publication record — ' + when(p.data.time)),
        el('div', null, null, el('span', null, 'published hash '), imp(p.data.hash)),
        bad('INT-09') ? differs('the calendar root computed above', res.root) : null,
        ...p.refs.map((r) => el('div', 'meta', 'reference: ' + r)), ...p.uris.map((u) => el('div', 'meta', 'repository: ' + u))));
    } else if (sig.auth) {
      d.append(el('div', 'box pub' + (bad('INT-06') || bad('INT-08') ? ' bad' : ''), null,
        el('h3', null, 'Calendar authentication record — ' + when(sig.auth.data.time)),
        el('div', null, null, el('span', null, 'signed hash '), imp(sig.auth.data.hash)),
        bad('INT-08') ? differs('the calendar root computed above', res.root) : null,
        el('div', 'meta', 'its PKI signature is not checked by this page (keyless verify --policy key does)')));
    }
  }

  async function run() {
    const gen = ++st.gen; /* a later run wins over a slower earlier one */
    const out = (...a) => { if (gen === st.gen) show(...a); };
    if (!st.sig) { out('FAIL', 'no signature file given', [], null, null); return; }
    let sig, res, doc = null, pub = null;
    const facts = [['Signature', st.sigName + ' (' + st.sig.length + ' bytes)']];
    try { sig = KSI.parseSignature(st.sig); } catch (e) {
      out('FAIL', 'the signature file is malformed: ' + e.message, facts, null, null);
      return;
    }
    try {
      const h = $('doc-hash').value.trim();
      if (st.doc) {
        doc = await KSI.H(sig.docHash[0], st.doc);
        facts.push(['Document', st.docName + ' (' + st.doc.length + ' bytes), hashed here']);
      } else if (h) doc = parseHash(h, sig.docHash[0]);
      const p = $('pub-str').value.trim();
      if (p) pub = KSI.decodePubString(p);
      res = await KSI.verify(sig, { docHash: doc, pub });
    } catch (e) {
      const verdict = e.kind === 'UNSUPPORTED' ? 'UNSUPPORTED' : 'FAIL';
      out(verdict, e.message, facts, null, null);
      return;
    }
    facts.push(['Signed at', when(sig.time)]);
    if (doc) facts.push(['Document hash', imp(doc)]);
    if (res.root) facts.push(['Calendar root', imp(res.root)]);
    if (pub) facts.push(['Publication string', when(pub.time)]);
    let reason;
    if (res.verdict !== 'OK') reason = res.code + ': ' + res.message;
    else {
      const what = doc ? 'The document was signed at ' + when(sig.time) + '. ' : 'No document was given: only the signature itself was checked. ';
      const anchor = res.anchored ? 'The calendar root equals the publication string you gave.'
        : sig.pub ? 'The calendar root equals the signature\'s publication record; compare it with a publication you ' +
          'trust (paste its publication string).'
        : sig.auth ? 'The calendar root equals the calendar authentication record (its PKI signature is not checked here).'
        : res.message || 'The chains are consistent.';
      reason = what + anchor;
    }
    out(res.verdict === 'NA' ? 'INCONCLUSIVE' : res.verdict, reason, facts, res, sig);
  }

  async function take(which, file) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    st[which] = bytes;
    st[which + 'Name'] = file.name;
    $(which + '-name').textContent = file.name + ' (' + bytes.length + ' bytes)';
    if (which === 'doc') $('doc-hash').value = '';
    if (st.sig) run();
  }

  function wire(which) {
    const zone = $(which + '-drop'), input = $(which + '-file');
    input.addEventListener('change', () => input.files[0] && take(which, input.files[0]));
    zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
    zone.addEventListener('dragleave', () => zone.classList.remove('over'));
    zone.addEventListener('drop', (e) => {
      e.preventDefault();
      zone.classList.remove('over');
      if (e.dataTransfer.files[0]) take(which, e.dataTransfer.files[0]);
    });
  }

  function fromFragment() { /* tests: #sig=BASE64&doc=BASE64&hash=...&pub=... */
    const q = new URLSearchParams(location.hash.slice(1));
    const b64 = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
    if (!q.has('sig')) return;
    st.sig = b64(q.get('sig'));
    st.sigName = 'signature from the URL fragment';
    if (q.has('doc')) { st.doc = b64(q.get('doc')); st.docName = 'document from the URL fragment'; }
    if (q.has('hash')) $('doc-hash').value = q.get('hash');
    if (q.has('pub')) $('pub-str').value = q.get('pub');
    run();
  }

  wire('sig');
  wire('doc');
  $('run').addEventListener('click', run);
  for (const id of ['doc-hash', 'pub-str']) $(id).addEventListener('change', () => st.sig && run());
  document.addEventListener('dragover', (e) => e.preventDefault()); /* a file dropped beside a zone is not opened */
  document.addEventListener('drop', (e) => e.preventDefault());
  fromFragment();
})();
