"""Prompts written for decbench: translation, question answering, math word problems and
two-turn conversations. Short on purpose, so that a CPU run of a whole suite stays practical."""

from __future__ import annotations

TRANSLATION = [
    "Translate into French: The library opens at nine in the morning and closes at six in the "
    "evening, except on Sundays.",
    "Translate into German: My brother bought a new bicycle last week, but it was stolen two "
    "days later.",
    "Translate into Spanish: Please remember to water the plants while I am away on holiday.",
    "Translate into English: Le train pour Lyon part à huit heures, mais il a souvent du retard "
    "en hiver.",
    "Translate into English: Ich habe den ganzen Nachmittag im Garten gearbeitet und bin jetzt "
    "sehr müde.",
    "Translate into French: The museum is free on the first Sunday of every month, so it is "
    "usually very crowded.",
    "Translate into English: El mercado del barrio vende frutas frescas y pan recién hecho todas "
    "las mañanas.",
    "Translate into Italian: We are going to the beach tomorrow if the weather is good.",
]

QA = [
    "What is the boiling point of water at sea level in degrees Celsius, and why is it lower on "
    "a high mountain?",
    "Why is the sky blue during the day?",
    "What is the difference between a virus and a bacterium?",
    "Who wrote the play Romeo and Juliet, and roughly when was it written?",
    "What causes the seasons on Earth?",
    "What does a compiler do?",
    "How do plants make their food?",
    "What is the largest planet in the solar system, and what is it mostly made of?",
]

MATH = [
    "A baker makes 24 muffins in the morning and 18 in the afternoon. She sells 30 of them. How "
    "many muffins are left? Explain step by step.",
    "Tom has 3 boxes with 12 pencils in each. He gives 7 pencils to his sister. How many pencils "
    "does he have now? Show your reasoning.",
    "A train travels at 60 kilometres per hour for 2.5 hours. How far does it go? Think step by "
    "step.",
    "A shirt costs 20 dollars and is on sale for 25% off. What is the sale price? Explain your "
    "steps.",
    "Sara reads 15 pages a day. How many days does she need to finish a 240-page book? Show your "
    "work.",
    "A rectangle is 8 metres long and 5 metres wide. What are its area and its perimeter? Solve "
    "step by step.",
    "A bag holds 5 red, 7 blue and 8 green marbles. What fraction of the marbles are blue? "
    "Explain.",
    "Four workers build a wall in 6 hours. How long would 8 workers take at the same rate? "
    "Reason step by step.",
]

# Turn 2 refers to the model's own answer to turn 1.
MULTI_TURN = [
    ("Write a short poem about the sea.", "Now rewrite your poem so that every line rhymes."),
    (
        "Give me three tips for staying focused while studying.",
        "Expand your second tip into a short paragraph.",
    ),
    (
        "Describe a cat to someone who has never seen one.",
        "Now describe it again in exactly three sentences.",
    ),
    ("Suggest a name for a small bakery.", "Explain why you chose that name."),
    ("List four healthy breakfast ideas.", "Which of those is the quickest to prepare, and how?"),
    (
        "Write a two-sentence story about a robot.",
        "Continue the story with two more sentences.",
    ),
    ("What is photosynthesis? Answer briefly.", "Explain it again as if I were eight years old."),
    (
        "Write a polite email asking a colleague for a meeting next week.",
        "Make your email shorter and more formal.",
    ),
]
