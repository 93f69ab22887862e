package arith

import (
	"strings"
)

// A problem is a list of sentences. Every sentence is one of the templates
// below with its slots filled. The same table drives the generator (which
// renders templates) and the checker (which matches them), so every generated
// sentence parses by construction, and a model that recombines sentences,
// renames people or changes numbers still writes parsable text.
//
// Slots: {P} {Q} owners (a name, an agent like "the printer", or "it");
// {L} a list of owners ("Tom, Amy and Ben") or "they"; {N} {M} {K} numbers;
// {O} {C} {G} {U} nouns, {T} a time unit (upper case renders plural, lower
// case singular; parsing accepts either); {V+} {V-} {VR} {VD} verbs of a class
// in the third person, {v} any verb in the base form; {F} a fraction ("two
// thirds"); {X} a multiplier ("twice", "3 times", "half"); {D} a weekday;
// {E} an arithmetic expression (last slot only).

type kind uint8

const (
	kSet      kind = iota // P has N O
	kAdd                  // P gains N O (verb)
	kSub                  // P loses N O (verb)
	kGive                 // P gives N O to Q
	kTimes                // Q has X times as many O as P
	kMore                 // Q has N more O than P
	kFewer                // Q has N fewer O than P
	kGroups               // P has/buys K C with N O in each
	kHasC                 // P has K C of O (contents stated elsewhere)
	kPer                  // each C holds N O
	kShare                // P shares the O equally among K G
	kPack                 // P packs the O into C of N
	kFrac                 // P loses F of the O (verb), optionally to Q
	kFracGive             // P gives F of the O to Q
	kPrice                // each O costs N dollars
	kBuyAt                // P buys K O at N dollars each
	kSellAt               // P sells K O at N dollars each
	kRate                 // P does N U per T
	kRateDur              // P does N U per T for K T
	kDur                  // P works for K T

	qHave   // how many O does P have
	qSum    // how many O do P and Q have
	qAll    // how many O are there
	qDiff   // how many more O does P have than Q
	qEach   // how many O does each G get
	qRem    // how many O are left over
	qFill   // how many C does P fill
	qAct    // how many U does P (verb)
	qActIn  // how many U does P (verb) in K T
	qTake   // how many T does it take P to (verb) N U
	qSpend  // how much money does P spend
	qEarn   // how much money does P earn
	qCost   // what is the total cost
	qExpr   // what is E
	qFracOf // what is F of N
	numKinds
)

func (k kind) question() bool { return k >= qHave }

// templates lists, per kind, the sentence patterns. A leading "~" marks a
// pattern the checker accepts but the generator does not write (tolerance for
// close variants a model may produce).
var templates = map[kind][]string{
	kSet: {
		"{P} has {N} {O}.", "{P} had {N} {O}.", "{P} owns {N} {O}.", "{P} starts with {N} {O}.",
		"{P} has a collection of {N} {O}.", "There are {N} {O} in {P}'s bag.",
		"~{P} has got {N} {O}.", "~{P} started with {N} {O}.", "~{P} owned {N} {O}.", "~{P} has {N} {O} in total.",
	},
	kAdd: {
		"{P} {V+} {N} more {O}.", "{P} {V+} another {N} {O}.", "{P} {V+} {N} {O}.", "Later, {P} {V+} {N} more {O}.",
		"~{P} {V+} {N} extra {O}.", "~{P} {V+} {N} more {O} later.",
	},
	kSub: {
		"{P} {V-} {N} {O}.", "{P} {V-} {N} of the {O}.", "Then {P} {V-} {N} {O}.",
		"~{P} {V-} {N} of {O}.",
	},
	kGive: {
		"{P} gives {N} {O} to {Q}.", "{P} gives {Q} {N} {O}.", "{Q} gets {N} {O} from {P}.",
		"{P} hands {N} {O} to {Q}.", "{Q} receives {N} {O} from {P}.",
		"~{P} gives {N} of the {O} to {Q}.", "~{P} gave {N} {O} to {Q}.",
	},
	kTimes: {
		"{Q} has {X} as many {O} as {P}.", "{Q} has {X} as many {O} as {P} has.",
		"~{Q} owns {X} as many {O} as {P}.",
	},
	kMore: {
		"{Q} has {N} more {O} than {P}.", "{Q} has {N} more {O} than {P} has.",
		"~{Q} has {N} {O} more than {P}.",
	},
	kFewer: {
		"{Q} has {N} fewer {O} than {P}.", "{Q} has {N} fewer {O} than {P} has.",
		"~{Q} has {N} less {O} than {P}.", "~{Q} has {N} {O} fewer than {P}.",
	},
	kGroups: {
		"{P} has {K} {C} with {N} {O} in each {c}.", "{P} has {K} {C}, and each {c} has {N} {O}.",
		"{P} buys {K} {C} with {N} {O} in each {c}.", "{P} has {K} {C} of {N} {O} each.",
		"{P} has {K} {C}, each with {N} {O}.",
		"~{P} has {K} {C} and each {c} holds {N} {O}.", "~{P} has {K} {C} and each {c} contains {N} {O}.",
	},
	kHasC: {
		"{P} has {K} {C} of {O}.", "{P} buys {K} {C} of {O}.",
		"~{P} owns {K} {C} of {O}.",
	},
	kPer: {
		"Each {c} has {N} {O}.", "Each {c} holds {N} {O}.", "Each {c} contains {N} {O}.",
		"There are {N} {O} in each {c}.", "Every {c} has {N} {O}.",
		"~Every {c} holds {N} {O}.", "~Every {c} contains {N} {O}.", "~Each {c} has {N} {O} in it.",
	},
	kShare: {
		"{P} shares the {O} equally among {K} {G}.", "{P} divides the {O} equally among {K} {G}.",
		"{P} splits the {O} equally between {K} {G}.", "{P} shares the {O} equally between {K} {G}.",
		"~{P} shares the {O} among {K} {G}.", "~{P} divides the {O} among {K} {G}.",
		"~{P} shares the {O} equally with {K} {G}.",
	},
	kPack: {
		"{P} puts the {O} into {C} of {N}.", "{P} packs the {O} into {C} of {N}.",
		"{P} packs the {O} into {C} that hold {N} {O} each.", "{P} puts the {O} in {C} of {N} each.",
		"~{P} puts the {O} into {C} with {N} {O} in each {c}.", "~{P} packs the {O} in {C} of {N}.",
	},
	kFrac: {
		"{P} {V-} {F} of the {O}.", "Then {P} {V-} {F} of the {O}.",
		"~{P} {V-} {F} of {O}.",
	},
	kFracGive: {
		"{P} gives {F} of the {O} to {Q}.", "{P} gives {Q} {F} of the {O}.",
		"~{P} gives {F} of {O} to {Q}.",
	},
	kPrice: {
		"Each {o} costs {N} dollars.", "One {o} costs {N} dollars.", "{O} cost {N} dollars each.",
		"The price of one {o} is {N} dollars.", "A {o} costs {N} dollars.",
		"~The price of each {o} is {N} dollars.", "~Each {o} is {N} dollars.",
	},
	kBuyAt: {
		"{P} buys {K} {O} at {N} dollars each.", "{P} buys {K} {O} for {N} dollars each.",
		"~{P} bought {K} {O} at {N} dollars each.",
	},
	kSellAt: {
		"{P} sells {K} {O} at {N} dollars each.", "{P} sells {K} {O} for {N} dollars each.",
		"~{P} sold {K} {O} at {N} dollars each.",
	},
	kRate: {
		"{P} {VR} {N} {U} per {t}.", "{P} {VR} {N} {U} every {t}.", "{P} {VR} {N} {U} each {t}.",
		"~{P} {VR} {N} {U} in one {t}.", "~{P} {VR} {N} {U} an {t}.",
	},
	kRateDur: {
		"{P} {VR} {N} {U} per {t} for {K} {T}.", "{P} {VR} {N} {U} every {t} for {K} {T}.",
		"{P} {VR} {N} {U} each {t} for {K} {T}.",
	},
	kDur: {
		"{P} {VD} for {K} {T}.", "{P} {VD} {K} {T} on {D}.", "{P} {VD} for {K} {T} on {D}.",
		"~{P} {VD} {K} {T}.",
	},

	qHave: {
		"How many {O} does {P} have now?", "How many {O} does {P} have left?", "How many {O} does {P} have?",
		"How many {O} does {P} have in total?", "How many {O} does {P} end up with?",
		"What is the number of {O} that {P} has now?", "~How many {O} are left with {P}?",
		"~How many {O} does {P} have at the end?", "~How many {O} has {P} got?",
		"~How much money does {P} have left?", "~How much money does {P} have?", "~How much money is left?",
	},
	qSum: {
		"How many {O} do {L} have in total?", "How many {O} do {L} have altogether?",
		"What is the total number of {O} that {L} have?", "How many {O} do {L} have together?",
		"~How many {O} do {L} have?",
	},
	qAll: {
		"How many {O} are there in total?", "What is the total number of {O}?", "How many {O} are there altogether?",
		"~How many {O} are there?",
	},
	qDiff: {
		"How many more {O} does {P} have than {Q}?", "How many fewer {O} does {Q} have than {P}?",
		"~How many {O} more does {P} have than {Q}?",
	},
	qEach: {
		"How many {O} does each {g} get?", "How many {O} does each {g} receive?", "~How many {O} are in each {g}?",
		"~How many {O} will each {g} get?", "~How many {O} go in each {g}?",
	},
	qRem: {
		"How many {O} are left over?", "How many {O} does {P} have left over?", "How many {O} remain?",
		"~How many {O} are left?", "~How many {O} will be left over?",
	},
	qFill: {
		"How many {C} does {P} fill?", "How many {C} can {P} fill?", "How many full {C} are there?",
		"~How many {C} does {P} make?", "~How many full {C} does {P} have?",
	},
	qAct: {
		"How many {U} does {P} {v} in total?", "How many {U} does {P} {v}?",
		"What is the total number of {U} that {P} {VR}?",
	},
	qActIn: {
		"How many {U} does {P} {v} in {K} {T}?", "How many {U} can {P} {v} in {K} {T}?",
		"~How many {U} will {P} {v} in {K} {T}?",
	},
	qTake: {
		"How many {T} does it take {P} to {v} {N} {U}?", "How many {T} will it take {P} to {v} {N} {U}?",
		"How many {T} does {P} need to {v} {N} {U}?",
	},
	qSpend: {
		"How much money does {P} spend?", "How much does {P} spend in total?", "How many dollars does {P} spend?",
		"~How much money does {P} spend in total?",
	},
	qEarn: {
		"How much money does {P} earn?", "How many dollars does {P} earn in total?",
		"~How much does {P} earn?",
	},
	qCost: {
		"What is the total cost?", "How much do the items cost in total?",
		"~How much is the total cost?",
	},
	qExpr: {
		"What is {E}?", "What is the value of {E}?", "Compute {E}.", "Calculate {E}.", "Evaluate {E}.",
		"Find the value of {E}.",
		"~Find {E}.",
	},
	qFracOf: {
		"What is {F} of {N}?", "Find {F} of {N}.", "Compute {F} of {N}.",
		"~What is {F} of {N} {O}?", "~How much is {F} of {N}?",
	},
}

// A ptok is one compiled pattern element: a literal word or a slot.
type ptok struct {
	lit  string
	slot string // "" for literals
}

type pattern struct {
	kind kind
	text string // the template as written (without "~")
	gen  bool
	buys bool // a literal "buys": the statement is a purchase
	toks []ptok
}

var (
	patterns     []*pattern
	genTemplates [numKinds][]*pattern
	// grammarWords are the world's function words: a noun or name slot never
	// takes one, which keeps "How many" from being read as an object.
	grammarWords = map[string]bool{}
)

func init() {
	for k := kind(0); k < numKinds; k++ {
		for _, t := range templates[k] {
			p := &pattern{kind: k, text: strings.TrimPrefix(t, "~"), gen: !strings.HasPrefix(t, "~")}
			p.toks = compile(p.text)
			patterns = append(patterns, p)
			if p.gen {
				genTemplates[k] = append(genTemplates[k], p)
			}
			for _, tk := range p.toks {
				if tk.slot == "" {
					grammarWords[tk.lit] = true
					p.buys = p.buys || tk.lit == "buys" || tk.lit == "bought"
				}
			}
		}
	}
	for w := range dropWords {
		grammarWords[w] = true
	}
	for _, v := range verbs {
		for _, w := range strings.Fields(v.third + " " + v.base) {
			grammarWords[w] = true
		}
	}
	for w := range numWords {
		grammarWords[w] = true
	}
	for w := range denWords {
		grammarWords[w] = true
	}
	for _, w := range []string{"twice", "times", "it", "they", "and", "or", "not", "no", "never", "if", "x", "y", "n",
		"what", "how", "many", "much", "does", "do", "is", "are", "of", "in", "on", "to", "per", "each", "every"} {
		grammarWords[w] = true
	}
	for _, d := range days {
		grammarWords[strings.ToLower(d)] = true
	}
}

// compile turns a template into pattern tokens, normalised exactly like text.
func compile(t string) []ptok {
	var out []ptok
	for _, tk := range normalize(tokenize(t)) {
		if tk.kind == tSlot {
			out = append(out, ptok{slot: tk.s})
		} else {
			out = append(out, ptok{lit: tk.low})
		}
	}
	return out
}

type tkind uint8

const (
	tWord  tkind = iota
	tNum         // a non-negative integer
	tOp          // + - * / ( )
	tComma       // ,
	tEnd         // . ? !
	tPoss        // 's
	tSlot        // {X} in templates only
	tOther       // anything else: the world has no use for it
)

type token struct {
	kind tkind
	s    string // as written
	low  string
	num  int64
}

// maxNumber bounds numbers the checker accepts, so products stay far from
// int64 overflow.
const maxNumber = 1_000_000

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// tokenize splits text into words, numbers, operators and punctuation. A
// sentence end is a . ? or ! that is not inside a number.
func tokenize(s string) []token {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '{':
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				out = append(out, token{kind: tOther, s: s[i:]})
				return out
			}
			out = append(out, token{kind: tSlot, s: s[i+1 : i+j]})
			i += j + 1
		case isLetter(c):
			j := i
			for j < len(s) && isLetter(s[j]) {
				j++
			}
			w := s[i:j]
			out = append(out, token{kind: tWord, s: w, low: strings.ToLower(w)})
			i = j
		case isDigit(c):
			j := i
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			// Thousands separators: 1,200 is one number; "3, 4" is two.
			for j+3 < len(s) && s[j] == ',' && isDigit(s[j+1]) && isDigit(s[j+2]) && isDigit(s[j+3]) &&
				(j+4 == len(s) || !isDigit(s[j+4])) {
				j += 4
			}
			if j < len(s) && (isLetter(s[j]) || s[j] == '.' && j+1 < len(s) && isDigit(s[j+1])) {
				// 3x, 2.5: not numbers of this world.
				for j < len(s) && (isLetter(s[j]) || isDigit(s[j]) || s[j] == '.') {
					j++
				}
				out = append(out, token{kind: tOther, s: s[i:j]})
				i = j
				continue
			}
			lit := strings.ReplaceAll(s[i:j], ",", "")
			var n int64
			big := len(lit) > 9
			for k := 0; k < len(lit) && !big; k++ {
				n = n*10 + int64(lit[k]-'0')
			}
			if big || n > maxNumber {
				out = append(out, token{kind: tOther, s: s[i:j]})
			} else {
				out = append(out, token{kind: tNum, s: s[i:j], low: lit, num: n})
			}
			i = j
		case c == '+' || c == '-' || c == '*' || c == '/' || c == '(' || c == ')':
			out = append(out, token{kind: tOp, s: s[i : i+1], low: s[i : i+1]})
			i++
		case c == ',':
			out = append(out, token{kind: tComma, s: ","})
			i++
		case c == '.' || c == '?' || c == '!':
			out = append(out, token{kind: tEnd, s: s[i : i+1], low: s[i : i+1]})
			i++
		case c == '\'' && i+1 < len(s) && s[i+1] == 's' && (i+2 == len(s) || !isLetter(s[i+2])):
			out = append(out, token{kind: tPoss, s: "'s", low: "'s"})
			i += 2
		default:
			j := i + 1
			for j < len(s) && s[j] >= 0x80 && s[j] < 0xC0 {
				j++ // keep a UTF-8 sequence in one token
			}
			out = append(out, token{kind: tOther, s: s[i:j], low: s[i:j]})
			i = j
		}
	}
	return out
}

// normalize removes the meaningless words and phrases and the commas, so that
// templates and text are compared on content only.
func normalize(in []token) []token {
	out := make([]token, 0, len(in))
	for _, t := range in {
		if t.kind == tComma || t.kind == tEnd || t.kind == tWord && dropWords[t.low] {
			continue
		}
		out = append(out, t)
	}
	for _, ph := range dropPhrases {
		for i := 0; i+len(ph) <= len(out); i++ {
			ok := true
			for k, w := range ph {
				if out[i+k].kind != tWord || out[i+k].low != w {
					ok = false
					break
				}
			}
			if ok {
				out = append(out[:i], out[i+len(ph):]...)
				i--
			}
		}
	}
	return out
}
