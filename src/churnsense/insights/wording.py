"""Language files (`texts/<lang>.yaml`) and the rules that fill them with a customer's facts.

A language file is data a non-programmer edits: reason texts, call scripts, plural nouns, value names. A text is a
template over facts, `{fact}` or `{fact:spec}`:

- `{fact:<noun>}` (a key of `nouns`): the count with the noun in the right plural form. Forms are chosen by the
  CLDR plural category of the number (babel: en one/other; ru/uk one/few/many/other; he one/two/other); a form
  keyed `=N` (e.g. `=0: today`) wins for exactly N. `{n}` in a form is the number.
- `{fact:percent}` (40 -> 40%), `{fact:ratio}` (0.23 -> 23%), `{fact:int}`, `{fact:number}`, `{fact:money}`:
  numbers in the language's format.
- `{fact}`: a number as `number`; a text through the file's `values.<fact>` names (codes compared case- and
  punctuation-blind: "Month-to-month" = month_to_month), else as it is.

A list of variants (`{when: [...], text: ...}` or a bare text) renders its first variant whose conditions hold and
whose facts are all known. A condition is `fact` (known, and > 0 for a number), or `fact OP value` with OP one of
> >= < <= == != and value a number, another fact or a code. In a right-to-left language every inserted number is
(also those written in the file) is wrapped in Unicode isolates (LRI ... PDI) and every inserted text that is not
a name from the file in FSI ... PDI, so digits and Latin codes keep their order inside the sentence.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from babel import Locale
from babel.numbers import format_decimal, format_percent

TEXTS_DIR = Path(__file__).with_name("texts")
LRI, FSI, PDI = "\u2066", "\u2068", "\u2069"
_CONDITION = re.compile(r"^\s*([\w:]+)\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$")
_NUMBER = re.compile(r"(?:(?<![^\W\d_])[+\-\u2212])?\d(?:[\d.,:/\u00a0\u202f\-]*\d)?(?:\u00a0?%)?")
_LEFT_TO_RIGHT = re.compile(r"[A-Za-z\u00c0-\u024f\u0400-\u04ff]")
_ISOLATED = re.compile(f"({LRI}[^{PDI}]*{PDI})")
_NUMBER_SPECS = {"int": "#,##0", "number": "#,##0.#", "money": "#,##0.00"}


class LanguageFileError(ValueError):
    """A language file is missing, unreadable or breaks the layout (names file and key)."""


def code_key(value: object) -> str:
    """A code compared case- and punctuation-blind: "Month-to-month" -> "month_to_month"."""
    return re.sub(r"[^0-9a-z\u0080-\uffff]+", "_", str(value).strip().lower()).strip("_")


def is_missing(value: object) -> bool:
    """None, NaN, NaT, pd.NA and empty text are unknown facts."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    try:
        return bool(value != value) or (isinstance(value, float) and math.isinf(value))  # NaN / NaT / NA
    except (TypeError, ValueError):
        return True


def as_number(value: object) -> float | None:
    """A finite float, or None for text and unknown values."""
    if isinstance(value, bool) or is_missing(value):
        return None
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class Language:
    """One parsed language file."""

    code: str
    data: dict[str, Any] = field(repr=False)
    source: str = ""

    @functools.cached_property
    def locale(self) -> Locale:
        return Locale.parse(self.code)

    @property
    def rtl(self) -> bool:
        return self.locale.text_direction == "rtl"

    @property
    def name(self) -> str:
        return str(self.data.get("name") or self.locale.get_display_name(self.code))

    def section(self, key: str) -> dict[str, Any]:
        """A top-level mapping of the file (empty when absent)."""
        value = self.data.get(key) or {}
        if not isinstance(value, dict):
            raise LanguageFileError(f"{self.source}: `{key}` must be a mapping, got {type(value).__name__}")
        return value

    def plural_form(self, noun: str, n: float) -> str:
        """The form of `noun` for the count `n` (rounded to a whole number), with `{n}` filled."""
        forms = self.section("nouns").get(noun)
        if not isinstance(forms, dict):
            raise KeyError(noun)
        k = int(math.ceil(n - 1e-9)) if str(forms.get("round", "")).lower() == "up" else int(round(n))
        form = forms.get(f"={k}")
        if form is None:
            category = self.locale.plural_form(k)
            form = forms.get(category, forms.get("other"))
        if form is None:
            raise LanguageFileError(f"{self.source}: nouns.{noun} has no `{category}` or `other` form")
        return str(form).replace("{n}", self.number(k, "int"))

    def number(self, x: float, spec: str = "number") -> str:
        """`x` in this language's number format (`int`, `number`, `money`, `percent`, `ratio`)."""
        if spec in ("percent", "ratio"):
            return format_percent(x if spec == "ratio" else x / 100.0, locale=self.locale)
        return format_decimal(x, format=_NUMBER_SPECS.get(spec, _NUMBER_SPECS["number"]), locale=self.locale)

    def isolate_numbers(self, text: str) -> str:
        """In a right-to-left language, every number of `text` (digits with their separators, sign and %) in
        LRI ... PDI, so it reads left to right; numbers already isolated are left as they are."""
        if not self.rtl:
            return text
        parts = _ISOLATED.split(text)
        return "".join(p if i % 2 else _NUMBER.sub(lambda m: f"{LRI}{m.group(0)}{PDI}", p) for i, p in enumerate(parts))

    def isolate_text(self, text: str) -> str:
        """In a right-to-left language, a text with left-to-right letters in FSI ... PDI."""
        return f"{FSI}{text}{PDI}" if self.rtl and _LEFT_TO_RIGHT.search(text) else text

    def value_name(self, fact: str, value: object) -> str:
        """A code's name in this language (`values.<fact>`, else `values.<last word of fact>`), else the value
        itself (isolated in RTL text)."""
        values = self.section("values")
        names = values.get(fact) or values.get(fact.rsplit("_", 1)[-1]) or {}
        key = code_key(value)
        for code, name in names.items():
            if code_key(code) == key:
                return str(name)
        return self.isolate_text(str(value))

    def label(self, column: str) -> str:
        """A column's or event type's name in this language (`labels`), else the name with spaces."""
        labels = self.section("labels")
        return str(labels.get(column) or self.isolate_text(str(column).replace("_", " ")))


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, yaml.YAMLError) as err:
        raise LanguageFileError(f"language file {path}: {err}") from None
    if not isinstance(data, dict):
        raise LanguageFileError(f"language file {path}: expected a mapping at the top level")
    return data


@functools.lru_cache(maxsize=32)
def _load(code: str, directory: str, stamp: int) -> Language:  # stamp: file mtime, the cache key only
    path = Path(directory) / f"{code}.yaml"
    return Language(code, _read(path), str(path))


def load_language(code: str, directory: str | Path | None = None) -> Language:
    """The language file `<directory>/<code>.yaml` (default: the bundled `texts/`), re-read when it changes."""
    path = Path(directory or TEXTS_DIR) / f"{code}.yaml"
    if not path.is_file():
        raise LanguageFileError(
            f"language file {path} not found (languages there: {', '.join(available_languages(directory)) or 'none'})"
        )
    return _load(code, str(path.parent), path.stat().st_mtime_ns)


def available_languages(directory: str | Path | None = None) -> list[str]:
    """Language codes with a file in `directory` (default: the bundled `texts/`)."""
    folder = Path(directory or TEXTS_DIR)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


class _FactFormatter(string.Formatter):
    """Fills `{fact:spec}` from a facts mapping in one language; records the facts it quoted."""

    def __init__(self, language: Language, facts: Mapping[str, Any], alias: Mapping[str, str]):
        super().__init__()
        self.language, self.facts, self.alias = language, facts, alias
        self.used: set[str] = set()

    def get_value(self, key, args, kwargs):
        value = self.facts.get(key)
        if is_missing(value):
            raise KeyError(key)
        self.used.add(self.alias.get(key, key))
        return key, value

    def format_field(self, value, format_spec):
        name, raw = value
        lang = self.language
        number = as_number(raw)
        if format_spec and format_spec in lang.section("nouns"):
            if number is None:
                raise ValueError(f"{name} is not a number")
            return lang.plural_form(format_spec, number)
        if format_spec in ("percent", "ratio", "int", "number", "money"):
            if number is None:
                raise ValueError(f"{name} is not a number")
            return lang.number(number, format_spec)
        if format_spec:
            raise LanguageFileError(
                f"{lang.source}: unknown format `{{{name}:{format_spec}}}` (not a noun of "
                f"`nouns` nor percent/ratio/int/number/money)"
            )
        if number is not None and not isinstance(raw, str):
            return lang.number(number)
        return lang.value_name(self.alias.get(name, name), raw)


def holds(condition: str, facts: Mapping[str, Any]) -> bool:
    """One `when` condition (see module doc) on `facts`; unknown facts make it false."""
    m = _CONDITION.match(condition)
    if not m:
        value = facts.get(condition.strip())
        number = as_number(value)
        return not is_missing(value) and (number is None or number > 0)
    name, op, rhs = m.groups()
    left = facts.get(name)
    if is_missing(left):
        return False
    right: Any = facts.get(rhs, rhs)
    if is_missing(right):
        return False
    a, b = as_number(left), as_number(right)
    if a is None or b is None:
        a, b = code_key(left), code_key(right)  # type: ignore[assignment]
        if op not in ("==", "!="):
            return False
    return {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b, "==": a == b, "!=": a != b}[op]  # type: ignore


@dataclass(frozen=True)
class Rendered:
    """A filled text, the facts it quotes (placeholders) and the facts it states (quoted or read by its
    conditions); by customer-fact name."""

    text: str
    stated: frozenset[str]
    quoted: frozenset[str] = frozenset()


def variants_of(entry: object) -> list[Mapping[str, Any]]:
    """An entry (text, variant mapping, or list of them) as a list of `{when, text}` mappings."""
    items = entry if isinstance(entry, list) else [entry]
    return [v if isinstance(v, Mapping) else {"text": v} for v in items if v is not None]


def render(
    entry: object,
    facts: Mapping[str, Any],
    language: Language,
    avoid: Iterable[str] = (),
    alias: Mapping[str, str] | None = None,
) -> Rendered | None:
    """The first variant of `entry` whose `when` conditions hold, whose facts are known and that states none of
    the facts in `avoid` (quoted in its text or read by its conditions); None when no variant fits.
    `alias`: template name -> the customer fact it stands for."""
    avoid, alias = set(avoid), dict(alias or {})
    for variant in variants_of(entry):
        if not all(holds(str(c), facts) for c in variant.get("when") or ()):
            continue
        fmt = _FactFormatter(language, facts, alias)
        try:
            text = fmt.format(str(variant.get("text", "")))
        except (KeyError, ValueError, IndexError, AttributeError):
            continue
        stated = fmt.used | {alias.get(f, f) for f in condition_facts(variant.get("when") or ()) if f in facts}
        if stated & avoid:
            continue
        return Rendered(language.isolate_numbers(" ".join(text.split())), frozenset(stated), frozenset(fmt.used))
    return None


def template_fields(text: str) -> list[tuple[str, str]]:
    """(fact, spec) of every placeholder of a template (for checks of the language files)."""
    return [(f, s or "") for _, f, s, _ in string.Formatter().parse(str(text)) if f is not None]


def condition_facts(conditions: Sequence[str]) -> list[str]:
    """The fact names a `when` list reads."""
    out = []
    for c in conditions:
        m = _CONDITION.match(str(c))
        out += [m.group(1)] if m else [str(c).strip()]
    return out
