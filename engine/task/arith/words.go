package arith

import "strings"

// The world's lexicon. It is deliberately small (a few hundred words) so that
// a tiny model with a 1–2k-token vocabulary can learn to read and write it.

// names are the people of the world: short, diverse, one token each.
var names = []string{
	"Tom", "Amy", "Ben", "Lily", "Sam", "Mia", "Leo", "Zoe", "Max", "Emma",
	"Noah", "Ava", "Omar", "Priya", "Kenji", "Sofia", "Diego", "Aisha", "Chen", "Fatima",
	"Lucas", "Nina", "Ravi", "Elena", "Kofi", "Yuki", "Hana", "Ali", "Rosa", "Jack",
	"Grace", "Ivan", "Maya", "Tariq", "Lena", "Hugo", "Ines", "Kai", "Sara", "Jon",
}

// Noun categories: they decide which verbs and templates make sense.
const (
	catFood = iota
	catThing
	catContainer
	catGroup
	catUnit
	catTime
	catAgent
)

type noun struct {
	sing, plural string
	cat          int
}

var nouns = []noun{
	{"apple", "apples", catFood}, {"orange", "oranges", catFood}, {"banana", "bananas", catFood},
	{"cookie", "cookies", catFood}, {"candy", "candies", catFood}, {"cupcake", "cupcakes", catFood},
	{"egg", "eggs", catFood}, {"muffin", "muffins", catFood}, {"pear", "pears", catFood},
	{"peach", "peaches", catFood}, {"lemon", "lemons", catFood}, {"plum", "plums", catFood},
	{"strawberry", "strawberries", catFood}, {"carrot", "carrots", catFood},

	{"marble", "marbles", catThing}, {"sticker", "stickers", catThing}, {"card", "cards", catThing},
	{"pencil", "pencils", catThing}, {"book", "books", catThing}, {"coin", "coins", catThing},
	{"stamp", "stamps", catThing}, {"balloon", "balloons", catThing}, {"toy", "toys", catThing},
	{"shell", "shells", catThing}, {"crayon", "crayons", catThing}, {"bead", "beads", catThing},
	{"button", "buttons", catThing}, {"flower", "flowers", catThing}, {"rock", "rocks", catThing},
	{"ball", "balls", catThing}, {"pen", "pens", catThing}, {"notebook", "notebooks", catThing},
	{"shirt", "shirts", catThing}, {"hat", "hats", catThing}, {"cup", "cups", catThing},
	{"plate", "plates", catThing}, {"brick", "bricks", catThing}, {"ticket", "tickets", catThing},

	{"box", "boxes", catContainer}, {"bag", "bags", catContainer}, {"basket", "baskets", catContainer},
	{"pack", "packs", catContainer}, {"crate", "crates", catContainer}, {"jar", "jars", catContainer},
	{"tray", "trays", catContainer}, {"carton", "cartons", catContainer}, {"shelf", "shelves", catContainer},
	{"bucket", "buckets", catContainer},

	{"friend", "friends", catGroup}, {"student", "students", catGroup}, {"child", "children", catGroup},
	{"team", "teams", catGroup}, {"kid", "kids", catGroup}, {"classmate", "classmates", catGroup},
	{"neighbor", "neighbors", catGroup}, {"cousin", "cousins", catGroup},

	{"page", "pages", catUnit}, {"km", "km", catUnit}, {"mile", "miles", catUnit},
	{"dollar", "dollars", catUnit}, {"word", "words", catUnit}, {"liter", "liters", catUnit},
	{"bottle", "bottles", catUnit}, {"meter", "meters", catUnit},

	{"minute", "minutes", catTime}, {"hour", "hours", catTime}, {"day", "days", catTime},
	{"week", "weeks", catTime},

	{"car", "cars", catAgent}, {"train", "trains", catAgent}, {"bus", "buses", catAgent},
	{"truck", "trucks", catAgent}, {"printer", "printers", catAgent}, {"machine", "machines", catAgent},
	{"factory", "factories", catAgent}, {"bakery", "bakeries", catAgent}, {"farm", "farms", catAgent},
	{"store", "stores", catAgent}, {"shop", "shops", catAgent}, {"pump", "pumps", catAgent},
	{"school", "schools", catAgent}, {"library", "libraries", catAgent},
}

// nounBySing and nounByForm index nouns by their singular and by either form.
var (
	nounBySing = map[string]*noun{}
	nounByForm = map[string]*noun{}
	nameSet    = map[string]bool{}
)

func init() {
	for i := range nouns {
		n := &nouns[i]
		nounBySing[n.sing] = n
		nounByForm[n.sing] = n
		nounByForm[n.plural] = n
	}
	for _, n := range names {
		nameSet[strings.ToLower(n)] = true
	}
}

func nounsOf(cat int) []string {
	var out []string
	for _, n := range nouns {
		if n.cat == cat {
			out = append(out, n.sing)
		}
	}
	return out
}

// singular maps any form of a noun to its key. Unknown words (a model may
// invent "mangoes") are singularised by the usual English rules so that the
// same noun written twice gets the same key.
func singular(w string) string {
	if n, ok := nounByForm[w]; ok {
		return n.sing
	}
	switch {
	case strings.HasSuffix(w, "ies") && len(w) > 4:
		return w[:len(w)-3] + "y"
	case strings.HasSuffix(w, "ches"), strings.HasSuffix(w, "shes"), strings.HasSuffix(w, "xes"),
		strings.HasSuffix(w, "sses"), strings.HasSuffix(w, "oes"):
		return w[:len(w)-2]
	case strings.HasSuffix(w, "ss"), strings.HasSuffix(w, "us"):
		return w
	case strings.HasSuffix(w, "s") && len(w) > 3:
		return w[:len(w)-1]
	}
	return w
}

// form renders a noun key for a count: singular for exactly one.
func form(key string, plural bool) string {
	n, ok := nounBySing[key]
	if !ok {
		if plural {
			return key + "s"
		}
		return key
	}
	if plural {
		return n.plural
	}
	return n.sing
}

// Verb classes. A verb may belong to several (earn adds money and is a rate).
const (
	vAdd  = 1 << iota // gains a quantity: buys, finds
	vSub              // loses a quantity: eats, gives away
	vRate             // does something at a rate: prints, travels
	vDur              // spends time at an activity: works, reads
)

type verb struct {
	base, third string
	class       int
}

var verbs = []verb{
	{"buy", "buys", vAdd}, {"find", "finds", vAdd}, {"get", "gets", vAdd},
	{"receive", "receives", vAdd}, {"pick", "picks", vAdd | vRate}, {"collect", "collects", vAdd | vRate},
	{"win", "wins", vAdd}, {"bake", "bakes", vAdd | vRate | vDur}, {"make", "makes", vAdd | vRate},
	{"earn", "earns", vAdd | vRate}, {"save", "saves", vRate},

	{"eat", "eats", vSub}, {"give away", "gives away", vSub}, {"lose", "loses", vSub},
	{"sell", "sells", vSub}, {"use", "uses", vSub}, {"spend", "spends", vSub},
	{"break", "breaks", vSub}, {"donate", "donates", vSub},

	{"print", "prints", vRate | vDur}, {"read", "reads", vRate | vDur}, {"travel", "travels", vRate | vDur},
	{"walk", "walks", vRate | vDur}, {"run", "runs", vRate | vDur}, {"drive", "drives", vRate | vDur},
	{"type", "types", vRate | vDur}, {"write", "writes", vRate | vDur}, {"fill", "fills", vRate},
	{"pump", "pumps", vRate | vDur}, {"produce", "produces", vRate},
	{"work", "works", vDur},
}

var verbByBase = map[string]*verb{}

func init() {
	for i := range verbs {
		verbByBase[verbs[i].base] = &verbs[i]
	}
}

// Fractions as words. Numerators and denominators are parsed independently so
// that "three fifths" works even if the generator never wrote it.
var numWords = map[string]int64{
	"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}

var denWords = map[string]int64{
	"half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4, "fourth": 4, "fourths": 4,
	"fifth": 5, "fifths": 5, "sixth": 6, "sixths": 6, "eighth": 8, "eighths": 8, "tenth": 10, "tenths": 10,
}

var numberName = []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"}

var denName = map[int64][2]string{
	2: {"half", "halves"}, 3: {"third", "thirds"}, 4: {"quarter", "quarters"}, 5: {"fifth", "fifths"},
	6: {"sixth", "sixths"}, 8: {"eighth", "eighths"}, 10: {"tenth", "tenths"},
}

var days = []string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}

// Minutes in each time unit, for rate questions that change unit.
var minutesIn = map[string]int64{"minute": 1, "hour": 60, "day": 1440, "week": 10080}

// dropWords carry no meaning in this world (articles, possessives, "then",
// "now"); the parser removes them from templates and text alike, which makes it
// tolerant of their presence or absence.
var dropWords = map[string]bool{
	"a": true, "an": true, "the": true, "his": true, "her": true, "their": true, "then": true,
	"also": true, "now": true, "still": true, "later": true, "finally": true, "first": true,
	"next": true, "altogether": true, "together": true, "remaining": true, "all": true,
	"so": true, "afterwards": true, "today": true, "red": true, "blue": true, "green": true,
	"yellow": true, "big": true, "small": true, "new": true, "old": true, "fresh": true,
}

// dropPhrases are multi-word fillers (after dropWords are gone).
var dropPhrases = [][]string{{"in", "total"}, {"in", "all"}, {"after", "that"}, {"at", "end"}}
