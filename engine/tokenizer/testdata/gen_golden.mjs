// gen_golden.mjs generates the golden data that engine/tokenizer is tested against, using the
// reference implementation: Hugging Face `tokenizers` (npm, native Rust core).
//
// How to run (outside the repository, so node_modules never lands in it):
//
//   mkdir -p /tmp/tokgold && (cd /tmp/tokgold && npm init -y && npm install tokenizers@0.23.2)
//   node engine/tokenizer/testdata/gen_golden.mjs            # trains + writes qwen2/, llama3/, train/
//   (cd engine/tokenizer && go test -run TestTrainSaveLoadsInHF -update .)   # serl trains + saves trained/
//   node engine/tokenizer/testdata/gen_golden.mjs check engine/tokenizer/testdata/trained
//       # HF loads serl's tokenizer.json and encodes every golden string: trained/golden_hf.jsonl
//   node engine/tokenizer/testdata/gen_golden.mjs check DIR FILE...
//       # the same with the texts of FILEs (the built-in model's tokenizer on its world: README)
//
// Environment: TOKGOLD (folder holding node_modules/tokenizers, default /tmp/tokgold/),
// MATHDATA (default /work/shared/data/math).
//
// What it writes, under this script's folder:
//   qwen2/tokenizer.json, llama3/tokenizer.json: byte-level BPE trained by HF's BpeTrainer on the math
//     data with Qwen2's and Llama-3's exact pre-tokenizer configuration, truncated to ~2000 tokens.
//   {qwen2,llama3}/golden.jsonl: {"text","ids","ids_bos","ids_raw","decoded","pieces"} per string: ids =
//     encode(text, add_special_tokens=false), ids_bos = with add_special_tokens=true, ids_raw = with the
//     special tokens unregistered (what serl's ParseSpecial=false must give), decoded = HF's
//     decode(ids, skip_special_tokens=false), pieces = the pre-tokenizer's split of the normalised
//     text (byte-level form).
//   {qwen2,llama3}/decode.jsonl: {"ids","text","text_skip"}: HF's decode of id sequences, including
//     ones that cut UTF-8 sequences (lossy U+FFFD handling).
//   train/corpus.txt + train/hf_merges.json: HF's BpeTrainer merges on a small corpus (Qwen2
//     configuration, default trainer, run to exhaustion), for checking serl's trainer merge by merge.
//   check mode: DIR/golden_hf.jsonl with HF's encoding of every golden text by DIR/tokenizer.json (used
//     to prove that a tokenizer.json saved by serl loads in HF and encodes identically).

import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(process.env.TOKGOLD ?? '/tmp/tokgold/');
const tk = require('tokenizers');
const here = path.dirname(fileURLToPath(import.meta.url));
const mathDir = process.env.MATHDATA ?? '/work/shared/data/math';

const QWEN2 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const LLAMA3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Deterministic PRNG so reruns give the same files.
let seed = 12345;
function rnd() {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x80000000;
}

function readProblems() {
  const out = [];
  for (const f of fs.readdirSync(mathDir).filter((f) => f.endsWith('.jsonl')).sort()) {
    for (const line of fs.readFileSync(path.join(mathDir, f), 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const j = JSON.parse(line);
      out.push({ file: f, text: j.problem ?? j.question, extra: [j.solution, j.answer].filter((x) => typeof x === 'string') });
    }
  }
  return out;
}

// Split configured as in the real files: the pattern is a {"Regex": ...} (the npm splitPreTokenizer
// builds a literal {"String": ...}, so the JSON is written by hand).
function baseJSON(pattern, normalizer) {
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: [],
    normalizer,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: pattern }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab: {}, merges: [],
    },
  };
}

// train runs HF's default BpeTrainer (the only one the npm binding exposes: no special tokens, no
// initial alphabet, vocab 30000) on corpusFile and returns the saved JSON.
function train(json, corpusFile) {
  const t = tk.Tokenizer.fromString(JSON.stringify(json));
  t.train([corpusFile]);
  const tmp = path.join(fs.mkdtempSync('/tmp/tokgold-'), 'tok.json');
  t.save(tmp, false);
  return JSON.parse(fs.readFileSync(tmp, 'utf8'));
}

// truncate keeps the first merges so the model vocab has `size` entries, then appends the byte
// symbols the corpus lacked (so every string is encodable) and the added tokens after the model vocab,
// in the standard layout (HF reassigns added-token ids on load otherwise).
function truncate(j, size, added, stringMerges) {
  const vocab = j.model.vocab;
  const byId = Object.entries(vocab).sort((a, b) => a[1] - b[1]);
  const merges = j.model.merges.map((m) => (typeof m === 'string' ? m.split(' ') : m));
  let n = byId.findIndex(([t]) => t.length > 1 && merges.length > 0);
  if (n < 0) n = byId.length;
  const keep = new Map(byId.slice(0, n));
  const kept = [];
  for (const [a, b] of merges) {
    if (keep.size >= size) break;
    if (!keep.has(a) || !keep.has(b)) throw new Error('merge part missing');
    if (!keep.has(a + b)) keep.set(a + b, keep.size);
    kept.push([a, b]);
  }
  // byteLevelAlphabet comes from a hash set: sort it so reruns give the same ids.
  const alphabet = [...tk.byteLevelAlphabet()].sort((x, y) => x.codePointAt(0) - y.codePointAt(0));
  for (const c of alphabet) if (!keep.has(c)) keep.set(c, keep.size);
  // Ids must stay dense: re-number in insertion order (alphabet ids were already 0..n-1).
  const newVocab = {};
  let id = 0;
  for (const k of keep.keys()) newVocab[k] = id++;
  j.model.vocab = newVocab;
  j.model.merges = stringMerges ? kept.map(([a, b]) => a + ' ' + b) : kept;
  j.added_tokens = added.map((a) => ({
    id: id++, content: a.content, single_word: a.single_word ?? false, lstrip: a.lstrip ?? false,
    rstrip: a.rstrip ?? false, normalized: a.normalized ?? false, special: a.special ?? true,
  }));
  return j;
}

const hard = [
  '', ' ', '  ', '   ', '\t', '\n', '\r\n', '\n\n', ' \n', '\n ', ' \n ', '\t\n\t', 'a\r\nb', 'a\r\n\r\nb',
  'a \r\n b', 'x\n\n\n  y', 'hello world', 'hello  world', 'hello   world', ' hello', 'hello ', '  hello  ',
  'hello\tworld', 'hello\t\tworld', 'a\u000bb\u000cc', 'tab\t', '\tlead', 'trailing   ', 'x \t y',
  // every White_Space code point, alone, in runs, and before letters/digits/punctuation
  ...[0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004,
    0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000].flatMap((c) => {
    const s = String.fromCodePoint(c);
    return [`a${s}b`, `a${s}${s}b`, `${s}x`, `1${s}2`, `.${s}.`, `${s}${s}`, `word${s}`, `${s} (${s}`];
  }),
  // not White_Space: Mongolian vowel separator, zero-width space/joiner, BOM, NEL-lookalikes
  'a\u180eb', 'a\u200bb', 'a\u200db', '\ufeffhello', 'a\u00adb', 'x\u2060y',
  // contractions in all cases, and the long s (case-folds to s)
  "it's", "IT'S", "don't", "DON'T", "we're", "WE'RE", "We'Re", "I've", "I'VE", "I'm", "I'M", "you'll",
  "YOU'LL", "You'Ll", "he'd", "HE'D", "'s", "'S", "'sam", "'Sam", "'ll", "'LLama", "x'ſ", "'ſt", "'\u212a",
  "rock 'n' roll", "''s", " 's", "'re'", "it\u2019s", "l'homme", "'t's", "''", "'",
  // digits
  '1', '12', '123', '1234', '12345', '123456', '1234567', '3.14159', '1,000,000', 'x2', '2x', 'v1.2.3',
  ' 42', '42 ', 'a 1234567 b', '\u0661\u0662\u0663\u0664', '\uff11\uff12\uff13\uff14', 'x\u00b2+y\u00b2',
  '\u2167\u2168', '\u00bd', '12\u0663\u00b2', '\u0968\u0966\u0968\u096a',
  // emoji: ZWJ sequences, skin tones, flags, keycaps, variation selectors
  '😀', 'hi 😀', '😀😀', '👍🏽', '👩‍💻', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇫🇷🇩🇪', '1️⃣', '❤️', 'a👩🏿‍🚀b', ' 🎉 ', '🤖\n',
  // combining marks and NFC vs NFD
  'caf\u00e9', 'cafe\u0301', 'e\u0301\u0301', '\u0301', ' \u0301a', 'a\u0301b', 'Cafe\u0301 au lait',
  '\u1100\u1161\u11a8', '\uac01', 'A\u030a', '\u212b', 'n\u0303', '\u00f1', 'o\u0308\u0304',
  'Ǆ', 'ǅ', 'ﬁ', 'x\u0345y', '\u0e01\u0e33', '\u0915\u094d\u0937',
  // scripts
  '中文字符测试', '你好，世界！', '数学：1+1=2', '日本語のテキスト', 'カタカナ', '한국어 텍스트',
  'مرحبا بالعالم', 'العدد ٣٤٥', 'नमस्ते दुनिया', 'Привет, мир!', 'Ελληνικά', 'עברית', 'ไทย ภาษา',
  '\u200f\u202eRTL', 'Ǆemal', 'İstanbul', 'straße', 'ΣΊΣΥΦΟΣ',
  // LaTeX
  '$x^2 + y^2 = z^2$', '\\frac{1}{2}', '\\boxed{42}', '$$\\sum_{k=1}^{\\infty} \\frac{1}{k^2} = \\frac{\\pi^2}{6}$$',
  '\\left( 3, \\frac{\\pi}{2} \\right)', '\\begin{align*}\na &= b \\\\\nc &= d\n\\end{align*}',
  '$\\sqrt[3]{x}$', '\\text{cm}^2', '{{{}}}', '[asy]\nsize(100);\ndraw((0,0)--(1,1));\n[/asy]',
  // punctuation runs with newlines
  '...', '!!!\n', '?!\r\n\r\n', '--->', ' ---\n', '):\n\n', ' (', '((', '.\n', '. \n', '\\\\\n',
  // special tokens inside text
  '<|endoftext|>', 'a<|endoftext|>b', '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n',
  ' <|im_end|> ', '<|im_end|><|im_end|>', '<|im_end', '<|im_start|', '<<|im_end|>>',
  '<|begin_of_text|>', 'x<|begin_of_text|>', '<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>',
  '<|eot_id|><|end_of_text|>', '<|eot_id', 'a <|eot_id|> b', '\n<|eot_id|>\n',
  // added tokens with lstrip/rstrip/single_word/normalized (see the fixtures' added_tokens)
  '<tool_call>', 'x<tool_call>y', ' <tool_call> ', 'Café', 'Cafe\u0301', 'Cafe\u0301s', 'le Café',
  '<mask>', 'a <mask> b', 'a  <mask>  b', 'a<mask>b', ' \t<mask>\n x', '[[sw]]', 'a [[sw]] b', 'a[[sw]]b',
  '[[sw]]x', 'x [[sw]]', '_[[sw]]', '[[sw]]_', '[[sw]] [[sw]]', '<mask><mask>', 'é<mask>', '<mask>é',
  // misc
  'The quick brown fox jumps over the lazy dog.', 'https://example.com/path?q=1&r=2#frag',
  'func main() {\n\tfmt.Println("hi")\n}\n', '    indented code\n        more\n', 'a_b_c', '__init__',
  'CamelCaseWord', 'email@example.com', '#hashtag', '@mention', '100%', '$5.00', '€10', '°C', '±∞',
  'x\u0000y', '\u0001\u0002\u007f', '\u00ff\u0100', '\ud7ff\ue000\uffff', '\u{10ffff}', '\u{1d400}\u{1d7ce}',
  'a'.repeat(300), ' '.repeat(100) + 'x', '\n'.repeat(20), '12'.repeat(40), 'ab '.repeat(60),
];

function goldenFor(j, json, dir, texts) {
  const t = tk.Tokenizer.fromString(JSON.stringify(json));
  for (const a of json.added_tokens) {
    if (t.tokenToId(a.content) !== a.id) throw new Error(`added token ${a.content} got id ${t.tokenToId(a.content)}, want ${a.id}`);
  }
  const raw = structuredClone(json);
  // Unregister the special tokens by giving them contents no text holds (removing them would make
  // HF renumber the other added tokens: it reassigns added-token ids on load).
  for (const a of raw.added_tokens) if (a.special) a.content = `\ue000unmatchable${a.id}\ue001`;
  raw.post_processor = null;
  const tr = tk.Tokenizer.fromString(JSON.stringify(raw));
  return Promise.all(texts.map(async (text) => {
    const e = await t.encode(text, null, { addSpecialTokens: false });
    const eb = await t.encode(text, null, { addSpecialTokens: true });
    const er = await tr.encode(text, null, { addSpecialTokens: false });
    // The pre-tokenizer's pieces (byte-level form) on the normalised text, without added-token
    // extraction: ids alone would not see a wrong split between rare characters that never merge.
    const n = t.getNormalizer() ? t.getNormalizer().normalizeString(text) : text;
    const pieces = t.getPreTokenizer().preTokenizeString(n).map(([p]) => p);
    return { text, ids: e.getIds(), ids_bos: eb.getIds(), ids_raw: er.getIds(), decoded: await t.decode(e.getIds(), false), pieces };
  }));
}

async function decodeGolden(json) {
  const t = tk.Tokenizer.fromString(JSON.stringify(json));
  const n = Object.keys(json.model.vocab).length + json.added_tokens.length;
  const cases = [];
  // Single-byte tokens of multi-byte characters, cut at every point, plus random sequences.
  const bytesOf = (s) => [...Buffer.from(s, 'utf8')].map((b) => json.model.vocab[byteChar[b]]);
  for (const s of ['é', '中', '😀', '👩‍💻', 'a😀b']) {
    const ids = bytesOf(s);
    for (let i = 0; i <= ids.length; i++) cases.push(ids.slice(0, i), ids.slice(i));
    cases.push([...ids.slice(0, 2), ...ids]);
  }
  for (let k = 0; k < 200; k++) {
    const len = 1 + Math.floor(rnd() * 12);
    const ids = [];
    for (let i = 0; i < len; i++) ids.push(rnd() < 0.5 ? Math.floor(rnd() * n) : json.model.vocab[byteChar[Math.floor(rnd() * 256)]]);
    cases.push(ids);
  }
  const out = [];
  for (const ids of cases) {
    out.push({ ids, text: await t.decode(ids, false), text_skip: await t.decode(ids, true) });
  }
  return out;
}

// GPT-2's bytes_to_unicode, to address single-byte tokens.
const byteChar = (() => {
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
  const m = [];
  bs.forEach((b, i) => { m[b] = String.fromCodePoint(cs[i]); });
  return m;
})();

function writeJSONL(file, rows) {
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
}

async function main() {
  const mode = process.argv[2] ?? 'gen';
  if (mode === 'check') {
    const dir = process.argv[3];
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    const t = tk.Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
    // Texts: the golden strings, or those of the files given after DIR (JSONL rows: their text, problem
    // and solution fields; JSON: every string value).
    const files = process.argv.slice(4);
    let texts = [];
    if (files.length === 0) {
      texts = fs.readFileSync(path.join(here, 'qwen2', 'golden.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).text);
    }
    const strings = (v) => (typeof v === 'string' ? [v] : v && typeof v === 'object' ? Object.values(v).flatMap(strings) : []);
    for (const f of files) {
      const body = fs.readFileSync(f, 'utf8');
      if (f.endsWith('.jsonl')) {
        for (const l of body.split('\n').filter(Boolean)) {
          const r = JSON.parse(l);
          for (const k of ['text', 'problem', 'solution']) if (typeof r[k] === 'string') texts.push(r[k]);
        }
      } else {
        texts.push(...strings(JSON.parse(body)));
      }
    }
    const rows = [];
    for (const text of texts) {
      const e = await t.encode(text, null, { addSpecialTokens: false });
      rows.push({ text, ids: e.getIds() });
    }
    writeJSONL(path.join(dir, 'golden_hf.jsonl'), rows);
    console.log(`check: ${rows.length} strings encoded by HF with ${dir}/tokenizer.json (vocab ${t.getVocabSize(true)}, ${json.model.merges.length} merges)`);
    return;
  }

  const problems = readProblems();
  // Golden real problems: every 24th, ~300, spread over all files.
  const real = problems.filter((_, i) => i % 24 === 7).map((p) => p.text);
  const tmp = fs.mkdtempSync('/tmp/tokgold-');
  const big = path.join(tmp, 'corpus.txt');
  fs.writeFileSync(big, problems.flatMap((p) => [p.text, ...p.extra]).join('\n') + '\n');

  // Trainer parity corpus: small and committed, so the Go test can retrain on it.
  fs.mkdirSync(path.join(here, 'train'), { recursive: true });
  const small = path.join(here, 'train', 'corpus.txt');
  fs.writeFileSync(small, problems.filter((_, i) => i % 40 === 3).map((p) => p.text).join('\n') + '\n' + hard.slice(0, 400).join('\n') + '\n');
  const hfSmall = train(baseJSON(QWEN2, { type: 'NFC' }), small);
  fs.writeFileSync(path.join(here, 'train', 'hf_merges.json'), JSON.stringify({
    note: 'HF BpeTrainer (default: vocab 30000, min_frequency 0, no special tokens) on corpus.txt, Qwen2 configuration, read by lines with their endings',
    vocab_size: Object.keys(hfSmall.model.vocab).length,
    merges: hfSmall.model.merges,
  }));

  const texts = [...hard, ...real];
  for (const fam of ['qwen2', 'llama3']) {
    let j;
    if (fam === 'qwen2') {
      j = truncate(train(baseJSON(QWEN2, { type: 'NFC' }), big), 2000, [
        { content: '<|endoftext|>' }, { content: '<|im_start|>' }, { content: '<|im_end|>' },
        { content: '<tool_call>', special: false },
        { content: 'Caf\u00e9', special: false, normalized: true },
      ], true);
      j.post_processor = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
    } else {
      const base = baseJSON(LLAMA3, null);
      base.pre_tokenizer.pretokenizers[1].trim_offsets = true;
      j = truncate(train(base, big), 2000, [
        { content: '<|begin_of_text|>' }, { content: '<|end_of_text|>' }, { content: '<|eot_id|>' },
        { content: '<|start_header_id|>' }, { content: '<|end_header_id|>' },
        { content: '<mask>', lstrip: true, rstrip: true },
        { content: '[[sw]]', single_word: true, special: false },
      ], false);
      j.model.ignore_merges = true;
      const bos = j.added_tokens[0];
      j.post_processor = {
        type: 'Sequence',
        processors: [
          { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
          {
            type: 'TemplateProcessing',
            single: [{ SpecialToken: { id: bos.content, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
            pair: [{ SpecialToken: { id: bos.content, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
              { SpecialToken: { id: bos.content, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
            special_tokens: { [bos.content]: { id: bos.content, ids: [bos.id], tokens: [bos.content] } },
          },
        ],
      };
    }
    const dir = path.join(here, fam);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(j));
    writeJSONL(path.join(dir, 'golden.jsonl'), await goldenFor(fam, j, dir, texts));
    writeJSONL(path.join(dir, 'decode.jsonl'), await decodeGolden(j));
    console.log(`${fam}: vocab ${Object.keys(j.model.vocab).length}+${j.added_tokens.length}, ${j.model.merges.length} merges, ${texts.length} golden strings`);
  }
}

await main();
