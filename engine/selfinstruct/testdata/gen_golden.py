# Generates python_golden.json: the behaviour of CPython's re / str methods
# and of rouge_score's tokenizer (re-stated below from rouge_score 0.1.2
# tokenize.py) on random adversarial strings. Run with CPython >= 3.8:
#   python3 testdata/gen_golden.py > testdata/python_golden.json
import json, random, re, string, sys

rnd = random.Random(20250523)
PIECES = ["1", "2", "12", "0", "\u0661", "\u0662", "\u00b2", "\u0969", ".", ". ", ".\n", " ", "  ", "\n", "\n\n",
          "\r\n", "\t", "\u00a0", "\u2003", "\u3000", "\x1c", "\x85", "\u200b", "a", "B", "x", "How", "What",
          "is", "the", "\u0130", "\u0131", "\u017f", "\u03a3", "\u03c3", "\u00df", "\ufb01", "\u01f0", "\u212a",
          "\u00e9", "$", "\\frac{1}{2}", "(", ":", "_", "-", "?", "image", "Images", "GRAPH", "map", "maps",
          "draw", "plot", "go to", "go  to", "file_", "Write a program", "write a program", "\u0130mage",
          "graph\u0301", "\u00e9map", "map\u00e9", "\u2460", "\u00bd"]

def rand_text(lo, hi):
    return "".join(rnd.choice(PIECES) for _ in range(rnd.randint(lo, hi)))

def numbered():
    parts = []
    if rnd.random() < 0.5:
        parts.append(rand_text(0, 4))
    for i in range(rnd.randint(0, 5)):
        sep = rnd.choice(["\n", "\n", "\n\n", " ", "\r\n", "\n "])
        parts.append(sep + str(rnd.randint(1, 20)) + rnd.choice([". ", ".", ".\n", ".  ", ".\u00a0"]) + rand_text(0, 12))
    if rnd.random() < 0.3:
        parts.append(rnd.choice(["\n", "\n\n", " ", "\n1.", "\n2. "]))
    return "".join(parts).lstrip("\n") if rnd.random() < 0.5 else "".join(parts)

RE = re.compile(r"\d+\.\s+(.*?)(?=\n\d+\.\s+|$)", re.DOTALL)
BLACKLIST = ["image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps", "draw", "plot", "go to"]

def rules(inst):
    if inst == "":
        return "Empty"
    n = len(inst.split())
    if n <= 3:
        return "TooShort"
    if n > 150:
        return "TooLong"
    if any(re.compile(r"\b({0})\b".format(w), flags=re.IGNORECASE).search(inst) for w in BLACKLIST):
        return "Keyword"
    if inst.startswith("Write a program"):
        return "Program"
    if inst[0] in string.punctuation:
        return "Punctuation"
    if not inst[0].isascii():
        return "NonASCII"
    return "Accepted"

def rouge_tokenize(text):
    text = text.lower()
    text = re.sub(r"[^a-z0-9]+", " ", text)
    tokens = re.split(r"\s+", text)
    return [x for x in tokens if re.match(r"^[a-z0-9]+$", x)]

def lcs(a, b):
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            t[i][j] = t[i-1][j-1] + 1 if a[i-1] == b[j-1] else max(t[i-1][j], t[i][j-1])
    return t[-1][-1]

def rouge_l(target, prediction):
    tt, pt = rouge_tokenize(target), rouge_tokenize(prediction)
    if not tt or not pt:
        return 0.0
    l = lcs(tt, pt)
    p, r = l / len(pt), l / len(tt)
    return 2 * p * r / (p + r) if p + r > 0 else 0.0

out = {"python": sys.version.split()[0], "parse": [], "clean": [], "rouge": []}
for _ in range(600):
    s = numbered()
    qs = [q.strip() for q in RE.findall(s)]
    out["parse"].append({"in": s, "out": qs})
for _ in range(600):
    s = rand_text(1, 30)
    official = re.sub(r"\s+", " ", s).strip().capitalize()
    c = re.sub(r"\s+", " ", s).strip()
    fixed = c[:1].capitalize() + c[1:]
    out["clean"].append({"in": s, "python": official, "first": fixed,
                         "rules_python": rules(official), "rules_first": rules(fixed)})
WORDS = ["what", "is", "the", "value", "of", "x", "2", "3", "sum", "\\frac{1}{2}", "If", "then", "find", "A", "b",
         "\u0130", "\u212a", "caf\u00e9", "x^2", "12!", "a_1", "(a+b)", "the", "the"]
for _ in range(400):
    a = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(0, 14)))
    b = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(0, 14)))
    out["rouge"].append({"a": a, "b": b, "ta": rouge_tokenize(a), "f": rouge_l(a, b), "fr": rouge_l(b, a)})
json.dump(out, sys.stdout, ensure_ascii=True, indent=0)
