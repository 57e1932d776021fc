#!/usr/bin/python3
"""Real text embeddings from the English documentation shipped in Debian packages: two benchmark sets.

GloVe-100-angular (word vectors) and transformer sentence embeddings (768-d, cosine) cannot be fetched
here, so this script makes data of the same shapes from text Debian ships (the packages of SOURCES below)
with Debian's fastText 0.9.2 (python3-fasttext: the library of the `fasttext` program, same code):

- corpus: the English text of the manuals in SOURCES (HTML without scripts, styles, code blocks and
  navigation; Perl's POD; the GNU Collaborative International Dictionary of English; WordNet's glosses),
  split into paragraphs. A paragraph seen before anywhere in the corpus is dropped (manuals repeat
  navigation and boilerplate on every page). Tokens are lower-cased words (letters and digits, with inner
  ' . - kept: "don't", "os.path"). Every document (an HTML page, a POD file, a dictionary entry, a WordNet
  synset) whose name's SHA-1 is 0 mod 10 is a query document, the others base documents. (Debian 12:
  about 140 MB of text, 22 M tokens, 280,000 documents.)
- words-100 (the shape of GloVe-100-angular): `fasttext skipgram -dim 100` (5 epochs, character n-grams
  3-6: fastText's defaults) on the whole corpus; every vocabulary word (at least --w-min-count
  occurrences) is one vector, made unit length (angular = inner product on unit vectors). --nq words
  drawn with --seed are the queries and are removed from the base, as ann-benchmarks does with GloVe.
- sentences-768 (the shape of 768-d transformer sentence embeddings): a 768-d fastText cbow model trained on
  the same corpus with the recipe of fastText's Common Crawl vectors (character 5-grams, window 5, 10
  negatives) but 3 epochs (skipgram or 5 epochs do not fit 45 minutes on 2 shared cores); each distinct
  sentence of --s-min..--s-max tokens, at least 3/4 of them words, becomes fastText's sentence vector
  (`fasttext print-sentence-vectors`: the mean of its words' unit vectors, a word being the mean of its
  n-gram vectors), made unit length (cosine = inner product). Base: at most --n sentences of base
  documents, drawn with --seed; queries: --nq sentences of query documents that occur in no base document.
- Output: OUT/words-100/ and OUT/sentences-768/, each with base.fvecs, queries.fvecs, sources.txt (packages
  and versions, the fastText arguments, counts, the norms before normalisation, times) and words.txt or
  sentences.txt (the text of each row: "B<TAB>text" for the base rows in order, then "Q<TAB>text" for the
  queries). The corpus and the two models stay in OUT/corpus/ (about 6 GB) and a later run reuses them
  (delete them to start over, and the .bin models after changing a fastText argument).
Nothing is downloaded and no pre-trained model is used: the text is the packages' and every vector comes
from a model trained here on it. (Not transformer embeddings: their shape, not their model.)
fastText trained with one thread (--threads 1) gives the same vectors on every run for the same package
versions and arguments; with more threads (the default 2) the vectors differ slightly from run to run, the
shape does not. Time on 2 cores shared with other work (nice 15): corpus 2.5 min; words-100 30 min;
sentences-768 31 min (peak memory 8 GB: the 768-d model is 4.5 GB, the base 3 GB).

Packages: apt-get install --no-install-recommends python3-numpy python3-lxml python3-fasttext
  linux-doc-6.1 python3.11-doc postgresql-doc-15 perl-doc rust-doc erlang-doc python-django-doc
  python-scipy-doc python-sklearn-doc python-pandas-doc git-doc sqlite3-doc debian-handbook gnucash-docs
  gimp-help-en openjdk-17-doc octave-doc dict-gcide wordnet-base
Usage: text_debian.py --out DIR [--sets words-100,sentences-768] [--threads 2]
"""
import argparse
import gzip
import hashlib
import json
import multiprocessing
import os
import re
import subprocess
import sys
import time

SPHINX_SKIP = (r'(^|/)(_static|_sources|_modules|_images|_downloads)/|'
               r'(^|/)(genindex|search|py-modindex|np-modindex)\.html$')
# package, root directory, files taken (regex on the path below root), files skipped (regex), format.
# Only English text: for packages with translations the English directory is the root.
SOURCES = [
    ('linux-doc-6.1', '/usr/share/doc/linux-doc-6.1/html', r'\.html$', SPHINX_SKIP, 'html'),
    ('python3.11-doc', '/usr/share/doc/python3.11/html', r'\.html$', SPHINX_SKIP, 'html'),
    ('postgresql-doc-15', '/usr/share/doc/postgresql-doc-15/html', r'\.html$', r'^bookindex\.html$', 'html'),
    ('perl-doc', '/usr/share/perl/5.36.0/pod', r'\.pod$', None, 'pod'),
    # the standard library's platform intrinsics (core::arch, 15,000 generated pages) are left out
    ('rust-doc', '/usr/share/doc/rust-doc/html', r'\.html$', r'(^|/)(core|std)/(arch|core_arch)/|(^|/)search-index|'
     r'(^|/)(all|settings|help)\.html$|(^|/)src/', 'html'),
    ('erlang-doc', '/usr/share/doc/erlang-doc', r'\.html$', r'/java/', 'html'),
    ('python-django-doc', '/usr/share/doc/python-django-doc/html', r'\.html$', SPHINX_SKIP, 'html'),
    ('python-scipy-doc', '/usr/share/doc/python-scipy-doc/html', r'\.html$', SPHINX_SKIP, 'html'),
    ('python-sklearn-doc', '/usr/share/doc/python-sklearn-doc/html', r'\.html$', SPHINX_SKIP, 'html'),
    ('python-pandas-doc', '/usr/share/doc/python-pandas-doc/html', r'\.html$', SPHINX_SKIP, 'html'),
    ('git-doc', '/usr/share/doc/git-doc', r'\.html$', None, 'html'),
    ('sqlite3-doc', '/usr/share/doc/sqlite3', r'\.html$', r'(^|/)(keyword_index|sitemap|toc)\.html$', 'html'),
    ('debian-handbook', '/usr/share/doc/debian-handbook/html/en-US', r'\.html$', None, 'html'),
    ('gnucash-docs', '/usr/share/doc/gnucash-docs', r'^gnucash-(guide|help)-en/.*\.html$', None, 'html'),
    ('gimp-help-en', '/usr/share/gimp/2.0/help/en', r'\.html$', None, 'html'),
    # the Java SE API (the jre-headless package's directory): classes' and packages' pages, not the
    # generated "Uses of", tree and index pages
    ('openjdk-17-doc', '/usr/share/doc/openjdk-17-jre-headless/api', r'\.html$',
     r'(^|/)(class-use|index-files|legal|resources|script-dir)/|(^|/)(package-tree|overview-tree|allclasses-index|'
     r'allpackages-index|deprecated-list|constant-values|serialized-form|search|index|help-doc|'
     r'package-use|overview-summary|new-list)\.html$', 'html'),
    ('octave-doc', '/usr/share/doc/octave', r'^(octave|liboctave)\.html/.*\.html$', r'(^|/)(Index|.*-Index)\.html$',
     'html'),
    ('dict-gcide', '/usr/share/dictd', r'^gcide\.dict\.dz$', None, 'gcide'),
    ('wordnet-base', '/usr/share/wordnet', r'^data\.(noun|verb|adj|adv)$', None, 'wordnet'),
]
TOOLS = {'numpy': 'python3-numpy', 'lxml': 'python3-lxml', 'fasttext': 'python3-fasttext'}
SETS = ('words-100', 'sentences-768')

WORD = re.compile(r"[^\W_]+(?:['\u2019.\-][^\W_]+)*")
ALPHA = re.compile(r"[^\W\d_]+(?:['\u2019\-][^\W\d_]+)*$")
SENT_END = re.compile(r'(?<=[.!?])["\'\u201d)\]]*\s+(?=["\'\u201c(\[]?[A-Z0-9])')
SPACE = re.compile(r'\s+')


def die(msg):
    sys.exit('text_debian: ' + msg)


def check_packages(names):
    missing = []
    for p in names:
        r = subprocess.run(['dpkg-query', '-W', '-f=${Status}', p], capture_output=True, text=True)
        if r.returncode != 0 or 'install ok installed' not in r.stdout:
            missing.append(p)
    if missing:
        die('missing Debian packages: %s\n  apt-get install --no-install-recommends %s' %
            (' '.join(missing), ' '.join(missing)))


def package_version(p):
    return subprocess.run(['dpkg-query', '-W', '-f=${Version}', p], capture_output=True, text=True).stdout


class Progress:
    """One \\r line on stderr when it is a terminal: done/total, rate and ETA."""

    def __init__(self, what, total, unit):
        self.what, self.total, self.unit = what, total, unit
        self.t0 = self.last = time.time()
        self.tty = sys.stderr.isatty()

    def update(self, done, extra=''):
        now = time.time()
        if not self.tty or (now - self.last < 0.5 and done < self.total):
            return
        self.last = now
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0
        sys.stderr.write('\r%s: %d/%d %s, %.0f %s/s, ETA %.0f s%s   ' %
                         (self.what, done, self.total, self.unit, rate, self.unit, eta, extra))

    def end(self):
        if self.tty:
            sys.stderr.write('\n')


# ---------------------------------------------------------------------------------------------- extraction

BLOCK = {'p', 'div', 'li', 'dd', 'dt', 'td', 'th', 'tr', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'br', 'ul',
         'ol', 'dl', 'table', 'section', 'article', 'blockquote', 'caption', 'figcaption', 'title', 'hr',
         'main', 'summary', 'details', 'aside'}
DROP = {'script', 'style', 'pre', 'nav', 'header', 'footer', 'head', 'noscript', 'svg', 'math', 'form',
        'button', 'select', 'textarea'}
DROP_CLASS = re.compile(r'\b(sphinxsidebar|related|footer|navheader|navfooter|toc|highlight|headerlink|'
                        r'sidebar|breadcrumbs?|rustdoc-breadcrumbs|sub-heading|out-of-band|src-link|'
                        r'anchor|literallayout|programlisting|screen|synopsis|cmdsynopsis|funcsynopsis)\b')


def html_paragraphs(path):
    import lxml.etree
    import lxml.html
    with open(path, 'rb') as f:
        data = f.read()
    if not data.strip():
        return []
    try:
        root = lxml.html.document_fromstring(data)
    except (lxml.etree.ParserError, ValueError):
        return []
    for el in list(root.iter(lxml.etree.Comment, lxml.etree.ProcessingInstruction)):
        el.drop_tree()
    drop = [el for el in root.iter() if isinstance(el.tag, str) and
            (el.tag in DROP or DROP_CLASS.search(el.get('class') or ''))]
    for el in drop:
        if el.getparent() is not None:
            el.drop_tree()
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag in BLOCK:
            el.text = '\ue000' + (el.text or '')
            el.tail = '\ue000' + (el.tail or '')
    return [SPACE.sub(' ', t).strip() for t in root.text_content().split('\ue000')]


POD_CODE = re.compile(r'[A-Z]<<+\s+(.*?)\s+>>+|[A-Z]<([^<>]*)>')


def pod_paragraphs(path):
    with open(path, encoding='utf-8', errors='replace') as f:
        text = f.read()
    out, skip = [], False
    for block in re.split(r'\n\s*\n', text):
        if block.startswith('=begin'):
            skip = True
        if block.startswith('=end'):
            skip = False
            continue
        if skip or block.startswith((' ', '\t')) or block.startswith('=cut') or block.startswith('=pod'):
            continue
        if block.startswith('='):  # =head1 NAME, =item text: keep the text
            block = block.split(None, 1)[1] if len(block.split(None, 1)) > 1 else ''
        prev = None
        while prev != block:
            prev = block
            block = POD_CODE.sub(lambda m: (m.group(1) or m.group(2) or '').split('|')[-1], block)
        out.append(SPACE.sub(' ', block).strip())
    return out


GCIDE_MARK = re.compile(r'\[\d{4} Webster\]|\[WordNet[^\]]*\]|\[PJC\]|\\[^\\\n]*\\|[{}]')


def gcide_docs(path):
    """One document per dictionary entry (a headword line at column 0 and its indented body)."""
    with gzip.open(path, 'rt', encoding='utf-8', errors='replace') as f:
        lines = f.read().split('\n')
    docs, cur, name = [], [], None
    for ln in lines:
        if ln and not ln[0].isspace():
            if name is not None:
                docs.append((name, cur))
            name, cur = ln.split('\\', 1)[0].strip(), [ln]
        elif name is not None:
            cur.append(ln)
    if name is not None:
        docs.append((name, cur))
    out = []
    for i, (name, body) in enumerate(docs):
        if name.startswith('00-database') or name.startswith('00database'):
            continue
        paras = [GCIDE_MARK.sub(' ', SPACE.sub(' ', p)).strip() for p in '\n'.join(body).split('\n\n')]
        out.append(('%s#%d' % (name, i), paras))
    return out


def wordnet_docs(path):
    """One document per synset: its gloss (definition; "examples")."""
    out = []
    with open(path, encoding='utf-8', errors='replace') as f:
        for ln in f:
            if ln.startswith(' ') or '|' not in ln:
                continue
            gloss = ln.split('|', 1)[1].strip()
            parts = [p.strip().strip('"').strip() for p in gloss.split(';')]
            out.append((ln.split(' ', 1)[0], [p[:1].upper() + p[1:] + '.' for p in parts if p]))
    return out


def extract(job):
    """(package, root, rel, format) -> [(document name, [paragraph text])]"""
    pkg, root, rel, fmt = job
    path = os.path.join(root, rel)
    if fmt == 'html':
        return [(rel, html_paragraphs(path))]
    if fmt == 'pod':
        return [(rel, pod_paragraphs(path))]
    if fmt == 'gcide':
        return gcide_docs(path)
    return wordnet_docs(path)


def tokens(text):
    return WORD.findall(text.lower())


def list_files():
    jobs, counts = [], {}
    for pkg, root, take, skip, fmt in SOURCES:
        if not os.path.isdir(root):
            die('%s: no directory %s (package version differs?)' % (pkg, root))
        found = []
        for r, _, fs in os.walk(root):
            for f in fs:
                rel = os.path.relpath(os.path.join(r, f), root)
                if re.search(take, rel) and not (skip and re.search(skip, rel)):
                    found.append(rel)
        found.sort()
        counts[pkg] = len(found)
        jobs += [(pkg, root, rel, fmt) for rel in found]
    return jobs, counts


def make_corpus(cdir, jobs_n):
    """Writes cdir/train.txt (distinct paragraphs, tokenised), cdir/sentences.txt ("B|Q<TAB>tokens":
    distinct sentences, B when it occurs in a base document) and cdir/corpus.json (counts)."""
    files, nfiles = list_files()
    t0 = time.time()
    prog = Progress('corpus', len(files), 'files')
    seen_para = set()
    sents = {}  # tokenised sentence -> True when in a base document
    stats = {p: {'files': nfiles[p], 'documents': 0, 'query_documents': 0, 'paragraphs': 0, 'bytes': 0,
                 'tokens': 0} for p in nfiles}
    tmp = os.path.join(cdir, 'train.txt.tmp')
    with open(tmp, 'w', encoding='utf-8') as train, multiprocessing.Pool(jobs_n) as pool:
        for i, (job, docs) in enumerate(zip(files, pool.imap(extract, files, chunksize=8))):
            pkg = job[0]
            st = stats[pkg]
            for name, paras in docs:
                docid = '%s:%s' % (pkg, name)
                is_base = hashlib.sha1(docid.encode()).digest()[0] % 10 != 0
                st['documents'] += 1
                st['query_documents'] += not is_base
                for p in paras:
                    tk = tokens(p)
                    if len(tk) < 3:
                        continue
                    line = ' '.join(tk)
                    h = hashlib.blake2b(line.encode(), digest_size=8).digest()
                    new = h not in seen_para
                    if new:
                        seen_para.add(h)
                        train.write(line + '\n')
                        st['paragraphs'] += 1
                        st['bytes'] += len(p.encode())
                        st['tokens'] += len(tk)
                    if new or is_base:  # a repeat in a base document makes its sentences base sentences
                        for s in SENT_END.split(p):
                            ts = tokens(s)
                            if len(ts) >= 4:
                                key = ' '.join(ts)
                                sents[key] = sents.get(key, False) or is_base
            prog.update(i + 1, ', %.0f MB text' % (sum(s['bytes'] for s in stats.values()) / 1e6))
    prog.end()
    os.replace(tmp, os.path.join(cdir, 'train.txt'))
    with open(os.path.join(cdir, 'sentences.txt.tmp'), 'w', encoding='utf-8') as f:
        for s, b in sents.items():
            f.write('%s\t%s\n' % ('B' if b else 'Q', s))
    os.replace(os.path.join(cdir, 'sentences.txt.tmp'), os.path.join(cdir, 'sentences.txt'))
    info = {'packages': stats, 'seconds': round(time.time() - t0, 1),
            'versions': {p: package_version(p) for p in stats}}
    with open(os.path.join(cdir, 'corpus.json'), 'w') as f:
        json.dump(info, f, indent=1)
    return info


# ---------------------------------------------------------------------------------------------- the sets


def write_fvecs(path, x):
    """Writes the rows of x as .fvecs, 65,536 rows at a time (no copy of a 3 GB set); returns the first 16 hex
    digits of the SHA-256 of x's float32 bytes (the same as hashing x.tobytes())."""
    import numpy as np
    n, d = x.shape
    digest = hashlib.sha256()
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        for i in range(0, n, 65536):
            part = np.ascontiguousarray(x[i:i + 65536], dtype=np.float32)
            digest.update(part)
            rec = np.empty((len(part), d + 1), dtype=np.float32)
            rec[:, 0] = np.array([d], dtype=np.int32).view(np.float32)[0]
            rec[:, 1:] = part
            rec.tofile(f)
    os.replace(tmp, path)
    return digest.hexdigest()[:16]


def unit_rows(x, what):
    """Divides each row by its length in place; returns the lengths (they go into sources.txt)."""
    import numpy as np
    norms = np.sqrt(np.einsum('ij,ij->i', x, x, dtype=np.float64))
    if (norms == 0).any():
        die('%s: %d zero vectors' % (what, int((norms == 0).sum())))
    x /= norms[:, None].astype(np.float32)
    return norms


def norm_summary(norms):
    import numpy as np
    q = np.percentile(norms, [0, 1, 10, 50, 90, 99, 100])
    return ('min %.4g, p1 %.4g, p10 %.4g, median %.4g, p90 %.4g, p99 %.4g, max %.4g, mean %.4g, '
            'coefficient of variation %.3f' % (*q, norms.mean(), norms.std() / norms.mean()))


def train(cdir, name, args, threads):
    """Trains (or loads, when cdir/name.bin exists) a fastText model on cdir/train.txt."""
    import fasttext
    path = os.path.join(cdir, name + '.bin')
    if os.path.exists(path):
        fasttext.FastText.eprint = lambda *_: None  # its note that load_model returns a FastText object
        return fasttext.load_model(path), None
    t0 = time.time()
    m = fasttext.train_unsupervised(os.path.join(cdir, 'train.txt'), thread=threads,
                                    verbose=2 if sys.stderr.isatty() else 0, **args)
    if sys.stderr.isatty():
        sys.stderr.write('\n')
    m.save_model(path + '.tmp')
    os.replace(path + '.tmp', path)
    return m, time.time() - t0


def thread_note(threads):
    return '' if threads == 1 else ' (more than one thread: vectors vary slightly run to run)'


def secs(t):
    return 'model reused' if t is None else '%.0f s' % t


def ft_args_text(args):
    return 'fasttext %s -input corpus/train.txt -output MODEL %s' % (
        args['model'], ' '.join('-%s %s' % (k, v) for k, v in args.items() if k != 'model'))


def write_sources(odir, lines, corpus):
    with open(os.path.join(odir, 'sources.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n\ncorpus (tests/bench/text_debian.py, %d distinct paragraphs, %d bytes of text, '
                '%d tokens): package, version, files, documents (of which query documents), paragraphs, bytes, '
                'tokens\n' %
                tuple(sum(s[k] for s in corpus['packages'].values()) for k in ('paragraphs', 'bytes', 'tokens')))
        for p, st in corpus['packages'].items():
            f.write('%s %s %d %d (%d) %d %d %d\n' % (p, corpus['versions'][p], st['files'], st['documents'],
                                                    st['query_documents'], st['paragraphs'], st['bytes'], st['tokens']))


def encode(items, dim, vector, what):
    """One float32 row per item (vector(item)), with a progress line."""
    import numpy as np
    x = np.empty((len(items), dim), dtype=np.float32)
    prog = Progress(what, len(items), what)
    for i, item in enumerate(items):
        x[i] = vector(item)
        if i % 4096 == 0:
            prog.update(i)
    prog.update(len(items))
    prog.end()
    return x


def make_words(a, cdir, corpus):
    import numpy as np
    odir = os.path.join(a.out, 'words-%d' % a.w_dim)
    os.makedirs(odir, exist_ok=True)
    args = dict(model='skipgram', dim=a.w_dim, epoch=a.w_epoch, minCount=a.w_min_count, minn=3, maxn=6, ws=5,
                neg=5, lr=0.05, bucket=2000000)
    m, t_train = train(cdir, 'words-%d' % a.w_dim, args, a.threads)
    t0 = time.time()
    words = [w for w in m.get_words() if w != '</s>']
    x = encode(words, a.w_dim, m.get_word_vector, 'words')
    norms = unit_rows(x, 'words')
    rng = np.random.default_rng(a.seed)
    qi = rng.choice(len(words), size=a.nq, replace=False)
    is_q = np.zeros(len(words), dtype=bool)
    is_q[qi] = True
    bi = np.flatnonzero(~is_q)  # the rest, in the vocabulary's order (most frequent first)
    digest = write_fvecs(os.path.join(odir, 'base.fvecs'), x[bi])
    write_fvecs(os.path.join(odir, 'queries.fvecs'), x[qi])
    with open(os.path.join(odir, 'words.txt'), 'w', encoding='utf-8') as f:
        f.writelines('B\t%s\n' % words[i] for i in bi)
        f.writelines('Q\t%s\n' % words[i] for i in qi)
    pi = bi[rng.choice(len(bi), size=(20000, 2))]
    pair_cos = float(np.einsum('ij,ij->i', x[pi[:, 0]], x[pi[:, 1]]).mean())
    mean_len = float(np.linalg.norm(x[bi].mean(axis=0, dtype=np.float64)))
    write_sources(odir, [
        'words-%d: fastText word vectors of the English documentation in Debian packages (the shape of '
        'GloVe-100-angular), made by tests/bench/text_debian.py' % a.w_dim,
        'metric: angular (vectors are unit length: inner product = cosine)',
        'base: %d words (every vocabulary word but the queries, most frequent first); queries: %d words drawn '
        'with numpy default_rng(%d) and removed from the base' % (len(bi), len(qi), a.seed),
        'model: %s -thread %d%s' % (ft_args_text(args), a.threads, thread_note(a.threads)),
        'norms before normalisation: ' + norm_summary(norms),
        'anisotropy: mean cosine of 20,000 random base pairs %.3f; length of the mean base vector %.3f' %
        (pair_cos, mean_len),
        'base sha256 (first 16 hex): %s' % digest,
        'time: train %s, vectors and files %.0f s' % (secs(t_train), time.time() - t0)], corpus)
    print('text_debian: words-%d: %d base, %d queries, d=%d, train %s, vectors %.0f s, base sha256 %s' %
          (a.w_dim, len(bi), len(qi), a.w_dim, secs(t_train), time.time() - t0, digest))


def make_sentences(a, cdir, corpus):
    import numpy as np
    odir = os.path.join(a.out, 'sentences-%d' % a.s_dim)
    os.makedirs(odir, exist_ok=True)
    args = dict(model='cbow', dim=a.s_dim, epoch=a.s_epoch, minCount=a.s_min_count, minn=5, maxn=5, ws=5,
                neg=10, lr=0.05, bucket=a.s_bucket)
    m, t_train = train(cdir, 'sentences-%d' % a.s_dim, args, a.threads)
    t0 = time.time()
    base, query = [], []
    with open(os.path.join(cdir, 'sentences.txt'), encoding='utf-8') as f:
        for ln in f:
            role, text = ln.rstrip('\n').split('\t', 1)
            tk = text.split(' ')
            if not a.s_min <= len(tk) <= a.s_max:
                continue
            if sum(1 for t in tk if ALPHA.match(t)) < 0.75 * len(tk):
                continue  # mostly code, numbers or identifiers: not a sentence
            (base if role == 'B' else query).append(text)
    if len(query) < a.nq:
        die('only %d query sentences (need %d)' % (len(query), a.nq))
    rng = np.random.default_rng(a.seed)
    nb_all = len(base)
    if len(base) > a.n:
        keep = np.sort(rng.choice(len(base), size=a.n, replace=False))  # corpus order
        base = [base[i] for i in keep]
    query = [query[i] for i in rng.choice(len(query), size=a.nq, replace=False)]
    texts = base + query
    x = encode(texts, a.s_dim, m.get_sentence_vector, 'sentences')
    norms = unit_rows(x, 'sentences')
    nb = len(base)
    digest = write_fvecs(os.path.join(odir, 'base.fvecs'), x[:nb])
    write_fvecs(os.path.join(odir, 'queries.fvecs'), x[nb:])
    with open(os.path.join(odir, 'sentences.txt'), 'w', encoding='utf-8') as f:
        f.writelines('B\t%s\n' % s for s in base)
        f.writelines('Q\t%s\n' % s for s in query)
    # anisotropy: mean cosine of random pairs of base vectors, and the length of the mean base vector
    pi = rng.choice(nb, size=(20000, 2))
    pair_cos = float(np.einsum('ij,ij->i', x[pi[:, 0]], x[pi[:, 1]]).mean())
    mean_len = float(np.linalg.norm(x[:nb].mean(axis=0, dtype=np.float64)))
    write_sources(odir, [
        'sentences-%d: fastText sentence vectors of the English documentation in Debian packages (the shape of '
        '%d-d transformer sentence embeddings), made by tests/bench/text_debian.py' % (a.s_dim, a.s_dim),
        'metric: cosine (vectors are unit length: inner product = cosine)',
        'base: %d distinct sentences of base documents (drawn with numpy default_rng(%d) from %d with %d..%d '
        'tokens, at least 3/4 of them words); queries: %d sentences of query documents that occur in no base '
        'document' % (nb, a.seed, nb_all, a.s_min, a.s_max, len(query)),
        'vector: fastText print-sentence-vectors (mean of the unit word vectors), then unit length',
        'model: %s -thread %d%s' % (ft_args_text(args), a.threads, thread_note(a.threads)),
        'norms before normalisation: ' + norm_summary(norms),
        'anisotropy: mean cosine of 20,000 random base pairs %.3f; length of the mean base vector %.3f' %
        (pair_cos, mean_len),
        'base sha256 (first 16 hex): %s' % digest,
        'time: train %s, vectors and files %.0f s' % (secs(t_train), time.time() - t0)], corpus)
    print('text_debian: sentences-%d: %d base, %d queries, d=%d, train %s, vectors %.0f s, '
          'mean pair cosine %.3f, base sha256 %s' %
          (a.s_dim, nb, len(query), a.s_dim, secs(t_train), time.time() - t0, pair_cos, digest))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', required=True, help='output directory')
    ap.add_argument('--sets', default=','.join(SETS), help='comma-separated, of %s (default both)' % ','.join(SETS))
    ap.add_argument('--threads', type=int, default=2,
                    help='worker processes and fastText threads (default 2; 1 = the same vectors every run)')
    ap.add_argument('--seed', type=int, default=42,
                    help='seed of the query and base draws (default 42; fastText keeps its own seed, 0)')
    ap.add_argument('--nq', type=int, default=10000, help='queries of each set (default 10000)')
    ap.add_argument('--w-dim', type=int, default=100, help='words: dimension (default 100)')
    ap.add_argument('--w-epoch', type=int, default=5, help='words: fastText epochs (default 5)')
    ap.add_argument('--w-min-count', type=int, default=2,
                    help='words: occurrences for a vocabulary word (default 2)')
    ap.add_argument('--n', type=int, default=1000000, help='sentences: base vectors at most (default 1000000)')
    ap.add_argument('--s-dim', type=int, default=768, help='sentences: dimension (default 768)')
    ap.add_argument('--s-epoch', type=int, default=3,
                    help='sentences: fastText epochs (default 3: the 45-minute budget on 2 shared cores)')
    ap.add_argument('--s-min-count', type=int, default=2, help='sentences: fastText -minCount (default 2)')
    ap.add_argument('--s-bucket', type=int, default=1000000,
                    help='sentences: fastText -bucket, n-gram rows (default 1000000: 3 GB at 768-d)')
    ap.add_argument('--s-min', type=int, default=6, help='sentences: fewest tokens (default 6)')
    ap.add_argument('--s-max', type=int, default=64, help='sentences: most tokens (default 64)')
    a = ap.parse_args()
    sets = [s for s in a.sets.split(',') if s]
    if any(s not in SETS for s in sets):
        die('--sets: one or more of ' + ','.join(SETS))
    check_packages(sorted(set(TOOLS.values())) + [s[0] for s in SOURCES])
    cdir = os.path.join(a.out, 'corpus')
    os.makedirs(cdir, exist_ok=True)
    if not os.path.exists(os.path.join(cdir, 'corpus.json')):
        info = make_corpus(cdir, a.threads)
        tot = {k: sum(s[k] for s in info['packages'].values()) for k in ('documents', 'paragraphs', 'bytes', 'tokens')}
        print('text_debian: corpus %(documents)d documents, %(paragraphs)d distinct paragraphs, %(bytes)d bytes, '
              '%(tokens)d tokens' % tot + ', %.0f s' % info['seconds'])
    with open(os.path.join(cdir, 'corpus.json')) as f:
        corpus = json.load(f)
    if 'words-100' in sets:
        make_words(a, cdir, corpus)
    if 'sentences-768' in sets:
        make_sentences(a, cdir, corpus)


if __name__ == '__main__':
    main()
