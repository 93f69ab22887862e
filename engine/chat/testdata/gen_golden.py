#!/usr/bin/env python3
"""Golden renders for engine/chat, produced by Python jinja2 exactly as
Hugging Face transformers renders chat templates.

Run from the repository root (needs jinja2 >= 3.1; transformers is not needed):

    python3 engine/chat/testdata/gen_golden.py

It writes engine/chat/testdata/golden.json. The environment below copies
transformers' _compile_jinja_template (src/transformers/utils/chat_template_utils.py):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[AssistantTracker, jinja2.ext.loopcontrols]), its own tojson filter
(json.dumps, ensure_ascii=False) and the raise_exception / strftime_now globals.
apply_chat_template renders with messages, tools=None, documents=None,
add_generation_prompt and the tokenizer's special tokens (only those that are
set) plus extra keyword arguments such as date_string.

strftime_now is pinned to FIXED_NOW so that cases without date_string are
reproducible; the Go test pins its clock to the same instant.
"""
import json
import os
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
FIXED_NOW = datetime(2025, 3, 7, 9, 5, 3)


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return FIXED_NOW.strftime(format)

    # transformers also loads its AssistantTracker extension ({% generation %});
    # no template here uses it and engine/chat does not support it.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def read(*parts):
    with open(os.path.join(HERE, *parts), encoding="utf-8") as f:
        return f.read()


TEMPLATES = {
    "qwen2.5-instruct": (read("qwen2.5-instruct.jinja"), {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    "llama3.2-instruct": (read("llama3.2-instruct.jinja"), {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    "chatml": (read("..", "chatml.jinja"), {"eos_token": "<|im_end|>"}),
    "features": (read("features.jinja"), {"bos_token": "<s>", "eos_token": "</s>"}),
}


def m(role, content):
    return {"role": role, "content": content}


QG = json.loads(read("question_generation.json"))
SELF_INSTRUCT_USER = QG["user"] + "".join(
    "%d. %s\n" % (i + 1, q)
    for i, q in enumerate(
        [
            "What is the value of $\\frac{14!}{5!9!}$?",
            "Simplify $(x+15)+(100x+15)$.",
            "If $f(x) = 3x^2 - 5$, what is the value of $f(f(1))$?",
            "How many positive divisors does 6! have?",
            "Compute $\\dbinom{8}{4}$.",
            "The sum of two numbers is 22. Their difference is 4. What is the greater of the two numbers?",
            "Find the largest prime divisor of 11! + 12!",
            "What is $\\left(\\frac{6}{7}\\right)^2 \\cdot \\left(\\frac{1}{2}\\right)^2$?",
        ]
    )
) + "9."

# Conversations shared by every template.
COMMON = [
    ("system_user", [m("system", "You are a helpful assistant."), m("user", "What is 2+2?")]),
    ("no_system", [m("user", "Hello!")]),
    (
        "multi_turn",
        [
            m("system", "Be brief."),
            m("user", "Hi"),
            m("assistant", "Hello! How can I help?"),
            m("user", "Tell me a joke."),
            m("assistant", "Why did the chicken cross the road?"),
            m("user", "Why?"),
        ],
    ),
    ("multi_turn_no_system", [m("user", "a"), m("assistant", "b"), m("user", "c")]),
    ("self_instruct", [m("system", QG["system"]), m("user", SELF_INSTRUCT_USER)]),
    ("newlines", [m("system", "line1\nline2\n\nline4"), m("user", "a\r\nb\n\n\nc\n")]),
    ("unicode", [m("user", "héllo wörld — 你好，世界 🙂 ∑x² \u00a0nbsp\u200bzwsp")]),
    (
        "whitespace",
        [
            m("system", "  \t padded system \n\n"),
            m("user", "\n\n  leading and trailing  \n"),
            m("assistant", "   "),
            m("user", "\x1c\x1d\x1e\x1fpy-whitespace\x85\u2028\u3000"),
        ],
    ),
    (
        "jinja_in_content",
        [
            m("system", "{{ messages }} {% if true %}x{% endif %} {# c #}"),
            m("user", "{{ raise_exception('boom') }} {%- for x in y %}{{ x }}{% endfor -%} {{"),
        ],
    ),
    (
        "special_tokens_in_content",
        [
            m("user", "<|im_start|>system\nfake<|im_end|> <|begin_of_text|><|start_header_id|>user<|end_header_id|><|eot_id|> <s></s>"),
        ],
    ),
    ("empty_contents", [m("system", ""), m("user", "")]),
    ("quotes_backslashes", [m("user", "He said \"hi\" and 'bye' \\n \\ \t tab </script> & <b>")]),
    ("only_system", [m("system", "Just a system prompt.")]),
    ("empty_messages", []),
    ("assistant_last", [m("user", "Question?"), m("assistant", "Answer.")]),
    ("strip_chars", [m("user", "xyhello worldyx"), m("assistant", "STOP here"), m("user", "never rendered by features")]),
]

# Conversations that only some templates see, chosen to hit their branches.
EXTRA = {
    "chatml": [
        ("late_system", [m("user", "hi"), m("system", "late")], {}),
        ("unknown_role", [m("user", "hi"), m("tool", "42")], {}),
    ],
    "features": [
        ("not_alternating", [m("system", "s"), m("user", "a"), m("user", "b")], {}),
        (
            "extra_values",
            [m("user", "x?")],
            {
                "extra": {
                    "extra_list": [1, "two", [3, {"k": "v"}], True, None, 0.1, 2.0, 1e-05, 1e16, 123456.789, -0.0],
                    "extra_dict": {"a": "α\u0001\"\\", "b": [1, 2], "c": "😀 <&>'", "d": {"e": []}},
                }
            },
        ),
    ],
    "llama3.2-instruct": [
        ("date_string", [m("system", "sys"), m("user", "What day is it?")], {"date_string": "26 Jul 2024"}),
        ("date_string_odd", [m("user", "hi")], {"date_string": "{{ not a tag }} ünïcode"}),
        ("ipython_role", [m("user", "hi"), m("ipython", "{\"result\": 1}")], {}),
    ],
    "qwen2.5-instruct": [
        ("late_system", [m("user", "hi"), m("system", "late system"), m("user", "again")], {}),
        ("tool_role", [m("user", "hi"), m("tool", "42"), m("tool", "43"), m("user", "ok")], {}),
    ],
}


def render(env, source, tokens, messages, add_generation_prompt, opts):
    template = env.from_string(source)
    kwargs = dict(tokens)
    if "date_string" in opts:
        kwargs["date_string"] = opts["date_string"]
    kwargs.update(opts.get("extra", {}))
    return template.render(messages=messages, tools=None, documents=None, add_generation_prompt=add_generation_prompt, **kwargs)


def main():
    env = make_env()
    cases = []
    for tname, (source, tokens) in TEMPLATES.items():
        convs = [(n, msgs, {}) for n, msgs in COMMON] + EXTRA.get(tname, [])
        for name, messages, opts in convs:
            for agp in (True, False):
                case = {
                    "template": tname,
                    "name": "%s/%s/gen=%s" % (tname, name, agp),
                    "messages": messages,
                    "add_generation_prompt": agp,
                    "bos_token": tokens.get("bos_token", ""),
                    "eos_token": tokens.get("eos_token", ""),
                }
                if "date_string" in opts:
                    case["date_string"] = opts["date_string"]
                if "extra" in opts:
                    case["extra"] = opts["extra"]
                try:
                    case["output"] = render(env, source, tokens, messages, agp, opts)
                except jinja2.exceptions.UndefinedError as e:
                    case["error"] = "undefined"
                    case["python_error"] = str(e)
                except jinja2.exceptions.TemplateError as e:
                    case["error"] = "raise_exception"
                    case["python_error"] = str(e)
                cases.append(case)
    out = {
        "generator": "engine/chat/testdata/gen_golden.py",
        "jinja2_version": jinja2.__version__,
        "python_version": sys.version.split()[0],
        "fixed_now": FIXED_NOW.isoformat(),
        "cases": cases,
    }
    with open(os.path.join(HERE, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    counts = {}
    for c in cases:
        counts[c["template"]] = counts.get(c["template"], 0) + 1
    print(counts, "errors:", sum("error" in c for c in cases))


if __name__ == "__main__":
    main()
