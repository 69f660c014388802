"""The tokenizer of the tiny models: a real byte-level BPE ``RobertaTokenizerFast`` built in code.

Tiny CLAP models cannot use roberta-base's 50k-token vocabulary (the embedding table alone would be
larger than the whole model, and this machine cannot download it), yet diffusers' ``AudioLDMPipeline``
and ``ClapProcessor`` expect a RoBERTa tokenizer. So we train a small byte-level BPE with the
``tokenizers`` library on a fixed corpus (event phrases, order connectors, common English words) and
wrap it as a ``RobertaTokenizerFast``: same special tokens (``<s> <pad> </s> <unk> <mask>``, ids 0-4 like
roberta-base) and same post-processing, so an exported directory loads with ``AutoTokenizer``.

Byte-level BPE never produces an unknown token: an unseen word falls back to smaller pieces (at worst
single bytes), so any caption can be encoded. The build is deterministic (fixed corpus, fixed order,
``tokenizers``' BPE trainer breaks ties by pair order), which ``tests/test_models.py`` checks.
"""

from __future__ import annotations

import json
import os
import tempfile

#: Order connectors used by the paper's ESC-mixed-up captions and by our caption templates.
ORDER_PHRASES = (
    "followed by", "and then", "then", "after that", "afterwards", "before", "after", "while",
    "at the same time as", "together with", "simultaneously", "first", "second", "finally",
    "at first", "later", "subsequently", "preceded by", "as", "with", "and", "in the background",
    "is followed by", "comes after", "comes before", "is heard", "can be heard", "a sound of",
)

#: Sound-event phrases (a fallback vocabulary, used together with :mod:`tclap.synth` when it is present).
EVENT_WORDS = (
    "a dog barks", "a man speaks", "a woman speaks", "a baby cries", "a cat meows", "a bird chirps",
    "a car horn honks", "a siren wails", "rain falls", "thunder rumbles", "wind blows", "a door knocks",
    "a door slams", "footsteps", "a clock ticks", "a bell rings", "a phone rings", "a beep", "a knock",
    "a whistle", "a chirp", "a buzz", "a hum", "a click", "a clap", "a drum hit", "a gong", "a siren",
    "a sweep", "a rising tone", "a falling tone", "a noise burst", "a crackle", "water pours",
    "an engine idles", "a train passes", "an airplane flies", "glass breaks", "a keyboard types",
    "people laugh", "a crowd cheers", "music plays", "a guitar strums", "a piano plays", "a violin",
    "a rooster crows", "a cow moos", "a sheep bleats", "a frog croaks", "insects buzz", "a hen clucks",
    "a pig oinks", "crickets chirp", "a vacuum cleaner", "a washing machine", "a toilet flushes",
    "a chainsaw", "a helicopter", "a church bell", "fireworks", "a gun shot", "sneezing", "coughing",
    "snoring", "breathing", "laughing", "crying", "brushing teeth", "drinking", "sipping", "mouse click",
    "can opening", "clock alarm", "hand saw", "crackling fire", "sea waves", "pouring water",
    "chirping birds", "door wood knock", "car horn", "engine", "train", "airplane", "siren", "dog", "rooster",
)

#: Frequent English words so that free-form prompts still get short encodings.
COMMON_WORDS = (
    "the a an of in on at to from by for with without is are was were be been being it its this that "
    "these those there here and or but not no yes one two three four five many some few several loud "
    "quiet soft short long high low fast slow sound sounds noise voice voices people person man woman "
    "child children boy girl baby dog cat bird birds car cars horn siren engine water rain wind door "
    "bell phone clock music song speech talking speaking singing playing barking meowing chirping "
    "ringing knocking beeping buzzing humming clicking whistling tapping typing walking running "
    "closing opening falling breaking rolling passing driving flying small large big little distant "
    "near close far background foreground repeatedly once twice again briefly continuously "
    "then next while during before after followed beginning end start stop starts stops begins ends "
    "first second third last finally later earlier meanwhile simultaneously together outdoors indoors "
    "street room kitchen park forest city traffic crowd machine tool metal wood glass plastic paper "
    "tone tones pulse pulses burst bursts click clicks knock knocks beep beeps chirp chirps hum hums "
    "rising falling sweep sweeps low-pitched high-pitched"
).split()

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # ids 0..4, as in roberta-base


def tiny_corpus() -> list[str]:
    """The fixed training corpus of the tiny tokenizer, in a fixed order.

    Includes the built-in bank's event phrases (:data:`tclap.synth.EVENT_PHRASES`) when that module is
    importable, so every built-in caption word is a single or few tokens.
    """
    lines: list[str] = []
    try:  # the built-in bank's phrases; optional so that this module stands alone
        from tclap.synth import EVENT_PHRASES  # noqa: PLC0415
    except ImportError:
        EVENT_PHRASES = {}
    events = list(EVENT_WORDS) + [EVENT_PHRASES[k] for k in sorted(EVENT_PHRASES)]
    lines.extend(events)
    lines.extend(ORDER_PHRASES)
    lines.extend(COMMON_WORDS)
    try:  # the mix-up caption templates (tclap.data.captions), rendered with the bank's phrases
        from tclap.data.captions import OVERLAP_TEMPLATES, SEQUENCE_TEMPLATES_2, SEQUENCE_TEMPLATES_3  # noqa: PLC0415

        templates = SEQUENCE_TEMPLATES_2 + SEQUENCE_TEMPLATES_3 + OVERLAP_TEMPLATES
    except ImportError:
        templates = ()
    named = [EVENT_PHRASES[k] for k in sorted(EVENT_PHRASES)] or list(EVENT_WORDS)
    for ti, tpl in enumerate(templates):
        for i, a in enumerate(named):
            b, c = named[(i + ti + 1) % len(named)], named[(i + 2 * ti + 2) % len(named)]
            text = tpl.format(a, b, c)
            lines.append(text)
            lines.append(text[0].upper() + text[1:] + ".")
    # Captions in the shape the mix-ups use, so connectors merge with their neighbours' spacing.
    for i, a in enumerate(events):
        b = events[(i * 7 + 3) % len(events)]
        conn = ORDER_PHRASES[i % len(ORDER_PHRASES)]
        lines.append(f"{a} {conn} {b}")
        lines.append(f"{a.capitalize()}, {conn} {b}.")
    return lines


def build_tiny_tokenizer(vocab_size: int = 1024, model_max_length: int = 32):
    """Train the tiny byte-level BPE and return it as a ``transformers.RobertaTokenizerFast``.

    Args:
        vocab_size: target vocabulary size (the BPE stops earlier if the corpus runs out of merges).
        model_max_length: longest encoding (tokens, ``<s>``/``</s>`` included) the text tower accepts.

    Returns:
        A ``RobertaTokenizerFast``; ``len(tok)`` is the embedding-table size the text config needs.
    """
    from tokenizers import ByteLevelBPETokenizer  # noqa: PLC0415
    from transformers import RobertaTokenizerFast  # noqa: PLC0415 (transformers is heavy; loaded only when this path runs)

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        tiny_corpus(), vocab_size=vocab_size, min_frequency=1, special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    # RobertaTokenizerFast takes the vocab and merges (the files a tokenizer directory holds).
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        with open(os.path.join(tmp, "vocab.json"), encoding="utf-8") as fh:
            vocab = json.load(fh)
        with open(os.path.join(tmp, "merges.txt"), encoding="utf-8") as fh:
            merges = [tuple(line.split()) for line in fh if line.strip() and not line.startswith("#version")]
    tok = RobertaTokenizerFast(vocab=vocab, merges=merges, model_max_length=model_max_length)
    return tok
