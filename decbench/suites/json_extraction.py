"""JSON extraction prompts, written for decbench: a short text and a request to pull fields out
of it as JSON. Each sample carries its own JSON schema, which a profile applies with

    [constraint]
    kind = "json-schema"
    schema = "sample"

(or `decbench compare ... --suite json-extraction --json-schema sample`). The answers copy names
and numbers from the prompt, which is where prompt lookup and token recycling draft well, so the
suite measures speculative decoding under a constraint: speedups with and without the schema,
and the constraint's mask time per step."""

from __future__ import annotations

import json

JSON_EXTRACTION = "json-extraction"  # the category and the built-in suite's name

ASK = "Extract {fields} from this text as a JSON object.\n\nText: {text}"


def _object(properties: dict[str, dict]) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
BOOLEAN = {"type": "boolean"}

# (fields named in the request, the text, the schema of the answer)
CASES: list[tuple[str, str, dict]] = [
    (
        "the name and age",
        "Maria Lopez is a 34-year-old nurse who has lived in Madrid since 2015.",
        _object({"name": STRING, "age": INTEGER}),
    ),
    (
        "the title, author and year",
        "The novel Things Fall Apart, written by Chinua Achebe, was published in 1958 and has "
        "been translated into more than fifty languages.",
        _object({"title": STRING, "author": STRING, "year": INTEGER}),
    ),
    (
        "the city, country and population",
        "Lyon is a city in France with a population of about 520000 people; it lies where the "
        "Rhone and the Saone rivers meet.",
        _object({"city": STRING, "country": STRING, "population": INTEGER}),
    ),
    (
        "the product, price and whether it is in stock",
        "The Aurora desk lamp costs 39.99 dollars. It is currently in stock and ships within two "
        "days.",
        _object({"product": STRING, "price": NUMBER, "in_stock": BOOLEAN}),
    ),
    (
        "the event, date and venue",
        "The Spring Music Festival will take place on 12 May 2027 at Riverside Park, with "
        "twenty bands on three stages.",
        _object({"event": STRING, "date": STRING, "venue": STRING}),
    ),
    (
        "the sender, recipient and subject",
        "Email from Tom Baker to Priya Natarajan, subject: Quarterly budget review. Hi Priya, "
        "please send the figures by Friday.",
        _object({"sender": STRING, "recipient": STRING, "subject": STRING}),
    ),
    (
        "the company and the names of its founders",
        "Hewlett-Packard was founded by Bill Hewlett and David Packard in a garage in Palo Alto "
        "in 1939.",
        _object({"company": STRING, "founders": {"type": "array", "items": STRING}}),
    ),
    (
        "the patient's name, temperature and symptoms",
        "Patient John Carter reported a fever of 38.5 degrees, a sore throat and a mild headache.",
        _object(
            {
                "name": STRING,
                "temperature": NUMBER,
                "symptoms": {"type": "array", "items": STRING},
            }
        ),
    ),
]


def prompts() -> list[tuple[str, str]]:
    """(prompt, schema as JSON text) for every case."""
    return [
        (ASK.format(fields=fields, text=text), json.dumps(schema, sort_keys=True))
        for fields, text, schema in CASES
    ]
