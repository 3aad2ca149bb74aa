"""Task-shaped training prompts: math word problems, translation, short factual questions, code
completion and editing, and questions and summaries over a given text. The chat prompts of
prompts.py alone teach a draft one register; decoding also meets these shapes (the benchmark
suites' categories). Everything is written here or built from these tables, so the prompts are
the same on every machine and Python version, and none of them is a suite prompt (a test checks).
"""

from __future__ import annotations

import itertools

NAMES = ("Ana", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas")
ITEMS = ("apples", "stickers", "books", "cookies", "marbles", "stamps", "cards", "pens")
FINISH = (
    "Explain step by step.",
    "Show your work.",
    "Think step by step.",
    "Explain your reasoning.",
    "Solve it step by step.",
)
# Slots: {n} name, {i} item, {a} {b} {c} numbers (a > b), {f} a closing instruction.
MATH = (
    "{n} has {a} {i} and gives {b} of them away. Then {n} buys {c} more. How many {i} does {n} "
    "have now? {f}",
    "A box holds {c} {i}. How many {i} are there in {a} boxes? {f}",
    "{n} saves {c} dollars every week. How many weeks does it take to save {a}0 dollars? {f}",
    "A bus leaves with {a} passengers. At the first stop {b} get off and {c} get on. How many "
    "passengers are on the bus now? {f}",
    "A garden is {a} metres long and {c} metres wide. What is its area, and how much fence is "
    "needed to go around it? {f}",
    "{n} reads {c} pages every evening. How many pages does {n} read in {b} evenings? {f}",
    "A jacket costs {a}0 dollars and the price goes down by {c}0 percent. What is the new "
    "price? {f}",
    "{n} shares {a}{c} {i} equally among {c} friends. How many does each friend get, and how "
    "many are left over? {f}",
    "A car uses {c} litres of fuel for every 100 kilometres. How much fuel does it need for "
    "{a}0 kilometres? {f}",
    "The temperature was {b} degrees in the morning and rose by {c} degrees every hour for {c} "
    "hours. What was the temperature then? {f}",
    "{n} is {a} years old and {n}'s cousin is {b} years younger. How old will the cousin be in "
    "{c} years? {f}",
    "A class has {a} students and {b} of them are absent. What percentage of the class is "
    "present? {f}",
)

SENTENCES = (
    "The weather was cold, so we stayed inside and played cards all afternoon.",
    "Could you tell me where the nearest pharmacy is?",
    "My grandmother grows tomatoes and beans in her small garden.",
    "The meeting has been moved to Thursday because the manager is ill.",
    "I would like a table for four people near the window, please.",
    "We missed the last train and had to walk home in the rain.",
    "The children built a sandcastle and decorated it with shells.",
    "This recipe needs two eggs, a cup of milk and some flour.",
    "He forgot his keys at the office and had to call his neighbour.",
    "The concert starts at eight, but the doors open an hour earlier.",
    "Learning to play the piano takes patience and daily practice.",
    "Our hotel room had a beautiful view of the mountains.",
    "She has been working as a nurse in the city hospital for ten years.",
    "Please turn off the lights when you leave the room.",
    "The shop on the corner sells newspapers, sweets and flowers.",
    "They are planning to visit their friends in the countryside next month.",
    "The dog barked loudly when the postman arrived.",
    "I have read this book twice and I still find it exciting.",
    "The bridge was closed for repairs during the whole summer.",
    "Can you help me carry these boxes up to the third floor?",
    "Every morning he drinks a cup of coffee and reads the news.",
    "The football match was cancelled because of the storm.",
    "My sister is learning Japanese because she wants to work in Tokyo.",
    "The soup is too hot, so wait a few minutes before you eat it.",
    "We found a small restaurant that serves excellent fish.",
    "The teacher asked the students to write a short essay about their holidays.",
    "It is important to drink enough water when the weather is hot.",
    "The old castle on the hill attracts many tourists every year.",
    "I lost my umbrella on the bus this morning.",
    "The new park has a playground, a pond and a lot of trees.",
)
LANGUAGES = ("French", "German", "Spanish", "Italian")
FOREIGN = (
    "Nous avons passé le week-end chez nos amis à la campagne.",
    "La boulangerie du quartier ferme à midi le dimanche.",
    "Mon frère apprend à jouer de la guitare depuis deux ans.",
    "Il fait très beau aujourd'hui, allons nous promener au parc.",
    "Der Zug nach Berlin hat heute zwanzig Minuten Verspätung.",
    "Meine Eltern wohnen in einem kleinen Haus am See.",
    "Kannst du mir bitte das Salz geben?",
    "Wir haben gestern Abend einen spannenden Film gesehen.",
    "Mi hermana trabaja en un hospital cerca del centro.",
    "Los niños juegan en la playa hasta que se pone el sol.",
    "¿Sabes a qué hora empieza la película?",
    "Este verano vamos a visitar a nuestros abuelos en el sur.",
)

QUESTIONS = (
    "Why do leaves change colour in autumn?",
    "What is the difference between weather and climate?",
    "How does a refrigerator keep food cold?",
    "Who painted the Mona Lisa, and roughly when?",
    "What is the speed of light, approximately?",
    "Why does ice float on water?",
    "What is the capital of Australia?",
    "How many bones are there in the adult human body?",
    "What does DNA stand for, and what does it do?",
    "Why do we have day and night?",
    "What is the tallest mountain on Earth?",
    "How do vaccines train the immune system?",
    "What is the main gas in the air we breathe?",
    "Who was the first person to walk on the Moon?",
    "What is the difference between an atom and a molecule?",
    "Why is the ocean salty?",
    "What does a database index do?",
    "What is the difference between RAM and a hard disk?",
    "How does a rainbow form?",
    "Why do cats purr?",
    "What is the longest river in Africa?",
    "What is an algorithm?",
    "Why do airplanes leave white trails in the sky?",
    "How does a bicycle stay upright while moving?",
    "What is the freezing point of water in Fahrenheit?",
    "What is the function of the lungs?",
    "Who invented the telephone?",
    "What is the difference between a planet and a star?",
    "Why do we need sleep?",
    "What is inflation in economics?",
    "How do bees make honey?",
    "What is the purpose of a firewall in a computer network?",
    "What causes thunder?",
    "What is the smallest prime number?",
    "Why does bread rise?",
    "What is the role of the heart in the body?",
    "How does GPS know where you are?",
    "What language is spoken in Brazil?",
    "Why do metals conduct electricity?",
    "What is the difference between a list and a tuple in Python?",
)
QUESTION_STYLES = ("{q}", "Answer briefly: {q}", "{q} Explain in a few sentences.")

# Function heads to complete: signature, docstring and sometimes the first line.
HEADS = (
    'def is_palindrome(text):\n    """Return True if text reads the same backwards, ignoring '
    'case and spaces."""',
    'def word_count(text):\n    """Return a dict mapping each word to how often it occurs."""',
    'def fizzbuzz(n):\n    """Return the FizzBuzz strings for the numbers 1 to n."""\n    result '
    "= []",
    'def flatten(nested):\n    """Flatten a list of lists into one list."""',
    'def celsius_to_fahrenheit(celsius):\n    """Convert a temperature from Celsius to '
    'Fahrenheit."""',
    'def factorial(n):\n    """Return n! for a non-negative integer n."""\n    if n < 0:',
    'def chunk(items, size):\n    """Split items into lists of at most size elements."""',
    'def is_prime(n):\n    """Return True if n is a prime number."""\n    if n < 2:',
    'def merge_sorted(a, b):\n    """Merge two sorted lists into one sorted list."""\n    i = j = 0',
    'def average(numbers):\n    """Return the mean of a list of numbers, or None if it is '
    'empty."""',
    'def reverse_words(sentence):\n    """Reverse the order of the words in a sentence."""',
    'def count_vowels(text):\n    """Count the vowels in text."""\n    vowels = "aeiou"',
    'def fibonacci(n):\n    """Return the first n Fibonacci numbers as a list."""',
    'def unique(items):\n    """Return the items without duplicates, keeping their order."""\n'
    "    seen = set()",
    'def read_lines(path):\n    """Read a text file and return its non-empty lines, stripped."""',
    'def binary_to_int(bits):\n    """Convert a string of 0s and 1s to an integer."""',
    'class Stack:\n    """A last-in, first-out stack."""\n\n    def __init__(self):\n'
    "        self.items = []",
    'def transpose(matrix):\n    """Return the transpose of a matrix given as a list of rows."""',
    'def gcd(a, b):\n    """Return the greatest common divisor of a and b."""',
    'def caesar(text, shift):\n    """Shift each letter of text by shift places in the '
    'alphabet."""',
)
COMPLETE = (
    "Complete the following Python function. Return the whole function.",
    "Finish this Python code so that it does what the docstring says.",
)

FUNCTIONS = (
    "def total(prices, tax):\n    s = 0\n    for p in prices:\n        s = s + p\n    return s * "
    "(1 + tax)",
    "def find(items, target):\n    for i in range(len(items)):\n        if items[i] == target:\n"
    "            return i\n    return -1",
    "def longest(words):\n    best = ''\n    for w in words:\n        if len(w) > len(best):\n"
    "            best = w\n    return best",
    "def squares(n):\n    out = []\n    for i in range(n):\n        out.append(i * i)\n    return "
    "out",
    "def grade(score):\n    if score >= 90:\n        return 'A'\n    elif score >= 80:\n        "
    "return 'B'\n    elif score >= 70:\n        return 'C'\n    return 'F'",
    "def load(path):\n    f = open(path)\n    data = f.read()\n    f.close()\n    return "
    "data.split(',')",
    "def evens(nums):\n    r = []\n    for x in nums:\n        if x % 2 == 0:\n            "
    "r.append(x)\n    return r",
    "def count(text, ch):\n    n = 0\n    for c in text:\n        if c == ch:\n            n += 1"
    "\n    return n",
    "def clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    if x > hi:\n        return hi\n"
    "    return x",
    "def join_names(people):\n    s = ''\n    for p in people:\n        s = s + p['name'] + ', '\n"
    "    return s[:-2]",
)
EDITS = (
    "Add type hints to this function.",
    "Add a docstring to this function.",
    "Rename the variables to more descriptive names.",
    "Add a comment above each line explaining what it does.",
    "Rewrite this function in a more Pythonic way.",
    "Make this function raise a ValueError for invalid input.",
    "Explain what this function does.",
    "Write two unit tests for this function.",
)

# Fact sheets about made-up places, for questions and summaries over a given text.
PLACES = (
    ("Brindlemoor", "a fishing village", "north coast", 1642, "smoked herring", 900),
    ("Calloway Springs", "a spa town", "eastern hills", 1811, "its warm mineral baths", 12000),
    ("Dunmere", "a market town", "river valley", 1230, "a weekly cheese market", 7500),
    ("Eastholt", "an industrial city", "plains", 1868, "steel and railway works", 210000),
    ("Fenwick Bay", "a harbour town", "southern coast", 1705, "shipbuilding", 18000),
    ("Glenarrow", "a mountain village", "high pass", 1402, "its stone bridge", 650),
    ("Harrowgate Cross", "a university town", "central lowlands", 1590, "its old library", 48000),
    ("Isleby", "an island settlement", "western isles", 1550, "wool weaving", 1300),
    ("Juniper Falls", "a mill town", "forest edge", 1790, "paper mills", 9400),
    ("Kestrel Point", "a lighthouse hamlet", "rocky cape", 1851, "its lighthouse", 120),
    ("Larkspur", "a farming town", "wide valley", 1722, "an apple festival", 6100),
    ("Millbrook", "a canal town", "lowland marshes", 1774, "its canal locks", 15000),
)
SUMMARIZE = (
    "Summarize the following text in two sentences.",
    "Write a one-sentence summary of this text.",
    "Rewrite this text as three bullet points.",
)
ASK = (
    "When was {name} founded?",
    "What is {name} known for?",
    "How many people live in {name}?",
    "What kind of place is {name}, and where is it?",
    "How often does the council of {name} meet?",
)


def math_prompts() -> list[str]:
    prompts = []
    for k, (t, template) in enumerate(itertools.product(range(10), MATH)):
        a, b, c = 12 + (7 * k) % 80, 2 + (3 * k) % 10, 3 + (5 * k) % 9
        name, item, finish = NAMES[k % len(NAMES)], ITEMS[(k + t) % len(ITEMS)], FINISH[t % 5]
        prompts.append(template.format(n=name, i=item, a=a, b=b, c=c, f=finish))
    return list(dict.fromkeys(prompts))


def translation_prompts() -> list[str]:
    into = [
        f"Translate into {language}: {sentence}"
        for sentence, language in itertools.product(SENTENCES, LANGUAGES)
    ]
    return into + [f"Translate into English: {sentence}" for sentence in FOREIGN]


def question_prompts() -> list[str]:
    return [style.format(q=q) for q, style in itertools.product(QUESTIONS, QUESTION_STYLES)]


def code_prompts() -> list[str]:
    completions = [
        f"{ask}\n\n```python\n{head}\n```" for head, ask in itertools.product(HEADS, COMPLETE)
    ]
    edits = [
        f"{edit} Return the complete code.\n\n```python\n{code}\n```"
        if not edit.startswith(("Explain", "Write"))
        else f"{edit}\n\n```python\n{code}\n```"
        for code, edit in itertools.product(FUNCTIONS, EDITS)
    ]
    return completions + edits


def fact_sheet(place: tuple) -> str:
    name, kind, region, year, known, people = place
    return (
        f"{name} is {kind} near the {region}. It was founded in {year}, and about {people:,} "
        f"people live there today. {name} is best known for {known}, which draws visitors "
        f"from the whole region. The town council meets once a month in the old hall, and "
        f"the main street still follows the route of the road built in its first years."
    )


def text_prompts() -> list[str]:
    summaries = [
        f"{ask}\n\n{fact_sheet(place)}" for place, ask in itertools.product(PLACES, SUMMARIZE)
    ]
    questions = []
    for i, (place, ask) in enumerate(itertools.product(PLACES, ASK)):
        other = PLACES[(i * 5 + 3) % len(PLACES)]
        if other == place:
            other = PLACES[(i + 1) % len(PLACES)]
        documents = (place, other) if i % 2 else (other, place)
        text = "\n\n".join(f"Document {d + 1}:\n{fact_sheet(p)}" for d, p in enumerate(documents))
        questions.append(
            "Answer the question using only the documents below.\n\n"
            f"{text}\n\nQuestion: {ask.format(name=place[0])}"
        )
    return summaries + questions


def task_prompts() -> list[str]:
    """Every task prompt, the kinds spread evenly so that any stretch of the list mixes them."""
    kinds = [math_prompts(), translation_prompts(), question_prompts(), code_prompts()]
    kinds.append(text_prompts())
    placed = [((i + 0.5) / len(k), n, p) for n, k in enumerate(kinds) for i, p in enumerate(k)]
    return [p for _, _, p in sorted(placed)]
