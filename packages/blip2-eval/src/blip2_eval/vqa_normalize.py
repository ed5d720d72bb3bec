"""Answer normalisation of the official VQA evaluation (GT-Vision-Lab/VQA ``vqaEval.py``), rule for rule.

Scores only match published numbers if the quirks are kept too:

- punctuation: each mark is deleted if it touches a space anywhere in the *original* text, or if the text
  holds a digit-comma-digit group; otherwise it becomes a space. The checks look at the original text, not at
  the text as it is being rewritten.
- periods: a period not followed by a digit is deleted, at most 32 of them (the official script passes
  ``re.UNICODE``, whose value is 32, where ``re.sub`` expects its ``count``).
- words: lower-cased, split on whitespace, number words zero-ten (and "none") to digits, articles dropped,
  apostrophe-less contractions restored ("dont" -> "don't").
"""

from __future__ import annotations

import re

# Marks the official script strips or turns into spaces ("." is handled on its own, see PERIOD).
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
# The official pattern is "(?!<=\d)(\.)(?!\d)": its first group is a (mistyped) look-ahead that always
# passes, so only "not followed by a digit" counts.
PERIOD = re.compile(r"\.(?!\d)")
PERIOD_LIMIT = 32
DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
ARTICLES = frozenset({"a", "an", "the"})
NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}


def _contractions() -> dict[str, str]:
    """Spelling without apostrophes -> the official spelling, as in the official table.

    Listed as "written=official" pairs; a bare word means its apostrophe-less spelling maps to it.
    """
    table = """
    ain't aren't can't could've couldn't couldn'tve=couldn't've couldnt've=couldn't've didn't doesn't don't
    hadn't hadnt've=hadn't've hadn'tve=hadn't've hasn't haven't he'd hed've=he'd've he'dve=he'd've he's how'd
    how'll how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isn't it'd itd've=it'd've it'dve=it'd've it'll
    let's=let's ma'am mightn't mightnt've=mightn't've mightn'tve=mightn't've might've mustn't must've needn't
    not've o'clock oughtn't ow's'at='ow's'at 'ows'at='ow's'at 'ow'sat='ow's'at shan't shed've=she'd've
    she'dve=she'd've she's=she's should've shouldn't shouldnt've=shouldn't've shouldn'tve=shouldn't've
    somebody'd=somebodyd somebodyd've=somebody'd've somebody'dve=somebody'd've somebody'll somebody's
    someone'd someoned've=someone'd've someone'dve=someone'd've someone'll someone's something'd
    somethingd've=something'd've something'dve=something'd've something'll that's there'd
    thered've=there'd've there'dve=there'd've there're there's they'd theyd've=they'd've they'dve=they'd've
    they'll they're they've twas='twas wasn't wed've=we'd've we'dve=we'd've we've weren't what'll what're
    what's what've when's where'd where's where've who'd whod've=who'd've who'dve=who'd've who'll who's
    who've why'll why're why's won't would've wouldn't wouldnt've=wouldn't've wouldn'tve=wouldn't've y'all
    yall'll=y'all'll y'allll=y'all'll yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've you'd
    youd've=you'd've you'dve=you'd've you'll you're you've
    """
    pairs = {}
    for entry in table.split():
        written, _, official = entry.partition("=")
        if official:
            pairs[written] = official
        else:
            pairs[written.replace("'", "")] = written
    return pairs


CONTRACTIONS = _contractions()


def normalize_punctuation(text: str) -> str:
    """The official ``processPunctuation``."""
    delete_all = DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        touches_space = mark + " " in text or " " + mark in text
        out = out.replace(mark, "" if touches_space or delete_all else " ")
    return PERIOD.sub("", out, count=PERIOD_LIMIT)


def normalize_digits_articles(text: str) -> str:
    """The official ``processDigitArticle``: lower-case, number words to digits, no articles, contractions."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def clean_whitespace(text: str) -> str:
    """Newlines and tabs to spaces, ends stripped (done to every answer first)."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(text: str) -> str:
    """What the official script does to a predicted answer before comparing it."""
    return normalize_digits_articles(normalize_punctuation(clean_whitespace(text)))
