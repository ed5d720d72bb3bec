"""An independent, literal re-statement of the official VQA accuracy (GT-Vision-Lab/VQA vqaEval.py), for tests.

Written the way the official script computes, step by step (string loops, dict comparisons, the period regex
as typed there and ``re.UNICODE`` passed as the count), with its tables in the official key -> value form,
so that it shares nothing with ``blip2_eval.vqa_normalize`` but the algorithm's statement.
"""

from __future__ import annotations

import re

CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip
MANUAL_MAP = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES = ["a", "an", "the"]
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]


def process_punctuation(in_text):
    out_text = in_text
    for p in PUNCT:
        if (p + " " in in_text or " " + p in in_text) or (re.search(COMMA_STRIP, in_text) is not None):
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    out_text = PERIOD_STRIP.sub("", out_text, re.UNICODE)
    return out_text


def process_digit_article(in_text):
    out_text = []
    for word in in_text.lower().split():
        word = MANUAL_MAP.setdefault(word, word)
        if word not in ARTICLES:
            out_text.append(word)
    for word_id, word in enumerate(out_text):
        if word in CONTRACTIONS:
            out_text[word_id] = CONTRACTIONS[word]
    return " ".join(out_text)


def evaluate(annotations, results, n=2):
    """``annotations``: official annotation dicts (with ``answers`` of ``{"answer", "answer_id"}``);
    ``results``: ``{question_id: answer}``. Returns the official ``accuracy`` dict."""
    acc_qa, acc_ques_type, acc_ans_type = [], {}, {}
    for gts in annotations:
        gts = {**gts, "answers": [dict(a) for a in gts["answers"]]}  # the official script edits in place
        res_ans = results[gts["question_id"]]
        res_ans = res_ans.replace("\n", " ").replace("\t", " ").strip()
        res_ans = process_digit_article(process_punctuation(res_ans))
        gt_answers = [ans["answer"] for ans in gts["answers"]]
        if len(set(gt_answers)) > 1:
            for ans_dic in gts["answers"]:
                ans_dic["answer"] = process_punctuation(ans_dic["answer"])
        gt_acc = []
        for gt_ans_datum in gts["answers"]:
            other = [item for item in gts["answers"] if item != gt_ans_datum]
            matching = [item for item in other if item["answer"] == res_ans]
            gt_acc.append(min(1, float(len(matching)) / 3))
        avg = float(sum(gt_acc)) / len(gt_acc)
        acc_qa.append(avg)
        acc_ques_type.setdefault(gts["question_type"], []).append(avg)
        acc_ans_type.setdefault(gts["answer_type"], []).append(avg)
    return {
        "overall": round(100 * float(sum(acc_qa)) / len(acc_qa), n),
        "perQuestionType": {k: round(100 * float(sum(v)) / len(v), n) for k, v in acc_ques_type.items()},
        "perAnswerType": {k: round(100 * float(sum(v)) / len(v), n) for k, v in acc_ans_type.items()},
    }
