"""Shaping rewards that ride along the accuracy reward: language consistency, length and repetition.

- ``language_consistency``: the DeepSeek-R1 report's reward against language mixing (Sec. 2.3.2): the share of the
  chain of thought written in the target language.
- ``cosine_length``: length scaling by correctness (Yeo et al. 2025, "Demystifying Long Chain-of-Thought
  Reasoning in LLMs", the cosine reward): short correct answers earn most, short wrong answers lose most.
- ``soft_overlong``: DAPO's soft overlong punishment (Yu et al. 2025, eq. 13).
- ``repetition``: a penalty proportional to the share of repeated word n-grams (the Demystifying paper's
  repetition penalty, as open-r1 also ships it).

Every reward reads its parameters from ``rewards.params.<name>`` in the config; ``reward_params`` checks them.
"""

from __future__ import annotations

import math
import re
import unicodedata
from functools import lru_cache

from r1lab.rewards.functions import REWARDS, RewardContext, accuracy_reward, declare_params, reward_params
from r1lab.types import Example


def token_length(text: str, ctx: RewardContext, name: str) -> int:
    """Length of the completion in tokens: the rollout's own count when the trainer passed it
    (``ctx.completion_tokens``, exact, EOS included), else ``text`` re-tokenised with the policy's tokenizer (no
    special tokens; may differ from the generated ids by a token at the edges, and the EOS is not counted).
    """
    if ctx.completion_tokens is not None:
        return ctx.completion_tokens
    if ctx.tokenizer is None:
        raise ValueError(f"reward {name!r} measures length in tokens and needs RewardContext.tokenizer; none was given")
    return len(ctx.tokenizer(text, add_special_tokens=False)["input_ids"])


def _max_length(params: dict, ctx: RewardContext, name: str) -> int:
    max_length = params["max_length"] if params["max_length"] is not None else ctx.max_new_tokens
    if max_length is None:
        raise ValueError(f"reward {name!r}: set rewards.params.{name}.max_length (no rollout max_new_tokens known)")
    if not (isinstance(max_length, int) and max_length > 0):
        raise ValueError(f"reward {name!r}: max_length must be a positive integer, got {max_length!r}")
    return max_length


# ---------------------------------------------------------------------------------------------------------------
# language consistency
# ---------------------------------------------------------------------------------------------------------------
# Writing system of each supported target language (ISO 639-1). A word counts toward the target when its letters
# are in one of these scripts (and, with detector="lingua", when lingua assigns its span to the target language).
_SCRIPTS_OF: dict[str, frozenset[str]] = {
    **{code: frozenset({"LATIN"}) for code in (
        "af az bs ca cs cy da de en eo es et eu fi fr ga gl hr hu id is it la lt lv ms nb nl nn no pl pt ro sk sl "
        "so sq sv sw tl tr uz vi yo zu"
    ).split()},
    **{code: frozenset({"CYRILLIC"}) for code in "be bg kk ky mk mn ru sr tg uk".split()},
    **{code: frozenset({"ARABIC"}) for code in "ar fa ps ur".split()},
    **{code: frozenset({"DEVANAGARI"}) for code in "hi mr ne sa".split()},
    "zh": frozenset({"HAN"}),
    "ja": frozenset({"HAN", "HIRAGANA", "KATAKANA"}),
    "ko": frozenset({"HANGUL"}),
    "el": frozenset({"GREEK"}),
    "he": frozenset({"HEBREW"}),
    "th": frozenset({"THAI"}),
    "bn": frozenset({"BENGALI"}),
    "pa": frozenset({"GURMUKHI"}),
    "gu": frozenset({"GUJARATI"}),
    "ta": frozenset({"TAMIL"}),
    "te": frozenset({"TELUGU"}),
    "kn": frozenset({"KANNADA"}),
    "ml": frozenset({"MALAYALAM"}),
    "ka": frozenset({"GEORGIAN"}),
    "hy": frozenset({"ARMENIAN"}),
    "am": frozenset({"ETHIOPIC"}),
}
# Logographic / syllabic scripts written without spaces: each character counts as one word, the convention of word
# processors' word counts for CJK text; other scripts count each run of letters as one word.
_PER_CHARACTER = frozenset({"HAN", "HIRAGANA", "KATAKANA"})
# Languages lingua compares the target against by default, per script (small sets keep its memory low).
_LINGUA_CANDIDATES = {
    "LATIN": ("en", "fr", "de", "es", "it", "pt", "nl"),
    "CYRILLIC": ("ru", "uk", "bg"),
    "ARABIC": ("ar", "fa", "ur"),
    "DEVANAGARI": ("hi", "mr"),
}

_THINK_BLOCK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
# Spans that are neither prose nor any language: code, LaTeX math, URLs and tags. They are blanked out first.
_NEUTRAL_SPANS = re.compile(
    r"```.*?(?:```|$)"  # fenced code (an unclosed fence runs to the end)
    r"|`[^`\n]*`"  # inline code
    r"|\$\$.*?\$\$|\\\[.*?\\\]|\\\(.*?\\\)|\$[^$\n]+\$"  # display and inline math
    r"|https?://\S+"  # URLs
    r"|</?[A-Za-z_][\w-]*>"  # tags such as <answer>
    r"|\\[A-Za-z]+",  # LaTeX commands; the text of their arguments (\text{...}) stays prose
    re.DOTALL,
)
_ASCII_RUN = re.compile(r"[!-~]+")
_EDGE_PUNCT = ".,;:!?\"'()[]{}"
# An ASCII token is code or math, not a word of any language, when it holds operators or brackets, an identifier
# pattern (snake_case, camelCase, a.b), or letters glued to digits (2x, x2, H2O).
_CODE_LIKE = re.compile(r"[_=<>{}\[\]()#@\\/*^|~+&%$]|[a-z][A-Z]|[A-Za-z]\.[A-Za-z]|[A-Za-z]\d|\d[A-Za-z]")


# Letter-like symbols of mathematics (ℓ, ℝ, 𝑥, ℏ): letters to Unicode, but no language's.
_NOT_A_SCRIPT = frozenset({"MATHEMATICAL", "SCRIPT", "DOUBLE-STRUCK", "BLACK-LETTER", "PLANCK", ""})


@lru_cache(maxsize=4096)
def _script(ch: str) -> str | None:
    """Script of a letter from its Unicode name (``LATIN SMALL LETTER A`` -> LATIN); None for math letters."""
    name = unicodedata.name(ch, "")
    first, _, rest = name.partition(" ")
    if first in ("FULLWIDTH", "HALFWIDTH"):
        first = rest.partition(" ")[0]
    if first == "CJK":
        return "HAN"
    if first == "KATAKANA-HIRAGANA":
        return "KATAKANA"
    if first in _NOT_A_SCRIPT or name.startswith("MODIFIER"):
        return None
    return first


def chain_of_thought(completion: str) -> str:
    """The text inside ``<think>...</think>`` blocks (an unclosed block runs to the end), else the whole completion."""
    blocks = _THINK_BLOCK.findall(completion)
    return "\n".join(blocks) if blocks else completion


def neutralise(text: str) -> str:
    """``text`` with code, math, URLs, tags and code-like tokens replaced by spaces (offsets are preserved)."""
    text = _NEUTRAL_SPANS.sub(lambda m: " " * len(m.group()), text)

    def blank_code(match: re.Match) -> str:
        token = match.group()
        return " " * len(token) if _CODE_LIKE.search(token.strip(_EDGE_PUNCT)) else token

    return _ASCII_RUN.sub(blank_code, text)


def words_with_scripts(text: str) -> list[tuple[int, int, str]]:
    """(start, end, script) of each word: a run of letters of one script (combining marks join their letter).

    CJK characters are one word each. Single letters of alphabetic scripts are skipped: they are variables in
    reasoning text (x, n, θ) far more often than words, and carry no evidence of a language.
    """
    words: list[tuple[int, int, str]] = []
    run_start, run_script = -1, None

    def close(end: int) -> None:
        if run_script is not None and (end - run_start > 1):
            words.append((run_start, end, run_script))

    for i, ch in enumerate(text):
        category = unicodedata.category(ch)
        if category[0] == "M" and run_script is not None:
            continue  # an accent or vowel sign belongs to the letter before it
        script = _script(ch) if category[0] == "L" else None
        if script in _PER_CHARACTER:
            close(i)
            words.append((i, i + 1, script))
            run_script = None
        elif script is None:
            close(i)
            run_script = None
        elif script != run_script:
            close(i)
            run_start, run_script = i, script
    close(len(text))
    return words


@lru_cache(maxsize=8)
def _lingua_detector(codes: tuple[str, ...]):
    try:
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
    except ImportError as err:
        raise ImportError(
            "language_consistency with detector='lingua' needs the lingua-language-detector package "
            "(pip install 'r1lab[lang]')"
        ) from err
    languages = []
    for code in codes:
        try:
            languages.append(Language.from_iso_code_639_1(IsoCode639_1.from_str(code)))
        except ValueError as err:
            raise ValueError(f"reward 'language_consistency': lingua does not know the language {code!r}") from err
    # High-accuracy mode (lingua's default): its low-accuracy mode loads faster but judged plain English clauses of
    # a few words foreign in our tests. Models load lazily on first use (~2-4 s, ~200 MB for 7 languages).
    return LanguageDetectorBuilder.from_languages(*languages).build()


# Clause boundaries (Latin and CJK punctuation, line breaks): lingua judges each clause separately.
_CLAUSE_END = re.compile(r"[.,;:!?\n\u3002\uff0c\uff1b\uff1a\uff01\uff1f\u060c\u061f]")
# Clauses with fewer target-script words than this are left to the script test: lingua is unreliable on one or
# two words ("Hmm", "Wait") and would flag them as foreign at random.
_MIN_CLAUSE_WORDS = 3


def _lingua_foreign(
    text: str, words: list[tuple[int, int, str]], language: str, candidates: tuple[str, ...]
) -> set[int]:
    """Indices of ``words`` (all in the target's script) in clauses that lingua assigns to another language.

    Detection is per clause, on the clause's target-script words: measured on hand-written mixed chains of
    thought, this follows switches at clause boundaries ("..., donc c'est bien cinq") more faithfully than
    lingua's own mixed-language segmentation, which tends to swallow the first words of the next language. A
    clause lingua cannot decide keeps the benefit of the doubt (its script already matches the target).
    """
    detector = _lingua_detector(tuple(sorted({language, *candidates})))
    bounds = [0] + [m.end() for m in _CLAUSE_END.finditer(text)] + [len(text) + 1]
    foreign: set[int] = set()
    k = 0
    for clause_end in bounds[1:]:
        members = []
        while k < len(words) and words[k][0] < clause_end:
            members.append(k)
            k += 1
        if len(members) < _MIN_CLAUSE_WORDS:
            continue
        detected = detector.detect_language_of(" ".join(text[words[i][0] : words[i][1]] for i in members))
        if detected is not None and detected.iso_code_639_1.name.lower() != language:
            foreign.update(members)
    return foreign


LANGUAGE_DEFAULTS = {"language": "en", "detector": "script", "candidates": None}


@REWARDS.register("language_consistency")
@declare_params(**LANGUAGE_DEFAULTS)
def language_consistency(completion: str, example: Example, ctx: RewardContext) -> float:
    """Share of the chain of thought's words that are in the target language, in [0, 1] (DeepSeek-R1 Sec. 2.3.2).

    The chain of thought is the text inside ``<think>...</think>``; a completion without a think block is judged
    whole. Code, math, numbers, URLs, tags and single letters are not words of any language and are ignored; a
    chain of thought with no words left shows no mixing and scores 1.

    Parameters (``rewards.params.language_consistency``):
      language: ISO 639-1 code of the target language (default "en").
      detector: "script" (default) counts a word as target when it is written in the target's script
        (Latin, Cyrillic, Han, ...): fast, dependency-free, and catches the mixing R1-Zero showed (English and
        Chinese), but cannot tell English from French. "lingua" also runs the lingua language detector (offline,
        extra ``r1lab[lang]``) on each clause's target-script words, so a French clause in an English chain of
        thought counts as foreign; clauses of fewer than 3 words are left to the script test.
      candidates: with "lingua", the languages it may assign (ISO codes, default: a few common languages of the
        target's script).
    """
    params = reward_params(ctx, "language_consistency", LANGUAGE_DEFAULTS)
    language = str(params["language"]).lower()
    if language not in _SCRIPTS_OF:
        raise ValueError(
            f"reward 'language_consistency': unknown language {language!r}; known: {', '.join(sorted(_SCRIPTS_OF))}"
        )
    if params["detector"] not in ("script", "lingua"):
        raise ValueError(
            f"reward 'language_consistency': detector must be 'script' or 'lingua', got {params['detector']!r}"
        )
    target_scripts = _SCRIPTS_OF[language]

    text = neutralise(chain_of_thought(completion))
    words = words_with_scripts(text)
    if not words:
        return 1.0
    in_target = [script in target_scripts for _, _, script in words]
    if params["detector"] == "lingua":
        script = next(iter(target_scripts)) if len(target_scripts) == 1 else None
        candidates = params["candidates"] if params["candidates"] is not None else _LINGUA_CANDIDATES.get(script, ())
        candidates = tuple(str(c).lower() for c in candidates)
        if set(candidates) - {language}:  # a script used by one candidate only needs no language detector
            target_words = [w for w, ok in zip(words, in_target) if ok]
            foreign = _lingua_foreign(text, target_words, language, candidates)
            index_of = [k for k, ok in enumerate(in_target) if ok]
            for k in foreign:
                in_target[index_of[k]] = False
    return sum(in_target) / len(in_target)


# ---------------------------------------------------------------------------------------------------------------
# cosine length scaling
# ---------------------------------------------------------------------------------------------------------------
def cosine_interpolate(length: int, max_length: int, at_zero: float, at_max: float) -> float:
    """Half-cosine from ``at_zero`` (length 0) to ``at_max`` (length = max_length): Yeo et al.'s CosFn."""
    return at_max + 0.5 * (at_zero - at_max) * (1.0 + math.cos(math.pi * length / max_length))


COSINE_DEFAULTS = {
    "r_c0": 1.0,  # correct, length 0
    "r_cL": 0.5,  # correct, at max_length
    "r_w0": -1.0,  # wrong, length 0
    "r_wL": -0.5,  # wrong, at max_length
    "r_exceed": -1.0,  # reached max_length (truncated): no answer was finished
    "max_length": None,  # tokens; default: the rollout's max_new_tokens
    "threshold": 1.0,  # accuracy at or above which the answer counts as correct
}


@REWARDS.register("cosine_length")
@declare_params(**COSINE_DEFAULTS)
def cosine_length(completion: str, example: Example, ctx: RewardContext) -> float:
    """Cosine length scaling by correctness (Yeo et al. 2025, Sec. 4, the Cosine Reward).

    Correct answers (accuracy reward >= threshold) earn from r_c0 at length 0 down to r_cL at max_length, so
    shorter correct reasoning is preferred; wrong answers earn from r_w0 up to r_wL, so a model that is wrong is
    pushed to think longer rather than to answer fast. Reaching max_length tokens (the rollout limit, i.e. a
    truncated completion) earns r_exceed. Correctness is the task verifier through ``accuracy_reward``; length is
    counted with ``ctx.tokenizer``. The defaults keep rewards in [-1, 1] (open-r1's scale); the paper's runs used
    larger magnitudes, set them in the config.
    """
    p = reward_params(ctx, "cosine_length", COSINE_DEFAULTS)
    max_length = _max_length(p, ctx, "cosine_length")
    length = token_length(completion, ctx, "cosine_length")
    if length >= max_length:
        return float(p["r_exceed"])
    correct = accuracy_reward(completion, example, ctx) >= p["threshold"]
    at_zero, at_max = (p["r_c0"], p["r_cL"]) if correct else (p["r_w0"], p["r_wL"])
    return cosine_interpolate(length, max_length, float(at_zero), float(at_max))


# ---------------------------------------------------------------------------------------------------------------
# soft overlong punishment
# ---------------------------------------------------------------------------------------------------------------
OVERLONG_DEFAULTS = {"max_length": None, "cache_length": None}


@REWARDS.register("soft_overlong")
@declare_params(**OVERLONG_DEFAULTS)
def soft_overlong(completion: str, example: Example, ctx: RewardContext) -> float:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), in [-1, 0].

    0 up to ``max_length - cache_length`` tokens, then a linear ramp to -1 at ``max_length``, -1 beyond. Instead
    of a cliff at the truncation limit, the model feels the length budget within the last ``cache_length``
    tokens. Defaults: max_length = the rollout's max_new_tokens, cache_length = max_length // 5 (DAPO: a 4,096
    token cache within a 20,480 limit).
    """
    p = reward_params(ctx, "soft_overlong", OVERLONG_DEFAULTS)
    max_length = _max_length(p, ctx, "soft_overlong")
    cache = p["cache_length"] if p["cache_length"] is not None else max_length // 5
    if not (isinstance(cache, int) and 0 < cache <= max_length):
        raise ValueError(
            f"reward 'soft_overlong': cache_length must be an integer in [1, max_length={max_length}], got {cache!r}"
        )
    length = token_length(completion, ctx, "soft_overlong")
    free = max_length - cache
    if length <= free:
        return 0.0
    if length <= max_length:
        return (free - length) / cache
    return -1.0


# ---------------------------------------------------------------------------------------------------------------
# n-gram repetition penalty
# ---------------------------------------------------------------------------------------------------------------
REPETITION_DEFAULTS = {"ngram_size": 3, "max_penalty": -1.0}


@REWARDS.register("repetition")
@declare_params(**REPETITION_DEFAULTS)
def repetition(completion: str, example: Example, ctx: RewardContext) -> float:
    """``max_penalty`` times the share of repeated word n-grams, in [max_penalty, 0] (Yeo et al. 2025).

    Words are the lower-cased, whitespace-separated tokens of the whole completion; with T n-grams of which U are
    distinct the reward is max_penalty * (1 - U / T). A completion shorter than one n-gram is not penalised.
    Degenerate loops ("wait, wait, wait, ...") are a failure mode of long-CoT RL that the accuracy reward alone
    does not punish.
    """
    p = reward_params(ctx, "repetition", REPETITION_DEFAULTS)
    n, max_penalty = p["ngram_size"], float(p["max_penalty"])
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"reward 'repetition': ngram_size must be a positive integer, got {n!r}")
    if max_penalty > 0:
        raise ValueError(f"reward 'repetition': max_penalty is a penalty and must be <= 0, got {max_penalty}")
    words = completion.lower().split()
    ngrams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not ngrams:
        return 0.0
    return max_penalty * (1.0 - len(set(ngrams)) / len(ngrams))
