"""Open-ended continuation prompts, written for decbench: the opening words of a story or an
article, and a request to go on for a few hundred words. Long free-form outputs are where greedy
decoding degenerates into loops and where contrastive search, momentum decoding and sampling
differ; the text-quality metrics (decbench/metrics/quality.py) are computed on them.

Each prompt asks for the continuation in words, so the suite works with chat models (the
default); with `--set generation.chat=false` the request is continued as plain text."""

from __future__ import annotations

OPEN_ENDED = "open-ended"  # the category and the built-in suite's name

STORY = "Write a story of about 300 words that begins with these words: "
ARTICLE = "Write an article of about 300 words that begins with these words: "

OPENINGS = [
    (
        STORY,
        "The old lighthouse keeper had not seen a ship in eleven years, until one foggy morning",
    ),
    (ARTICLE, "When the first settlers reached the valley, they found"),
    (ARTICLE, "The city council met on Tuesday evening to discuss"),
    (ARTICLE, "Photosynthesis is the process by which plants"),
    (STORY, "The recipe has been in my family for generations. It starts with"),
    (ARTICLE, "In the summer of 1969, a small group of engineers"),
    (STORY, "She opened the letter slowly, knowing that"),
    (ARTICLE, "The history of the printing press begins in"),
    (ARTICLE, "Most people think of deserts as empty places, but"),
    (STORY, "The new bridge across the river was supposed to open in the spring, but"),
    (STORY, "When I was a child, my grandmother used to tell me"),
    (ARTICLE, "The museum's newest exhibit brings together"),
    (ARTICLE, "Scientists studying the deep ocean have discovered"),
    (STORY, "The train was already forty minutes late when"),
    (ARTICLE, "Learning a second language as an adult is difficult because"),
    (STORY, "The village festival takes place every autumn, when"),
]

PROMPTS = [request + opening for request, opening in OPENINGS]
