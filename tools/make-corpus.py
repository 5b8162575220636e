#!/usr/bin/env python3
"""Writes a synthetic English-like pretraining corpus and a downstream
plausibility task, both generated from a hand-written probabilistic grammar.

    python3 tools/make-corpus.py --corpus data/corpus.txt --task data/task \\
        [--sentences 100000] [--seed 1] [--train 2000] [--dev 500]

Every word and template below was written for vkpeft; nothing is taken from
a data set or a book, so the output is license-clean by construction. The
output depends only on the arguments (random.Random(seed), no set iteration),
and every file is written atomically (a temporary file renamed into place).

The world
---------
Five word classes carry hidden attributes that only co-occurrence reveals:

- animals, each with a diet (herbivore or carnivore) and a climate zone
  (hot, cold, wet, mild) where it lives;
- foods, each in a category: fruit, fodder, meat or dish. People eat fruit,
  meat and dishes; herbivores eat fruit and fodder; carnivores eat meat;
- tools, each with one action verb and the things that verb acts on
  (a hammer nails planks, a net catches fish); trades keep certain tools;
- places, each in one climate zone;
- weather words, each in one climate zone (dusty is hot, icy is cold).

Colours and sizes are free adjectives; people are named or named by trade.

The corpus (one sentence per line) states only facts that hold in this
world: animals eating their foods, what animals never eat, people using tools
for their actions, which trade keeps which tool, the weather of places, where
animals live, with singular/plural agreement, present and past tense,
adjectives, relative clauses ("the goat that lives in the valley eats
clover"), negation ("it is never icy in the desert", "you cannot dig a ditch
with a broom") and coordination.

The downstream task
-------------------
Each example is one sentence in a fixed frame, labelled "plausible" or
"implausible" by whether it agrees with the world:

- eat:     "<name or the [<adjective>] animal> ate <object>."
                                                 subject's diet vs object
- tool:    "<person> used the <tool> to <verb> the <thing>."  tool vs verb
- weather: "[<time>,] it is/was <weather> in the <place> [<time>]."
                                                 zones of both words
- habitat: "the/a [<adjective>] <animal> lives/lived in the <place>."
                                                 zones of both words

Labels are balanced per relation and drawn before the words, so no single
word of the frame, on its own, predicts the label. A quarter of each class's
words is held out of train (HELD_OUT below): train sentences use only the
other words; every dev sentence puts a held-out word in the slot that decides
its label (eat: the object; tool: the tool and the verb; weather: the place;
habitat: the animal). Every held-out word is common in the corpus. A frozen
randomly initialised encoder gives held-out words random embeddings that no
downstream training touches, so any delta on it stays near chance on dev; an
encoder pretrained with masked-LM on the corpus has learned which class,
diet, zone or action a held-out word has and can transfer what the delta
learned on train. Each JSONL line holds "text", "label", "relation" and
"pair" (the deciding words, "relation:word+word"); no dev pair occurs in
train.
"""
import argparse
import json
import os
import random
import sys

ZONES = ["hot", "cold", "wet", "mild"]

# name: (diet, zone)
ANIMALS = {
    "camel": ("herbivore", "hot"), "lizard": ("carnivore", "hot"),
    "vulture": ("carnivore", "hot"), "gazelle": ("herbivore", "hot"),
    "yak": ("herbivore", "cold"), "wolf": ("carnivore", "cold"),
    "seal": ("carnivore", "cold"), "reindeer": ("herbivore", "cold"),
    "frog": ("carnivore", "wet"), "beaver": ("herbivore", "wet"),
    "heron": ("carnivore", "wet"), "hippo": ("herbivore", "wet"),
    "sheep": ("herbivore", "mild"), "fox": ("carnivore", "mild"),
    "horse": ("herbivore", "mild"), "owl": ("carnivore", "mild"),
    "rabbit": ("herbivore", "mild"), "goat": ("herbivore", "cold"),
}

# name: (category, mass noun)
FOODS = {
    "apple": ("fruit", False), "pear": ("fruit", False), "plum": ("fruit", False),
    "berry": ("fruit", False), "cherry": ("fruit", False), "melon": ("fruit", False),
    "grass": ("fodder", True), "hay": ("fodder", True), "clover": ("fodder", True),
    "oats": ("fodder", True), "turnip": ("fodder", False), "acorn": ("fodder", False),
    "fish": ("meat", False), "meat": ("meat", True), "egg": ("meat", False),
    "shrimp": ("meat", False), "crab": ("meat", False), "mussel": ("meat", False),
    "bread": ("dish", True), "soup": ("dish", True), "cheese": ("dish", True),
    "cake": ("dish", False), "rice": ("dish", True), "pie": ("dish", False),
    "stew": ("dish", True), "porridge": ("dish", True),
}

DIETS = {
    "person": ("fruit", "meat", "dish"),
    "herbivore": ("fruit", "fodder"),
    "carnivore": ("meat",),
}

# verb forms: base, third person singular, past, -ing
VERBS = {
    "nail": ("nail", "nails", "nailed", "nailing"),
    "chop": ("chop", "chops", "chopped", "chopping"),
    "slice": ("slice", "slices", "sliced", "slicing"),
    "sew": ("sew", "sews", "sewed", "sewing"),
    "dig": ("dig", "digs", "dug", "digging"),
    "paint": ("paint", "paints", "painted", "painting"),
    "sweep": ("sweep", "sweeps", "swept", "sweeping"),
    "tie": ("tie", "ties", "tied", "tying"),
    "catch": ("catch", "catches", "caught", "catching"),
    "bake": ("bake", "bakes", "baked", "baking"),
    "boil": ("boil", "boils", "boiled", "boiling"),
    "climb": ("climb", "climbs", "climbed", "climbing"),
    "cut": ("cut", "cuts", "cut", "cutting"),
    "break": ("break", "breaks", "broke", "breaking"),
    "reap": ("reap", "reaps", "reaped", "reaping"),
    "light": ("light", "lights", "lit", "lighting"),
}

# tool: (verb, things the verb acts on)
TOOLS = {
    "hammer": ("nail", ["plank", "shelf", "crate"]),
    "axe": ("chop", ["log", "branch", "stump"]),
    "knife": ("slice", ["loaf", "onion", "ham"]),
    "needle": ("sew", ["shirt", "coat", "sail"]),
    "spade": ("dig", ["hole", "ditch", "trench"]),
    "brush": ("paint", ["fence", "door", "wall"]),
    "broom": ("sweep", ["floor", "yard", "porch"]),
    "rope": ("tie", ["boat", "bundle", "raft"]),
    "net": ("catch", ["trout", "eel", "minnow"]),
    "oven": ("bake", ["tart", "bun", "biscuit"]),
    "kettle": ("boil", ["water", "milk", "tea"]),
    "ladder": ("climb", ["roof", "tower", "mast"]),
    "saw": ("cut", ["board", "beam", "pole"]),
    "pick": ("break", ["rock", "stone", "ice"]),
    "sickle": ("reap", ["wheat", "barley", "rye"]),
    "lantern": ("light", ["path", "cellar", "tunnel"]),
}

TRADES = {
    "carpenter": ["hammer", "saw", "ladder"], "woodcutter": ["axe", "saw", "rope"],
    "cook": ["knife", "kettle", "oven"], "baker": ["oven", "knife"],
    "tailor": ["needle"], "gardener": ["spade", "sickle", "broom"],
    "painter": ["brush", "ladder"], "fisher": ["net", "rope"],
    "miner": ["pick", "lantern"], "farmer": ["sickle", "spade", "rope"],
    "cleaner": ["broom", "kettle"], "sailor": ["rope", "lantern", "net"],
}

PLACES = {
    "desert": "hot", "canyon": "hot", "dunes": "hot", "savanna": "hot",
    "glacier": "cold", "tundra": "cold", "peak": "cold", "fjord": "cold",
    "swamp": "wet", "marsh": "wet", "jungle": "wet", "bog": "wet",
    "meadow": "mild", "valley": "mild", "orchard": "mild", "garden": "mild",
}

WEATHER = {
    "hot": "hot", "dry": "hot", "dusty": "hot", "scorching": "hot",
    "cold": "cold", "snowy": "cold", "icy": "cold", "frosty": "cold",
    "rainy": "wet", "damp": "wet", "misty": "wet", "humid": "wet",
    "mild": "mild", "breezy": "mild", "pleasant": "mild", "calm": "mild",
}

# name: pronoun
PEOPLE = {
    "anna": "she", "bram": "he", "cora": "she", "dario": "he", "elin": "she",
    "femi": "he", "greta": "she", "hugo": "he", "ines": "she", "jonas": "he",
    "kira": "she", "lars": "he", "mona": "she", "nils": "he", "olga": "she",
    "pavel": "he",
}

# Things the tools act on that take no article and no plural.
MASS_THINGS = {"water", "milk", "tea", "ice", "wheat", "barley", "rye", "ham"}
COLOURS = ["red", "blue", "green", "yellow", "brown", "grey", "white", "black"]
SIZES = ["big", "small", "old", "little"]
LIVING_SIZES = ["young", "tall"]  # only for animals and people
TIMES = ["today", "yesterday", "in the morning", "at night", "all winter", "all summer",
         "in spring", "every day"]

IRREGULAR_PLURALS = {
    "sheep": "sheep", "reindeer": "reindeer", "fish": "fish", "shrimp": "shrimp",
    "wolf": "wolves", "knife": "knives", "shelf": "shelves", "loaf": "loaves",
    "berry": "berries", "cherry": "cherries", "ferry": "ferries", "dunes": "dunes",
    "oats": "oats", "mass": "mass",
}


def held_out(names):
    """Every fourth word of a class, in the order written above, is held out."""
    return [n for i, n in enumerate(names) if i % 4 == 3]


def held_out_by(table, key):
    """A quarter of each group (by `key`) so every group keeps held-out words."""
    out = []
    for group in sorted({key(v) for v in table.values()}):
        members = [n for n, v in table.items() if key(v) == group]
        out += members[3::4] or members[-1:]
    return out


HELD_OUT = {
    "animal": set(held_out_by(ANIMALS, lambda v: v[1])),
    "food": set(held_out_by(FOODS, lambda v: v[0])),
    "tool": set(held_out(list(TOOLS))),
    "place": set(held_out_by(PLACES, lambda v: v)),
    "weather": set(held_out_by(WEATHER, lambda v: v)),
}


def plural(noun):
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def capitalise(words):
    """Joins words into a sentence: capital first letter and names, no space
    before a comma."""
    text = " ".join(w.capitalize() if w in PEOPLE else w for w in words).replace(" ,", ",")
    return text[0].upper() + text[1:]


def verb_form(verb, plural_subject, tense):
    base, third, past, _ = VERBS[verb] if verb in VERBS else verb
    if tense == "past":
        return past
    return base if plural_subject else third


EAT = ("eat", "eats", "ate", "eating")
LIVE = ("live", "lives", "lived", "living")
USE = ("use", "uses", "used", "using")
KEEP = ("keep", "keeps", "kept", "keeping")


def conj(forms, plural_subject, tense):
    if tense == "past":
        return forms[2]
    return forms[0] if plural_subject else forms[1]


class Grammar:
    """One sentence per call of sentence(); r is the only source of chance."""

    def __init__(self, r):
        self.r = r

    def pick(self, seq):
        return seq[self.r.randrange(len(seq))]

    def chance(self, p):
        return self.r.random() < p

    def adjective(self, noun):
        if noun in ANIMALS or noun in TRADES:
            return self.pick(SIZES + LIVING_SIZES if noun in TRADES or self.chance(0.5) else COLOURS)
        return self.pick(COLOURS if self.chance(0.5) else SIZES)

    def np(self, noun, number=None, definite=None, adjective=0.3):
        """A noun phrase; returns (words, is_plural)."""
        if number is None:
            number = self.chance(0.35)
        if definite is None:
            definite = self.chance(0.6)
        if noun in MASS_THINGS:
            number = False
        words = [self.adjective(noun)] if self.chance(adjective) else []
        words.append(plural(noun) if number else noun)
        if definite:
            return ["the"] + words, number
        if number or noun in MASS_THINGS:
            return words, number
        return [article(words[0])] + words, number

    def food_np(self, food):
        if FOODS[food][1]:
            pre = self.pick([[], ["the"], ["some"], ["fresh"], ["the", "warm"]])
            return pre + [food]
        return self.np(food, adjective=0.2)[0]

    def animal_subject(self, animal):
        return self.np(animal, definite=self.chance(0.7))

    def person_subject(self):
        if self.chance(0.5):
            return [self.pick(list(PEOPLE))], False
        return self.np(self.pick(list(TRADES)), adjective=0.2)

    def tense(self):
        return "past" if self.chance(0.4) else "present"

    def diet_foods(self, diet, good=True):
        cats = DIETS[diet]
        return [f for f, (c, _) in FOODS.items() if (c in cats) == good]

    # --- sentence families ------------------------------------------------
    def animal_eats(self):
        animal = self.pick(list(ANIMALS))
        subj, pl = self.animal_subject(animal)
        food = self.pick(self.diet_foods(ANIMALS[animal][0]))
        if self.chance(0.25):
            place = self.pick([p for p, z in PLACES.items() if z == ANIMALS[animal][1]])
            rel = ["that", conj(LIVE, pl, "present"), "in", "the", place]
            return capitalise(subj + rel + [conj(EAT, pl, self.tense())] + self.food_np(food)) + "."
        return capitalise(subj + [conj(EAT, pl, self.tense())] + self.food_np(food)) + "."

    def animal_never_eats(self):
        animal = self.pick(list(ANIMALS))
        diet = ANIMALS[animal][0]
        thing = self.pick(self.diet_foods(diet, good=False) if self.chance(0.7) else list(TOOLS))
        obj = plural(thing) if thing in TOOLS or not FOODS[thing][1] else thing
        if self.chance(0.5):
            return capitalise([plural(animal), "never", "eat", obj]) + "."
        subj, pl = self.animal_subject(animal)
        aux = "do" if pl else "does"
        if self.tense() == "past":
            aux = "did"
        return capitalise(subj + [aux, "not", "eat", obj]) + "."

    def person_eats(self):
        subj, pl = self.person_subject()
        food = self.pick(self.diet_foods("person"))
        words = subj + [conj(EAT, pl, self.tense())] + self.food_np(food)
        if self.chance(0.3):
            words += ["in", "the", self.pick(list(PLACES))]
        return capitalise(words) + "."

    def herd_diet(self):
        animal = self.pick(list(ANIMALS))
        diet = ANIMALS[animal][0]
        food = self.pick(self.diet_foods(diet))
        other = self.pick(self.diet_foods(diet))
        a, b = (f if FOODS[f][1] else plural(f) for f in (food, other))
        if a == b:
            return capitalise([plural(animal), "like", a]) + "."
        return capitalise([plural(animal), "like", a, "and", b]) + "."

    def tool_use(self):
        tool = self.pick(list(TOOLS))
        verb, things = TOOLS[tool]
        thing = self.pick(things)
        subj, pl = self.person_subject()
        tense = self.tense()
        obj = self.np(thing, adjective=0.2)[0]
        form = self.r.randrange(4)
        if form == 0:
            return capitalise(subj + [conj(USE, pl, tense)] + self.np(tool)[0] + ["to", verb] + obj) + "."
        if form == 1:
            return capitalise(["with"] + self.np(tool, number=False)[0] + [","] + subj
                              + [verb_form(verb, pl, tense)] + obj) + "."
        if form == 2:
            obj = thing if thing in MASS_THINGS else plural(thing)
            return capitalise([article(tool), tool, "is", "used", "for", VERBS[verb][3], obj]) + "."
        return capitalise(subj + [verb_form(verb, pl, tense)] + obj + ["with"] + self.np(tool, number=False)[0]) + "."

    def tool_wrong(self):
        tool = self.pick(list(TOOLS))
        verb, things = TOOLS[tool]
        other = self.pick([t for t in TOOLS if t != tool])
        thing = self.pick(things)
        obj = ["the", thing] if thing in MASS_THINGS else [article(thing), thing]
        return capitalise(["you", "cannot", verb] + obj + ["with", article(other), other]) + "."

    def trade_tool(self):
        trade = self.pick(list(TRADES))
        tool = self.pick(TRADES[trade])
        subj, pl = self.np(trade, adjective=0.2)
        tense = self.tense()
        if self.chance(0.5):
            rel = ["who", conj(LIVE, pl, "present"), "in", "the", self.pick(list(PLACES))]
            return capitalise(subj + rel + [conj(KEEP, pl, tense)] + self.np(tool)[0]) + "."
        return capitalise(subj + [conj(USE, pl, tense)] + self.np(tool)[0] + ["every", "day"]) + "."

    def weather(self):
        place = self.pick(list(PLACES))
        zone = PLACES[place]
        words = [w for w, z in WEATHER.items() if z == zone]
        w1, w2 = self.pick(words), self.pick(words)
        form = self.r.randrange(4)
        past = self.chance(0.4)
        be = "was" if past else "is"
        if form == 0:
            return capitalise(["it", be, w1, "in", "the", place, self.pick(TIMES)]) + "."
        if form == 1 and w1 != w2:
            return capitalise(["in", "the", place, ",", "the", "days", "were" if past else "are", w1, "and", w2]) + "."
        if form == 2:
            wrong = self.pick([w for w, z in WEATHER.items() if z != zone])
            return capitalise(["it", "is", "never", wrong, "in", "the", place]) + "."
        verb = "was" if past else ("are" if place == "dunes" else "is")
        return capitalise(["the", place, verb, w1]) + "."

    def habitat(self):
        animal = self.pick(list(ANIMALS))
        zone = ANIMALS[animal][1]
        place = self.pick([p for p, z in PLACES.items() if z == zone])
        subj, pl = self.animal_subject(animal)
        if self.chance(0.3):
            w = self.pick([w for w, z in WEATHER.items() if z == zone])
            return capitalise(subj + [conj(LIVE, pl, self.tense()), "where", "it", "is", w]) + "."
        return capitalise(subj + [conj(LIVE, pl, self.tense()), "in", "the", place]) + "."

    def journey(self):
        name = self.pick(list(PEOPLE))
        tool = self.pick(list(TOOLS))
        place = self.pick(list(PLACES))
        animal = self.pick([a for a, v in ANIMALS.items() if v[1] == PLACES[place]])
        return capitalise([name, "took", "the", tool, "to", "the", place, "and", PEOPLE[name], "saw",
                           article(animal), animal]) + "."

    def kind(self):
        r = self.r.randrange(3)
        if r == 0:
            a = self.pick(list(ANIMALS))
            return capitalise([article(a), a, "is", "an", "animal"]) + "."
        if r == 1:
            f = self.pick(list(FOODS))
            return capitalise([f if FOODS[f][1] else plural(f), "are" if not FOODS[f][1] else "is",
                               "good", "to", "eat"]) + "."
        t = self.pick(list(TOOLS))
        return capitalise(["the", t, "is", "a", "useful", "tool"]) + "."

    FAMILIES = [("animal_eats", 4), ("animal_never_eats", 2), ("person_eats", 3), ("herd_diet", 1),
                ("tool_use", 5), ("tool_wrong", 1), ("trade_tool", 2), ("weather", 4),
                ("habitat", 3), ("journey", 1), ("kind", 1)]

    def sentence(self):
        total = sum(w for _, w in self.FAMILIES)
        x = self.r.randrange(total)
        for name, w in self.FAMILIES:
            if x < w:
                return getattr(self, name)()
            x -= w
        raise AssertionError("unreachable")


# --- downstream task ------------------------------------------------------
def split_words(words, cls, dev):
    held = HELD_OUT[cls]
    return [w for w in words if (w in held) == dev]


def task_eat(g, label, dev):
    animals = split_words(list(ANIMALS), "animal", False) if not dev else list(ANIMALS)
    if g.chance(0.3):
        subj, diet = [g.pick(list(PEOPLE))], "person"
    else:
        a = g.pick(animals)
        subj, diet = g.np(a, number=False, definite=True, adjective=0.3)[0], ANIMALS[a][0]
    foods = split_words(list(FOODS), "food", dev)
    tools = split_words(list(TOOLS), "tool", dev)
    if label:
        obj = g.pick([f for f in foods if FOODS[f][0] in DIETS[diet]])
    elif g.chance(0.5):
        obj = g.pick(tools)
    else:
        obj = g.pick([f for f in foods if FOODS[f][0] not in DIETS[diet]])
    obj_np = [obj] if obj in FOODS and FOODS[obj][1] else ["the", obj]
    return capitalise(subj + ["ate"] + obj_np) + ".", "eat:%s+%s" % (subj[-1], obj)


def task_tool(g, label, dev):
    tools = split_words(list(TOOLS), "tool", dev)
    tool = g.pick(tools)
    verb = TOOLS[tool][0] if label else TOOLS[g.pick([t for t in tools if t != tool])][0]
    thing = g.pick([th for t, (v, ths) in TOOLS.items() if v == verb for th in ths])
    name = g.pick(list(PEOPLE))
    return capitalise([name, "used", "the", tool, "to", verb, "the", thing]) + ".", "tool:%s+%s" % (tool, verb)


def task_weather(g, label, dev):
    places = split_words(list(PLACES), "place", dev)
    weathers = list(WEATHER) if dev else split_words(list(WEATHER), "weather", False)
    place = g.pick(places)
    w = g.pick([x for x in weathers if (WEATHER[x] == PLACES[place]) == label])
    when = g.pick([None] + TIMES)
    words = ["it", g.pick(["is", "was"]), w, "in", "the", place]
    if when:
        words = words + when.split() if g.chance(0.5) else when.split() + [","] + words
    return capitalise(words) + ".", "weather:%s+%s" % (place, w)


def task_habitat(g, label, dev):
    animals = split_words(list(ANIMALS), "animal", dev)
    places = list(PLACES) if dev else split_words(list(PLACES), "place", False)
    animal = g.pick(animals)
    place = g.pick([p for p in places if (PLACES[p] == ANIMALS[animal][1]) == label])
    subj = g.np(animal, number=False, adjective=0.5)[0]
    return capitalise(subj + [g.pick(["lives", "lived"]), "in", "the", place]) + ".", "habitat:%s+%s" % (animal, place)


TASKS = [("eat", task_eat), ("tool", task_tool), ("weather", task_weather), ("habitat", task_habitat)]


def make_split(r, n, dev):
    """n examples cycling through the relations, labels alternating within
    each relation; unique texts. Returns a list of dicts."""
    g = Grammar(r)
    out, seen = [], set()
    i = 0
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 200 * n:
            sys.exit("make-corpus: cannot draw %d distinct %s examples" % (n, "dev" if dev else "train"))
        relation, fn = TASKS[i % len(TASKS)]
        label = (i // len(TASKS)) % 2 == 0
        text, pair = fn(g, label, dev)
        if text in seen:
            continue
        seen.add(text)
        out.append({"text": text, "label": "plausible" if label else "implausible",
                    "relation": relation, "pair": pair})
        i += 1
    r.shuffle(out)
    return out


def write_atomic(path, text):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True, help="corpus text file to write, one sentence per line")
    ap.add_argument("--task", required=True, help="folder for train.jsonl and dev.jsonl")
    ap.add_argument("--sentences", type=int, default=100000, help="corpus sentences (default 100000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train", type=int, default=2000, help="train examples (default 2000)")
    ap.add_argument("--dev", type=int, default=500, help="dev examples (default 500)")
    a = ap.parse_args()
    if a.sentences < 1 or a.train < 1 or a.dev < 1:
        sys.exit("make-corpus: --sentences, --train and --dev must be positive")
    g = Grammar(random.Random(a.seed))
    write_atomic(a.corpus, "".join(g.sentence() + "\n" for _ in range(a.sentences)))
    for name, n, dev, salt in (("train", a.train, False, 1), ("dev", a.dev, True, 2)):
        rows = make_split(random.Random(a.seed * 1000003 + salt), n, dev)
        write_atomic(os.path.join(a.task, name + ".jsonl"),
                     "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


if __name__ == "__main__":
    main()
